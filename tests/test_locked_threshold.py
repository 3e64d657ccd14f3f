"""The locked threshold (issue 14 item 5): chosen on validation in training, stored, applied by default."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from _helpers import compose_config, synthetic_overrides

from her2mri.runs.outputs import read_patient_predictions
from her2mri.stats.thresholds import youden_threshold
from her2mri.training.metrics import binary_metrics
from her2mri.training.threshold import choose_threshold, resolve_threshold, sensitivity_threshold

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rules_on_known_scores():
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8, 0.9])
    lt = choose_threshold(p, y)
    assert lt.rule == "youden" and lt.value == pytest.approx(youden_threshold(y, p))
    assert lt.value == pytest.approx(0.5)  # 0.4 | 0.6: sens 0.8, spec 1.0 (J = 0.8, the best)
    assert (lt.val_sensitivity, lt.val_specificity, lt.n_val, lt.n_pos) == (0.8, 1.0, 10, 5)
    st = choose_threshold(p, y, rule="sensitivity", target_sensitivity=1.0)
    assert st.value == pytest.approx((0.35 + 0.3) / 2) and st.val_sensitivity == 1.0
    for target in (0.2, 0.6, 0.8, 1.0):  # the highest threshold that reaches the target
        t = sensitivity_threshold(p, y, target)
        assert (p[y == 1] > t).mean() >= target
        higher = np.sort(p[p > t])[0]  # the next score up: calling it negative misses the target
        assert (p[y == 1] > higher).mean() < target
    one_class = choose_threshold(p[y == 0], y[y == 0])
    assert one_class.value is None
    with pytest.raises(ValueError, match="threshold_rule='best'"):
        choose_threshold(p, y, rule="best")
    with pytest.raises(ValueError, match="target_sensitivity=1.5"):
        sensitivity_threshold(p, y, 1.5)


def test_resolve_threshold_fallback_warns(caplog):
    assert resolve_threshold({"value": 0.3, "rule": "youden", "n_val": 5})[0] == 0.3
    assert resolve_threshold({"value": 0.3, "rule": "youden"}, override=0.7) == (0.7, "given")
    with caplog.at_level(logging.WARNING):
        value, source = resolve_threshold(None)
    assert (value, source) == (0.5, "fallback_0.5") and "no locked threshold" in caplog.text
    with pytest.raises(ValueError, match="threshold=2"):
        resolve_threshold(None, override=2)


def test_training_stores_and_eval_and_report_apply_it(tiny_run, synthetic_cohort, tmp_path, caplog):
    from her2mri.report.build import build_report
    from her2mri.runs.evaluate import evaluate

    run, ckpt = tiny_run
    payload = json.loads((run / "metrics.json").read_text())
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]["locked_threshold"]
    assert stored == payload["locked_threshold"] and stored["rule"] == "youden"
    val = read_patient_predictions(run / "predictions" / "val_patients.csv")
    # the stored value is the Youden threshold of the best checkpoint's validation patients
    assert stored["value"] == pytest.approx(youden_threshold(val.labels, val.probs), abs=1e-12)
    assert payload["metrics"]["val/threshold_locked"] == pytest.approx(stored["value"])
    test = read_patient_predictions(run / "predictions" / "test_patients.csv")
    acc = binary_metrics(test.probs, test.labels, stored["value"])["accuracy"]
    assert payload["metrics"]["test/accuracy_patient_locked"] == pytest.approx(acc)

    # her2mri-eval applies the stored threshold by default
    base = [*synthetic_overrides(synthetic_cohort, tmp_path), f"ckpt_path={ckpt}", "trainer.accelerator=cpu",
            "stats_n_boot=0"]  # fmt: skip
    evaluate(compose_config("eval", [*base, f"paths.output_dir={tmp_path / 'e'}"]))
    ev = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert ev["threshold"]["value"] == pytest.approx(stored["value"])
    assert ev["threshold"]["source"].startswith("locked (youden on")
    assert ev["metrics"]["test/accuracy_patient"] == pytest.approx(acc)

    # a checkpoint without one: 0.5 and a warning
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    ck["hyper_parameters"]["locked_threshold"] = None
    old = tmp_path / "old.ckpt"
    torch.save(ck, old)
    with caplog.at_level(logging.WARNING):
        evaluate(compose_config("eval", [*base, f"ckpt_path={old}", f"paths.output_dir={tmp_path / 'o'}"]))
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["threshold"]["value"] == 0.5
    assert "no locked threshold" in caplog.text

    # her2mri-report: the run's locked threshold by default, 0.5 with a note when none is stored
    doc = json.loads(build_report([str(tmp_path / "e")], tmp_path / "r", n_boot=20).json.read_text())
    model = next(iter(doc["models"].values()))
    assert model["threshold_source"] == "locked"
    assert model["metrics"]["threshold"] == pytest.approx(stored["value"])
    doc = json.loads(build_report([str(tmp_path / "o")], tmp_path / "r2", n_boot=20).json.read_text())
    model = next(iter(doc["models"].values()))
    assert model["threshold_source"] == "fallback_0.5" and model["metrics"]["threshold"] == 0.5


def test_sensitivity_rule_from_the_config(synthetic_cohort, tmp_path):
    from her2mri.training.module import HER2Classifier

    cfg = compose_config("train", ["module.threshold_rule=sensitivity", "module.target_sensitivity=0.8"])
    assert cfg.module.threshold_rule == "sensitivity" and cfg.module.target_sensitivity == 0.8
    with pytest.raises(ValueError, match="threshold_rule='max'"):
        HER2Classifier({"name": "resnet34", "pretrained": False}, threshold_rule="max")
