"""The four seed experiments end to end on a small synthetic cohort (Hydra config composed in-process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("radiomics")

EXPERIMENTS = ["peritumoral", "hu2025", "uran", "multimodal_icc"]


@pytest.fixture(scope="module")
def radiomics_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from her2mri.data.synth import make_synthetic_cohort

    root = tmp_path_factory.mktemp("radiomics_cohort")
    make_synthetic_cohort(root, n=30, seed=1, shape=(12, 40, 40), test_fraction=0.3, val_fraction=0.0)
    return root


def _overrides(exp: str, cohort: Path, out: Path) -> list[str]:
    return [
        f"radiomics_experiment={exp}",
        "pyradiomics=fast",
        "cohort.source=breastdcedl",
        f"cohort.root={cohort}",
        f"cohort.metadata_csv={cohort / 'metadata.csv'}",
        f"paths.root_dir={out}",
        f"paths.output_dir={out}",
        f"paths.cache_dir={out / 'cache'}",
        "cv.outer_folds=3",
        "cv.inner_folds=2",
        "selection.lasso_cv=3",
        "extraction.progress=false",
        "deep.backbone=resnet10t",
        "deep.image_size=32",
        "deep.margin_px=2",
    ]


def _run(exp: str, cohort: Path, out: Path, extra: list[str] = ()) -> dict:
    from _helpers import compose_config

    from her2mri.radiomics.cohort import run_from_config

    cfg = compose_config("radiomics", [*_overrides(exp, cohort, out), *extra])
    return run_from_config(cfg)


def _check_outputs(out: Path, info: dict) -> None:
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(info["results"]) >= 2
    for name in summary["signature"]:
        run = out / name
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "ok" and 0 <= metrics["metrics"]["val/auroc_patient"] <= 1
        for stage in ("val", "test"):
            df = pd.read_csv(run / "predictions" / f"{stage}_patients.csv")
            assert list(df.columns) == ["pid", "label", "prob", "n_slices"]
            assert df["prob"].between(0, 1).all() and (df["n_slices"] == 1).all()
    split = pd.read_csv(out / "split.csv")
    assert set(split["split"]) == {"train", "test"}
    val = pd.read_csv(out / summary["signature"].iloc[0] / "predictions" / "val_patients.csv")
    assert set(val["pid"]) == set(split.loc[split["split"] == "train", "pid"])


def test_peritumoral_end_to_end(radiomics_cohort: Path, tmp_path: Path) -> None:
    info = _run(
        "peritumoral",
        radiomics_cohort,
        tmp_path,
        [
            "extraction.rings_mm=[3,5]",
            "signatures=[{name: t, features: [tumour], steps: [zscore, univariate], model: radscore},"
            "{name: t5, features: [tumour, ring5mm], steps: [zscore, univariate], model: radscore}]",
        ],
    )
    _check_outputs(tmp_path, info)
    assert {"t", "t5", "combined"} <= set(info["results"])
    # the clinical run exists only when stepwise / univariable selection keeps a variable
    assert ("clinical" in info["results"]) == bool(info["clinical_selected"])
    assert (tmp_path / "clinical" / "univariable.csv").is_file()
    assert (tmp_path / "combined" / "nomogram.png").is_file()
    assert info["n_train"] + info["n_test"] == 30 and info["n_test"] > 0
    # every model is saved; applying the saved models reproduces the in-memory test predictions exactly
    manifest = json.loads((tmp_path / "models.json").read_text())
    assert set(manifest["models"]) == set(info["results"])
    for name in info["results"]:
        assert (tmp_path / name / "model.joblib").is_file()
        assert (tmp_path / name / "radscore.json").is_file()  # all linear here: Rad-score formulas
    from _helpers import compose_config

    from her2mri.cli.radiomics import run_from_config

    over = [
        o for o in _overrides("peritumoral", radiomics_cohort, tmp_path / "applied") if "cache_dir" not in o
    ]
    cfg = compose_config(
        "radiomics", [*over, f"paths.cache_dir={tmp_path / 'cache'}", "mode=apply", f"model_dir={tmp_path}"]
    )
    applied = run_from_config(cfg)
    for name, res in info["results"].items():
        got = applied["probabilities"][name].loc[res.test["pid"]].to_numpy()
        np.testing.assert_array_equal(got, res.test["prob"].to_numpy())
        df = pd.read_csv(tmp_path / "applied" / name / "predictions" / "test_patients.csv")
        assert len(df) == 30 and list(df.columns) == ["pid", "label", "prob", "n_slices"]
    assert set(pd.read_csv(tmp_path / "applied" / "summary.csv")["signature"]) == set(info["results"])


@pytest.mark.slow
@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_experiment_end_to_end(exp: str, radiomics_cohort: Path, tmp_path: Path) -> None:
    info = _run(exp, radiomics_cohort, tmp_path)
    _check_outputs(tmp_path, info)
    print(f"{exp}: wall {info['wall_s']:.1f} s, extraction {info['extraction_s']:.1f} s")


@pytest.mark.slow
def test_cli_subprocess(radiomics_cohort: Path, tmp_path: Path) -> None:
    over = [
        o
        for o in _overrides("peritumoral", radiomics_cohort, tmp_path)
        if not o.startswith("paths.output_dir")
    ]
    over += [
        f"hydra.run.dir={tmp_path / 'run'}",
        "paths.output_dir=${hydra:runtime.output_dir}",
        "signatures=[{name: t, features: [tumour], steps: [zscore], model: radscore}]",
        "clinical.enabled=false",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "her2mri.cli.radiomics", *over],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "t" / "predictions" / "test_patients.csv").is_file()
