"""train(cfg) / evaluate(cfg) through the Hydra compose API on tiny synthetic and real data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _helpers import TINY_PREPROCESS, compose_config, synthetic_overrides

from her2mri.cli._config import config_dir
from her2mri.data.build import resolve_views
from her2mri.runs.evaluate import evaluate
from her2mri.runs.outputs import read_patient_predictions
from her2mri.runs.train import metric_value, train

CONF = config_dir()
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
TINY = [*TINY_PREPROCESS, "data.num_workers=0"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _synthetic(synthetic_cohort, tmp_path: Path) -> list[str]:
    """The synthetic-cohort overrides without data.num_workers (TINY sets it)."""
    return synthetic_overrides(synthetic_cohort, tmp_path, num_workers=False)


def _out(tmp_path: Path, name: str) -> list[str]:
    return [f"paths.output_dir={tmp_path / name}"]


def test_resolve_views():
    assert resolve_views("auto", 3) == "adjacent"
    assert resolve_views("auto", 1) == "single"
    assert resolve_views("scales", 3, "thda") == "scales"
    with pytest.raises(ValueError, match="preprocess.views='adjacent'.*num_views=1"):
        resolve_views("adjacent", 1, "resnet34")
    with pytest.raises(ValueError, match="preprocess.views='single'.*num_views=3"):
        resolve_views("single", 3, "thda_resnet34")


def test_every_config_group_option_composes():
    groups = ["data", "preprocess", "model", "trainer", "callbacks", "logger", "debug"]
    for group in groups:
        for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
            cfg = compose_config("train", [f"{group}={option}"])
            assert cfg.get(group) is not None or group == "debug", (group, option)
    cfg = compose_config("train", [])
    assert cfg.model.name == "thda_resnet34" and "main_job" in cfg.tags
    assert cfg.preprocess.normalization == "clip_channel_q98"
    for option in ("minmax_slice", "clip_global_q99", "zscore"):
        assert compose_config("train", [f"preprocess={option}"]).preprocess.normalization == option


def test_fast_dev_run_thda_on_synthetic_cohort(synthetic_cohort, tmp_path):
    cfg = compose_config(
        "train", ["debug=fdr", *_synthetic(synthetic_cohort, tmp_path), *_out(tmp_path, "run"), *TINY]
    )
    metrics = train(cfg)
    run = tmp_path / "run"
    payload = json.loads((run / "metrics.json").read_text())
    assert payload["status"] == "ok"
    assert payload["config"]["model"]["name"] == "thda_resnet34"
    for stage in ("val", "test"):
        assert f"{stage}/auroc_patient" in metrics
        assert (run / "predictions" / f"{stage}_patients.csv").is_file()
        assert (
            (run / "predictions" / f"{stage}_slices.csv").read_text().startswith("pid,slice_idx,label,prob")
        )
    # fast_dev_run scores one batch per stage; every scored patient appears once in the patient file
    val = read_patient_predictions(run / "predictions" / "val_patients.csv")
    assert len(set(val.pids)) == len(val.pids) >= 1


def test_train_then_eval_round_trip_same_patient_auc(synthetic_cohort, tmp_path):
    common = [
        *_synthetic(synthetic_cohort, tmp_path),
        *TINY,
        "model=resnet34",
        "logger=csv",
        "data.batch_size=4",
    ]
    cfg = compose_config(
        "train",
        [*common, *_out(tmp_path, "train"), "trainer.max_epochs=1", "trainer.limit_train_batches=2",
         "trainer.accelerator=cpu", "data.val_fraction=0.3"],
    )  # fmt: skip
    metrics = train(cfg)
    payload = json.loads((tmp_path / "train" / "metrics.json").read_text())
    ckpt = payload["ckpt_path"]
    assert ckpt and Path(ckpt).is_file()
    assert (tmp_path / "train" / "csv" / "metrics.csv").is_file()
    assert math.isfinite(metric_value(metrics, "val/auroc_patient_best"))
    for split in ("test", "val"):
        ecfg = compose_config(
            "eval",
            [*_synthetic(synthetic_cohort, tmp_path), *_out(tmp_path, f"eval_{split}"), f"ckpt_path={ckpt}",
             f"split={split}", "data.num_workers=0", "trainer.accelerator=cpu", "data.eval_batch_size=3"],
        )  # fmt: skip
        emetrics = evaluate(ecfg)
        key = f"{split}/auroc_patient"
        assert emetrics[key] == pytest.approx(metrics[key], abs=1e-6)
        a = read_patient_predictions(tmp_path / "train" / "predictions" / f"{split}_patients.csv")
        b = read_patient_predictions(tmp_path / f"eval_{split}" / "predictions" / f"{split}_patients.csv")
        assert a.pids == b.pids
        assert max(abs(x - y) for x, y in zip(a.probs, b.probs, strict=True)) < 1e-6
    # split=all scores every patient of the cohort; one preprocessing field overridden (1 slice each)
    ecfg = compose_config(
        "eval",
        [*_synthetic(synthetic_cohort, tmp_path), *_out(tmp_path, "eval_all"), f"ckpt_path={ckpt}",
         "split=all", "data.num_workers=0", "trainer.accelerator=cpu", "preprocess.n_slices=1"],
    )  # fmt: skip
    all_metrics = evaluate(ecfg)
    assert all_metrics["all/n_patients"] == 12 and all_metrics["all/n_slices"] == 12


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_configs_run_with_fast_dev_run(experiment, synthetic_cohort, tmp_path):
    cfg = compose_config(
        "train",
        [
            f"experiment={experiment}",
            "debug=fdr",
            "model.pretrained=false",  # offline: paper experiments ask for ImageNet weights
            *_synthetic(synthetic_cohort, tmp_path),
            *_out(tmp_path, "r"),
            *TINY,
        ],
    )
    metrics = train(cfg)
    assert "test/auroc_patient" in metrics
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["status"] == "ok"


def test_view_mismatch_and_failure_status(synthetic_cohort, tmp_path):
    cfg = compose_config(
        "train",
        ["debug=fdr", "model=resnet34", "preprocess.views=adjacent", *_synthetic(synthetic_cohort, tmp_path),
         *_out(tmp_path, "bad"), *TINY],
    )  # fmt: skip
    with pytest.raises(ValueError, match="preprocess.views='adjacent'"):
        train(cfg)
    payload = json.loads((tmp_path / "bad" / "metrics.json").read_text())
    assert payload["status"] == "failed" and "preprocess.views" in payload["error"]


def test_real_rgb_slices_tiny_resnet(real_data_dir, tmp_path):
    index = real_data_dir / "fedsubtype_ispy_rgb" / "subset_index.csv"
    if not index.is_file():
        pytest.skip(f"real RGB slice index absent: {index}")
    cfg = compose_config(
        "train",
        ["data=rgb_slices", f"data.index_csv={index}", "data.split_mode=kfold", "data.progress=false",
         "data.num_workers=0", "model=resnet34", "preprocess.image_size=64", "trainer.max_epochs=1",
         "trainer.limit_train_batches=2", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
         "trainer.accelerator=cpu", f"paths.cache_dir={tmp_path / 'cache'}", *_out(tmp_path, "real")],
    )  # fmt: skip
    metrics = train(cfg)
    assert metrics["val/n_patients"] >= 1 and metrics["test/n_patients"] >= 1
    assert (tmp_path / "real" / "predictions" / "test_patients.csv").is_file()
