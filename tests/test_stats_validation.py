"""Degenerate inputs give clear ValueErrors naming the argument and the bad value."""

from __future__ import annotations

import numpy as np
import pytest

from her2mri import stats

Y = np.array([0, 1, 0, 1, 0, 1, 1, 0])
S = np.array([0.1, 0.8, 0.3, 0.6, 0.4, 0.9, 0.35, 0.2])

# (name, function taking (y, s)) for every statistic that needs both classes
BOTH_CLASSES = [
    ("roc_auc", stats.roc_auc),
    ("auc_ci_delong", stats.auc_ci_delong),
    ("auc_ci_bootstrap", lambda y, s: stats.auc_ci_bootstrap(y, s, n_boot=20)),
    ("delong_test", lambda y, s: stats.delong_test(y, s, s[::-1].copy())),
    ("youden_threshold", stats.youden_threshold),
    ("calibration_stats", stats.calibration_stats),
    ("hosmer_lemeshow", lambda y, s: stats.hosmer_lemeshow(y, s, g=3)),
]
ALL = [
    *BOTH_CLASSES,
    ("metrics_at_threshold", lambda y, s: stats.metrics_at_threshold(y, s, 0.5)),
    ("brier_score", stats.brier_score),
    ("calibration_curve", stats.calibration_curve),
    ("net_benefit", lambda y, s: stats.net_benefit(y, s, [0.2])),
]
NEED_VARIANCE = [
    ("auc_ci_delong", stats.auc_ci_delong),
    ("delong_test", lambda y, s: stats.delong_test(y, s, S)),
    ("youden_threshold", stats.youden_threshold),
    ("calibration_stats", stats.calibration_stats),
    ("hosmer_lemeshow", stats.hosmer_lemeshow),
]


@pytest.mark.parametrize(("name", "fn"), BOTH_CLASSES, ids=[n for n, _ in BOTH_CLASSES])
def test_one_class_only(name, fn):
    with pytest.raises(ValueError, match="one class only"):
        fn(np.ones(8, dtype=int), S)


@pytest.mark.parametrize(("name", "fn"), NEED_VARIANCE, ids=[n for n, _ in NEED_VARIANCE])
def test_constant_scores(name, fn):
    with pytest.raises(ValueError, match="constant"):
        fn(Y, np.full(8, 0.4))


@pytest.mark.parametrize(("name", "fn"), ALL, ids=[n for n, _ in ALL])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_scores(name, fn, bad):
    s = S.copy()
    s[2] = bad
    with pytest.raises(ValueError, match=r"NaN/inf value\(s\) at index \[2\]"):
        fn(Y, s)


@pytest.mark.parametrize(("name", "fn"), ALL, ids=[n for n, _ in ALL])
def test_nan_labels(name, fn):
    y = Y.astype(float)
    y[0] = np.nan
    with pytest.raises(ValueError, match="y_true contains 1 NaN/inf"):
        fn(y, S)


@pytest.mark.parametrize(("name", "fn"), ALL, ids=[n for n, _ in ALL])
def test_length_mismatch(name, fn):
    with pytest.raises(ValueError, match="length mismatch: y_true has 8, .* has 7"):
        fn(Y, S[:7])


@pytest.mark.parametrize(("name", "fn"), ALL, ids=[n for n, _ in ALL])
def test_labels_not_binary(name, fn):
    y = Y.copy()
    y[0] = 2
    with pytest.raises(ValueError, match=r"y_true must contain only 0 and 1; got \[2.0\]"):
        fn(y, S)


def test_string_labels_and_2d_scores():
    with pytest.raises(ValueError, match="y_true must be numeric"):
        stats.roc_auc(np.array(["neg", "pos"]), [0.1, 0.2])
    with pytest.raises(ValueError, match="y_score must be 1-D"):
        stats.roc_auc([0, 1], [[0.1, 0.2]])
    with pytest.raises(ValueError, match="y_true is empty"):
        stats.roc_auc([], [])


def test_probabilities_outside_unit_interval():
    with pytest.raises(ValueError, match=r"y_prob must be probabilities in \[0, 1\]"):
        stats.calibration_stats(Y, S + 1)


def test_too_few_per_class_for_delong():
    with pytest.raises(ValueError, match=">= 2 positives"):
        stats.auc_ci_delong([0, 0, 1], [0.1, 0.2, 0.3])


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1])
def test_bad_conf_level(level):
    with pytest.raises(ValueError, match="conf_level"):
        stats.auc_ci_delong(Y, S, conf_level=level)
