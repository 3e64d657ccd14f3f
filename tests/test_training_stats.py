"""metrics.json carries the clinical statistics with CIs ({stage}/stats/*)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from her2mri.runs.train import clinical_stats
from her2mri.stats import auc_ci_delong, youden_threshold
from her2mri.stats.patient_metrics import patient_metrics_with_ci


def _patients(seed: int, n: int = 40) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    labels = np.array([0, 1] * (n // 2))
    probs = np.clip(0.5 + 0.25 * (labels - 0.5) + rng.normal(0, 0.2, n), 0.01, 0.99)
    return SimpleNamespace(labels=labels, probs=probs)


def _module(**stages) -> SimpleNamespace:
    return SimpleNamespace(
        predictions={k: (None, v) for k, v in stages.items()}, hparams=SimpleNamespace(threshold=0.5)
    )


def test_test_stats_use_val_youden_threshold_and_match_stats():
    val, test = _patients(0), _patients(1)
    cfg = OmegaConf.create({"stats_n_boot": 200, "seed": 3})
    out = clinical_stats(_module(val=val, test=test), "test", cfg)
    ci = auc_ci_delong(test.labels, test.probs)
    assert out["test/stats/auroc"] == pytest.approx(ci.auc, abs=1e-12)
    assert out["test/stats/auroc_ci_low"] == pytest.approx(ci.ci_lower, abs=1e-12)
    assert out["test/stats/threshold"] == pytest.approx(youden_threshold(val.labels, val.probs))
    expected = patient_metrics_with_ci(test.labels, test.probs, val.labels, val.probs, n_boot=200, seed=3)
    assert out["test/stats/auroc_boot_ci_high"] == pytest.approx(expected["auroc_boot_ci_high"])


def test_val_stats_use_fixed_threshold_and_one_class_leaves_auc_out():
    val = _patients(0)
    cfg = OmegaConf.create({"stats_n_boot": 100, "seed": 0})
    out = clinical_stats(_module(val=val), "val", cfg)
    assert out["val/stats/threshold"] == 0.5
    one_class = SimpleNamespace(labels=np.zeros(10, dtype=int), probs=np.linspace(0.1, 0.9, 10))
    partial = clinical_stats(_module(test=one_class), "test", cfg)
    assert "test/stats/auroc" not in partial  # undefined with one class: left out, not NaN
    assert partial["test/stats/specificity"] == pytest.approx(np.mean(one_class.probs <= 0.5))
    assert clinical_stats(_module(val=val), "val", OmegaConf.create({"stats_n_boot": 0})) == {}
