"""her2mri-eval recalibrate=... conformal_alpha=...: fitted on a calibration set, saved beside the checkpoint,
applied to the held-out patients (issue 16)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from _helpers import TINY_PREPROCESS, compose_config, synthetic_overrides
from omegaconf import OmegaConf

from her2mri.data.errors import DataError
from her2mri.runs.calibration import _options, split_calibration_set
from her2mri.runs.evaluate import evaluate
from her2mri.runs.train import train
from her2mri.stats import fit_conformal, fit_recalibrator
from her2mri.training.calibrator import (
    CalibrationBundle,
    calibration_path,
    load_calibration,
    save_calibration,
)

TINY = [*TINY_PREPROCESS, "data.num_workers=0"]
pytestmark = pytest.mark.usefixtures("one_thread")


def test_bundle_round_trip_and_bad_files(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.15, 60), 0.01, 0.99)
    bundle = CalibrationBundle(fit_recalibrator(y, p, "platt"), fit_conformal(y, p, 0.2), "x.ckpt", {"n": 60})
    path = save_calibration(bundle, calibration_path(tmp_path / "last.ckpt"))
    assert path.name == "last.ckpt.calibration.json"
    assert calibration_path("a/b.ckpt", "siteB").name == "b.ckpt.calibration.siteB.json"
    back = load_calibration(path)
    grid = np.linspace(0, 1, 21)
    assert np.array_equal(back.apply(grid)["prob"], bundle.apply(grid)["prob"])
    assert back.apply(grid)["call"] == bundle.apply(grid)["call"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "her2mri-calibration", "version": 1}))
    with pytest.raises(DataError, match="neither"):
        load_calibration(bad)
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        load_calibration(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="not a her2mri calibration"):
        load_calibration(bad)


def test_options_errors():
    def cfg(**kw):
        base = {"recalibrate": None, "conformal_alpha": None, "calibration": {}}
        base.update(kw)
        return OmegaConf.create(base)

    with pytest.raises(ValueError, match="recalibrate='beta'"):
        _options(cfg(recalibrate="beta"))
    with pytest.raises(ValueError, match="conformal_alpha=2"):
        _options(cfg(conformal_alpha=2))
    with pytest.raises(ValueError, match="manifest_csv"):
        _options(cfg(recalibrate="platt", calibration={"source": "manifest"}))
    with pytest.raises(ValueError, match="calibration.source='x'"):
        _options(cfg(calibration={"source": "x"}))
    mask = split_calibration_set(np.array([0, 1] * 10), 0.3, 0)
    assert mask.sum() == 6 and np.array([0, 1] * 10)[mask].sum() == 3
    with pytest.raises(ValueError, match=">= 2 patients of each class"):
        split_calibration_set(np.array([0, 0, 0, 1]), 0.5, 0)


@pytest.fixture(scope="module")
def trained(synthetic_cohort, tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("recal_train")
    cfg = compose_config(
        "train",
        [*synthetic_overrides(synthetic_cohort, tmp, num_workers=False), *TINY, "model=resnet34",
         "logger=csv", "data.batch_size=4", f"paths.output_dir={tmp / 'train'}", "trainer.max_epochs=1",
         "trainer.limit_train_batches=2", "trainer.accelerator=cpu"],
    )  # fmt: skip
    train(cfg)
    ckpt = Path(json.loads((tmp / "train" / "metrics.json").read_text())["ckpt_path"])
    return tmp, ckpt


def test_eval_recalibrates_on_a_fraction_and_saves_beside_the_checkpoint(synthetic_cohort, trained):
    tmp, ckpt = trained
    out = tmp / "eval_recal"
    ecfg = compose_config(
        "eval",
        [*synthetic_overrides(synthetic_cohort, tmp), f"paths.output_dir={out}", f"ckpt_path={ckpt}",
         "split=all", "trainer.accelerator=cpu", "recalibrate=platt", "conformal_alpha=0.2",
         "calibration.source=fraction", "calibration.fraction=0.5", "calibration.conformal_share=0.5"],
    )  # fmt: skip
    metrics = evaluate(ecfg)
    # 12 patients: 6 calibrate (3 Platt + 3 conformal), 6 are evaluated before/after
    assert metrics["all/recal/n_calibration"] == 6 and metrics["all/recal/n_evaluated"] == 6
    for key in ("brier_before", "brier_after", "ece_before", "ece_after"):
        assert np.isfinite(metrics[f"all/recal/{key}"])
    assert 0.0 <= metrics["all/conformal/coverage"] <= 1.0
    beside = calibration_path(ckpt)
    assert beside.is_file() and (out / "calibration.json").is_file()
    bundle = load_calibration(beside)
    assert bundle.recalibrator.method == "platt" and bundle.conformal.alpha == 0.2
    assert bundle.calibration_set["source"] == "fraction" and bundle.calibration_set["n"] == 6
    # the saved file, applied to the raw probabilities, gives exactly the written recalibrated predictions
    with (out / "predictions" / "all_recalibrated_patients.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and {"pid", "label", "prob", "prob_raw", "call"} <= set(rows[0])
    applied = bundle.apply([float(r["prob_raw"]) for r in rows])
    assert np.allclose(applied["prob"], [float(r["prob"]) for r in rows], rtol=0, atol=1e-15)
    assert applied["call"] == [r["call"] for r in rows]
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["metrics"]["all/recal/n_calibration"] == 6


def test_eval_refuses_calibrating_on_the_evaluated_split(synthetic_cohort, trained):
    tmp, ckpt = trained
    ecfg = compose_config(
        "eval",
        [*synthetic_overrides(synthetic_cohort, tmp), f"paths.output_dir={tmp / 'bad'}", f"ckpt_path={ckpt}",
         "split=test", "trainer.accelerator=cpu", "recalibrate=temperature", "calibration.split=test"],
    )  # fmt: skip
    with pytest.raises(ValueError, match="overlaps the evaluated split"):
        evaluate(ecfg)


def test_ensemble_refuses_recalibration(tmp_path):
    from her2mri.runs.evaluate import evaluate_ensemble

    cfg = compose_config(
        "eval",
        ["ensemble=true", "ckpt_paths=[a.ckpt,b.ckpt]", "recalibrate=platt", f"paths.output_dir={tmp_path}"],
    )
    with pytest.raises(ValueError, match="calibrate one checkpoint"):
        evaluate_ensemble(cfg)
