"""One k-fold split file per cross-validation, written once before the jobs of a sweep start.

``her2mri/conf/sweep/folds.yaml`` sets ``data.split_mode: kfold``, a fixed ``data.split_file`` and this Hydra
callback.
At the start of a run or multirun the callback writes the split file when it does not exist yet
(:func:`her2mri.data.splits.make_kfold_split`: patient-level, stratified on the label, seeded by the top-level
``split_seed``), so that every job, run in any order or in parallel, reads the same file; an existing file is
never rewritten (the file is the truth). Without the callback the first job would generate the file from its
own data seed, which differs between the jobs of a seed sweep.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def ensure_kfold_split_file(cfg: DictConfig) -> Path | None:
    """Write ``cfg.data.split_file`` for the cohort of ``cfg.data`` unless it exists.

    Does nothing (returns None) unless ``data.split_mode`` is ``kfold`` and ``data.split_file`` is set.

    Args:
        cfg: a composed ``train`` config; ``split_seed`` (default: ``data.seed``) seeds the fold assignment.

    Returns:
        The split file path, or None when nothing applies.

    Raises:
        ValueError: ``data.n_folds`` is not a valid number of folds for the cohort.
    """
    data = cfg.get("data")
    if data is None or data.get("split_mode") != "kfold" or not data.get("split_file"):
        return None
    path = Path(str(data.split_file)).expanduser()
    if path.is_file():
        log.info("k-fold split file %s exists: reused as it is", path)
        return path
    from her2mri.data.build import build_datamodule
    from her2mri.data.preprocess_config import PreprocessConfig
    from her2mri.data.splits import make_kfold_split

    seed = cfg.get("split_seed")
    seed = int(data.get("seed", 0) if seed is None else seed)
    datamodule = build_datamodule(data, PreprocessConfig().to_dict())
    records = datamodule.load_records()
    pids = [r.pid for r in records]
    labels = [r.label for r in records]
    make_kfold_split(
        pids, labels, int(data.n_folds), seed, path=path, val_fraction=float(data.get("val_fraction", 0.2))
    )
    log.info(
        "k-fold split file written: %s (%d patients, k=%s, seed=%d)", path, len(pids), data.n_folds, seed
    )
    return path


try:  # Hydra is a dependency; the guard keeps this module importable in minimal environments
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[assignment,misc]


class KFoldSplitCallback(_HydraCallback):  # type: ignore[misc,valid-type]
    """Hydra callback (``hydra.callbacks``): :func:`ensure_kfold_split_file` before a run or a multirun."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Single run: write the split file if absent."""
        ensure_kfold_split_file(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Multirun: write the split file once, before any job starts."""
        ensure_kfold_split_file(config)
