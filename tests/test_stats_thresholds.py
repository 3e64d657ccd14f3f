"""Youden threshold (vs pROC coords), confusion metrics, Wilson CIs (vs R prop.test and Newcombe 1998)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from her2mri.stats import metrics_at_threshold, metrics_at_youden, wilson_ci, youden_threshold


def test_youden_threshold_matches_proc_coords_best(df, ref):
    assert ref["youden"]["n_best"] == 1  # unique optimum, so tie-breaking does not matter here
    thr = youden_threshold(df["y"], df["score_a"])
    assert thr == pytest.approx(ref["youden"]["threshold"], abs=1e-9)
    m = metrics_at_threshold(df["y"], df["score_a"], thr)
    assert m.sensitivity.estimate == pytest.approx(ref["youden"]["sensitivity"], abs=1e-12)
    assert m.specificity.estimate == pytest.approx(ref["youden"]["specificity"], abs=1e-12)


def test_wilson_textbook_value():
    # Newcombe (1998) Stat Med 17:857, Table I, example 81/263: Wilson 0.2553 to 0.3662
    r = wilson_ci(81, 263)
    assert (round(r.lower, 4), round(r.upper, 4)) == (0.2553, 0.3662)
    assert r.estimate == pytest.approx(81 / 263)


def test_wilson_matches_r_prop_test(ref):
    for case in ref["wilson"]:
        r = wilson_ci(case["x"], case["n"])
        assert r.lower == pytest.approx(case["lower"], abs=1e-9), case
        assert r.upper == pytest.approx(case["upper"], abs=1e-9), case


def test_wilson_zero_total_is_undefined():
    r = wilson_ci(0, 0)
    assert math.isnan(r.estimate) and math.isnan(r.lower)
    assert r.to_dict()["estimate"] is None


@pytest.mark.parametrize(("x", "n"), [(5, 3), (-1, 3), (1.5, 3), (1, -2)])
def test_wilson_bad_counts(x, n):
    with pytest.raises(ValueError, match="successes|total"):
        wilson_ci(x, n)


def test_confusion_matches_sklearn_and_ge_rule(df):
    thr = float(np.sort(df["score_a"])[100])  # a threshold equal to an observed score
    m = metrics_at_threshold(df["y"], df["score_a"], thr)
    pred = (df["score_a"] >= thr).astype(int)
    assert m.confusion_matrix.tolist() == confusion_matrix(df["y"], pred).tolist()
    assert m.tp + m.fp == int((df["score_a"] >= thr).sum())  # score == threshold counts as positive
    assert m.ppv.estimate == pytest.approx(m.tp / (m.tp + m.fp))
    assert m.npv.estimate == pytest.approx(m.tn / (m.tn + m.fn))
    assert m.accuracy.estimate == pytest.approx((m.tp + m.tn) / len(df))
    ba = m.balanced_accuracy
    assert ba.estimate == pytest.approx((m.sensitivity.estimate + m.specificity.estimate) / 2)
    assert 0.0 <= ba.lower < ba.estimate < ba.upper <= 1.0
    assert ba.method == "mover-wilson" and ba.successes is None


def test_youden_chosen_on_val_applied_to_test():
    rng = np.random.default_rng(0)
    y_val = rng.integers(0, 2, 80)
    s_val = y_val + rng.normal(size=80)
    y_test = rng.integers(0, 2, 60)
    s_test = y_test + rng.normal(size=60) + 0.7  # shifted test scores: the val threshold is not test-optimal
    m = metrics_at_youden(y_val, s_val, y_test, s_test)
    assert m.threshold == youden_threshold(y_val, s_val)
    assert m.threshold != youden_threshold(y_test, s_test)
    assert m.threshold_source == "youden_val"
    assert m.tp + m.fn == int(y_test.sum())
    d = json.loads(json.dumps(m.to_dict()))
    assert d["sensitivity"]["total"] == int(y_test.sum())


def test_youden_ties_go_to_highest_threshold():
    # J = 0.5 at threshold 1.5 and at 3.5
    y = np.array([0, 1, 0, 1])
    s = np.array([1.0, 2.0, 3.0, 4.0])
    assert youden_threshold(y, s) == 3.5


def test_undefined_ppv_is_nan_not_zero():
    m = metrics_at_threshold([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], threshold=0.9)
    assert m.tp == m.fp == 0
    assert math.isnan(m.ppv.estimate)
    assert m.to_dict()["ppv"]["estimate"] is None


def test_threshold_must_be_finite():
    with pytest.raises(ValueError, match="threshold"):
        metrics_at_threshold([0, 1], [0.1, 0.2], threshold=float("nan"))
