"""Plain helpers shared by several test modules (importable as ``_helpers``: tests/ is on sys.path).

Fixtures live in conftest.py; this module holds ordinary functions, so test modules import them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from her2mri.cli._config import config_dir

#: 32-px crops of 32-px slices, 2 slices per patient: the smallest input every model accepts
TINY_PREPROCESS: list[str] = ["preprocess.image_size=32", "preprocess.crop_size=32", "preprocess.n_slices=2"]
#: TINY_PREPROCESS on the CPU, one thread, no loader workers and no progress bars
TINY_CPU: list[str] = [
    *TINY_PREPROCESS,
    "data.progress=false",
    "data.num_workers=0",
    "trainer.accelerator=cpu",
    "num_threads=1",
]


def compose_config(name: str, overrides: Sequence[str], *, return_hydra_config: bool = False) -> DictConfig:
    """Compose the packaged Hydra config ``name`` (train, eval, radiomics, ...) with ``overrides``."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def synthetic_overrides(
    cohort: tuple[Path, Path],
    tmp_path: Path,
    *,
    progress: bool = True,
    num_workers: bool = True,
    extra: Sequence[str] = (),
    cache: str = "cache",
) -> list[str]:
    """Hydra overrides pointing ``data=breastdcedl`` at a synthetic cohort ``(root, metadata_csv)``.

    In order: data group, root, metadata CSV, ``data.progress=false`` (unless ``progress=False``),
    ``data.num_workers=0`` (unless ``num_workers=False``), ``extra``, and ``paths.cache_dir=tmp_path/cache``.
    """
    root, csv = cohort
    out = ["data=breastdcedl", f"data.root={root}", f"data.metadata_csv={csv}"]
    if progress:
        out.append("data.progress=false")
    if num_workers:
        out.append("data.num_workers=0")
    out.extend(extra)
    out.append(f"paths.cache_dir={tmp_path / cache}")
    return out
