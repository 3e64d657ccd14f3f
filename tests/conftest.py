"""Shared pytest fixtures: offline environment, shared real data, synthetic cohort, R reference, threads."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("HER2MRI_SHARED", REPO_ROOT.parent / "shared"))
REAL_DIR = SHARED_DIR / "data" / "real"
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Path to ``../shared/data/real``; skips the test when it is absent (a user's clone)."""
    if not REAL_DIR.is_dir():
        pytest.skip(f"real data not available: {REAL_DIR} is absent (only present beside the dev checkout)")
    return REAL_DIR


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Path to the repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def synthetic_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny synthetic BreastDCEDL I-SPY2 cohort, written once per session.

    12 patients (5 HER2+), volumes (24, 64, 64), 6 or 7 acquisitions per patient (phases 0, 2, 5 or 0, 2, 6),
    official split 8 train / 2 val / 2 test, seed 0. Returns ``(root, metadata_csv)``; treat it as read-only.
    """
    from her2mri.data.synth import make_synthetic_cohort

    root = tmp_path_factory.mktemp("synthetic_cohort")
    cohort = make_synthetic_cohort(root, n=12, seed=0, shape=(24, 64, 64), n_times=(6, 7))
    return cohort.root, cohort.metadata_csv


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine oversubscription makes tiny steps 10x slower.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``; the previous count is restored after.
    """
    with _torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_thread_module() -> Iterator[None]:
    """Like ``one_thread`` but held for a whole module (also covers module-scoped fixtures built in it)."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="session")
def ref() -> dict:
    """The R reference numbers (pROC, rms, ResourceSelection, ...) committed in tests/data/r_reference.json.

    Shared by the whole session: treat it as read-only.
    """
    return json.loads((TEST_DATA / "r_reference.json").read_text())


@pytest.fixture(scope="session")
def df() -> pd.DataFrame:
    """The data the R reference numbers were computed on (tests/data/stats_reference_data.csv); read-only."""
    import pandas as pd

    return pd.read_csv(TEST_DATA / "stats_reference_data.csv")


@pytest.fixture(scope="session")
def tiny_run(synthetic_cohort, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One tiny her2mri-train run (ResNet34, 32 px, 2 slices, 1 epoch of 2 batches) on ``synthetic_cohort``.

    Shared by the tests of the locked threshold, her2mri-predict and the model card. Returns
    ``(run_dir, best_checkpoint)``; treat both as read-only.
    """
    from hydra import compose, initialize_config_dir

    from her2mri.cli._config import config_dir
    from her2mri.runs.train import train

    root, csv = synthetic_cohort
    tmp = tmp_path_factory.mktemp("tiny_run")
    overrides = [
        "data=breastdcedl", f"data.root={root}", f"data.metadata_csv={csv}", "data.progress=false",
        "data.num_workers=0", "data.batch_size=4", "data.val_fraction=0.3", "model=resnet34",
        "preprocess.image_size=32", "preprocess.crop_size=32", "preprocess.n_slices=2",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.accelerator=cpu", "stats_n_boot=50",
        f"paths.cache_dir={tmp / 'cache'}", f"paths.output_dir={tmp / 'run'}",
    ]  # fmt: skip
    with _torch_threads(1):
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        train(cfg)
    payload = json.loads((tmp / "run" / "metrics.json").read_text())
    return tmp / "run", Path(payload["ckpt_path"])
