"""From a Hydra config to a datamodule: views vs. model, PreprocessConfig, synthetic cohort on first use.

:func:`build_datamodule` instantiates ``cfg.data`` with the resolved preprocessing (the glue shared by
``her2mri-train``, ``her2mri-eval`` and ``her2mri-gradcam``).

Views: the model's ``num_views`` decides how many views a sample has. ``preprocess.views: auto`` (the default
of every ``preprocess/`` file) picks ``adjacent`` for 3-view models (THDA-ResNet) and ``single`` otherwise;
an explicit value that disagrees with the model is an error with a message saying what to set.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from her2mri.data.preprocess_config import PreprocessConfig
from her2mri.io_utils import clean_stale_temps

log = logging.getLogger(__name__)

AUTO_VIEWS = "auto"
_DONE_MARKER = ".her2mri_complete"


def resolve_views(views: str | None, num_views: int, model_name: str = "model", spatial_dims: int = 2) -> str:
    """The ``views`` setting that matches a model with ``num_views`` inputs.

    Args:
        views: ``auto`` (or None), ``single``, ``adjacent``, ``scales``, ``phases`` or ``volume``.
        num_views: the model's ``num_views`` (1 or 3).
        model_name: named in the error message.
        spatial_dims: 2 for slice models, 3 for volume models (``views='volume'``).

    Returns:
        ``volume`` for 3-D models, ``single`` for 1-view models, ``adjacent`` (when auto) or the given 3-view
        setting (``adjacent``, ``scales``, ``phases``) for 3-view models.

    Raises:
        ValueError: ``views`` disagrees with the model, or ``num_views`` is not 1 or 3.

    Example:
        >>> resolve_views("auto", 3)
        'adjacent'
    """
    if num_views not in (1, 3):
        raise ValueError(f"num_views={num_views!r} of model {model_name!r} must be 1 or 3.")
    auto = views is None or views == AUTO_VIEWS
    if spatial_dims == 3:
        if auto or views == "volume":
            return "volume"
        raise ValueError(
            f"preprocess.views={views!r} gives 2-D slices but model {model_name!r} is a 3-D network; "
            "set preprocess.views=volume or auto."
        )
    if views == "volume":
        raise ValueError(
            f"preprocess.views='volume' gives one 3-D box per case but model {model_name!r} takes 2-D "
            "slices; "
            "use a 3-D model (model=densenet3d) or preprocess.views=auto."
        )
    if auto:
        return "adjacent" if num_views == 3 else "single"
    if num_views == 1 and views != "single":
        raise ValueError(
            f"preprocess.views={views!r} gives 3 views per sample but model {model_name!r} takes one image "
            "(num_views=1); set preprocess.views=single or auto."
        )
    if num_views == 3 and views == "single":
        raise ValueError(
            f"preprocess.views='single' gives one view per sample but model {model_name!r} takes 3 views "
            "(num_views=3); set preprocess.views=adjacent, scales, phases or auto."
        )
    return str(views)


def preprocess_from_cfg(
    pre_cfg: Mapping[str, Any],
    num_views: int,
    model_name: str = "model",
    spatial_dims: int = 2,
    in_chans: int | None = None,
) -> PreprocessConfig:
    """Build the :class:`PreprocessConfig` of a run, resolving ``views: auto`` against the model.

    Args:
        pre_cfg: the ``preprocess`` node (plain mapping; keys are PreprocessConfig fields).
        num_views: the model's number of views.
        model_name: named in error messages.
        spatial_dims: the model's spatial dimensions (3 for volume models).
        in_chans: the model's input channels per view, checked against ``phase_channels`` for
            ``views='phases'`` (None: not checked).

    Returns:
        The frozen config.

    Raises:
        ValueError: views or channels that the model cannot read (the message says what to set).
    """
    d = dict(pre_cfg)
    d["views"] = resolve_views(d.get("views"), num_views, model_name, spatial_dims)
    cfg = PreprocessConfig.from_dict(d)
    if cfg.views == "phases" and in_chans is not None and int(in_chans) != cfg.phase_channels:
        raise ValueError(
            f"preprocess.phase_channels={cfg.phase_channels} gives {cfg.phase_channels}-channel phase views "
            "but "
            f"model {model_name!r} has in_chans={in_chans}; set preprocess.phase_channels={in_chans} or "
            f"model.in_chans={cfg.phase_channels}."
        )
    return cfg


def model_input_spec(module: Any) -> dict[str, Any]:
    """The ``num_views``, ``spatial_dims`` and ``in_chans`` of a module's model.

    These are the keyword arguments of :func:`preprocess_from_cfg`.
    """
    model = getattr(module, "model", module)
    in_chans = getattr(model, "in_chans", None)
    return {
        "num_views": int(getattr(model, "num_views", 1)),
        "spatial_dims": int(getattr(model, "spatial_dims", 2)),
        "in_chans": None if in_chans is None else int(in_chans),
    }


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return path.resolve() != folder.resolve()


def ensure_synthetic_cohort(
    root: str | Path, n: int, seed: int, managed_dir: str | Path | None = None, **kwargs: Any
) -> Path:
    """Build the synthetic cohort under ``root`` on first use; later calls with the same arguments reuse it.

    The cohort is built in a temporary sibling folder and renamed into place; a marker file holding the
    arguments is written last, so an interrupted build leaves no ``root``, and a cohort built with other
    arguments (e.g. another ``difficulty``) is rebuilt rather than reused. An existing ``root`` is only
    replaced when her2mri owns it: it carries the marker, lies under ``managed_dir`` (``paths.cache_dir``),
    or is empty. Any other folder is the user's: it is never deleted.

    Args:
        root: cohort folder (e.g. ``<cache_dir>/synthetic_n60_s0``).
        n: number of patients.
        seed: random seed of the cohort.
        managed_dir: her2mri's cache folder; anything inside it may be rebuilt.
        **kwargs: further :func:`her2mri.data.synth.make_synthetic_cohort` arguments (shape, difficulty...).

    Returns:
        ``root``.

    Raises:
        ValueError: ``root`` is a non-empty folder (or a file) that her2mri did not create.
    """
    root = Path(root)
    marker = root / _DONE_MARKER
    if root.parent.is_dir():  # build folders of killed runs
        clean_stale_temps(root.parent, (re.compile(rf"^{re.escape(root.name)}\.tmp(\d+)$"),))
    kwargs = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in kwargs.items() if v is not None}
    params = json.dumps({"n": int(n), "seed": int(seed), **kwargs}, sort_keys=True)
    if marker.is_file():
        if marker.read_text(encoding="utf-8").strip() == params:
            return root
        log.warning("synthetic cohort %s was built with other arguments: rebuilding it", root)
    from her2mri.data.synth import make_synthetic_cohort

    if root.exists() or root.is_symlink():
        owned = marker.is_file() or (managed_dir is not None and _is_within(root, Path(managed_dir)))
        empty = root.is_dir() and not root.is_symlink() and not any(root.iterdir())
        if not (owned or empty):
            raise ValueError(
                f"data.root={str(root)!r} is not a synthetic cohort made by her2mri (no {_DONE_MARKER} "
                "marker) and is not empty, but the data source is the synthetic one (data=synthetic, the "
                "default), which would replace it: nothing was changed. To train on the data in this folder "
                "add data=breastdcedl (or data=manifest / data=rgb_slices); for a synthetic cohort, point "
                "data.root at an empty or new folder."
            )
        if root.is_dir() and not root.is_symlink():
            shutil.rmtree(root)
        else:
            root.unlink()
    tmp = root.with_name(f"{root.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    t0 = time.perf_counter()
    call = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()}
    make_synthetic_cohort(tmp, n=int(n), seed=int(seed), **call)
    (tmp / _DONE_MARKER).write_text(params + "\n", encoding="utf-8")
    try:
        tmp.rename(root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("synthetic cohort of %d patients written to %s in %.1f s", n, root, time.perf_counter() - t0)
    return root


def build_datamodule(
    data_cfg: Any, preprocess: Mapping[str, Any], cache_dir: str | Path | None = None
) -> Any:
    """Instantiate ``cfg.data`` with the resolved preprocessing; build the synthetic cohort first if asked.

    A ``synthetic`` block in the data config (``n``, ``seed`` and other
    :func:`her2mri.data.synth.make_synthetic_cohort` arguments) means: write that cohort to ``data.root`` on
    first use, then read it like any BreastDCEDL folder. ``data.root`` is only ever replaced when it lies
    under ``cache_dir`` (``paths.cache_dir``), is empty, or carries the marker of a her2mri synthetic cohort.

    Args:
        data_cfg: the ``data`` node of a composed config (a ``DictConfig``).
        preprocess: :meth:`PreprocessConfig.to_dict` of the run.
        cache_dir: the folder her2mri manages (``paths.cache_dir``), for :func:`ensure_synthetic_cohort`.

    Returns:
        The datamodule (``cfg.data._target_``).

    Raises:
        ValueError: ``data_cfg`` is not a mapping.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(data_cfg, resolve=True)
    if not isinstance(data, dict):
        raise ValueError(f"data config must be a mapping, got {data!r}.")
    synth = data.pop("synthetic", None)
    if synth:
        synth = dict(synth)
        ensure_synthetic_cohort(
            data["root"], n=synth.pop("n"), seed=synth.pop("seed"), managed_dir=cache_dir, **synth
        )
    return instantiate(data, preprocess=dict(preprocess), _convert_="all")


def sites_of(datamodule: Any) -> dict[str, str | None] | None:
    """``pid -> site`` from a datamodule exposing ``records`` (CaseRecord list), else None."""
    records: Sequence[Any] | None = getattr(datamodule, "records", None)
    if callable(records):
        records = records()
    if not records:
        return None
    sites = {str(r.pid): r.site for r in records if getattr(r, "site", None)}
    return sites or None
