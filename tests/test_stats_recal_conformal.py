"""Recalibration (Platt, isotonic, temperature), ECE, split-conformal sets, unpaired DeLong (issue 16)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from her2mri.stats import (
    ConformalCalibration,
    Recalibrator,
    auc_ci_delong,
    calibration_stats,
    conformal_coverage,
    delong_test_unpaired,
    expected_calibration_error,
    fit_conformal,
    fit_recalibrator,
)


def _miscalibrated(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels from a true logistic risk and a deliberately miscalibrated score: too extreme and too high."""
    z = rng.normal(size=n)
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-(z - 1.0)))).astype(int)
    p_bad = 1.0 / (1.0 + np.exp(-(2.5 * (z - 1.0) + 1.5)))
    return y, p_bad


@pytest.mark.parametrize("method", ["platt", "isotonic", "temperature"])
def test_recalibration_lowers_calibration_error_on_held_out_data(method):
    rng = np.random.default_rng(0)
    y_cal, p_cal = _miscalibrated(rng, 300)
    y_test, p_test = _miscalibrated(rng, 3000)  # held out: never seen by the fit
    rec = fit_recalibrator(y_cal, p_cal, method)
    p_new = rec.apply(p_test)
    before, after = expected_calibration_error(y_test, p_test), expected_calibration_error(y_test, p_new)
    assert before > 0.1
    assert after < 0.8 * before
    if method != "isotonic":
        from sklearn.metrics import log_loss

        assert log_loss(y_test, p_new) < log_loss(y_test, p_test)


def test_platt_recovers_the_known_map_and_repairs_intercept_and_slope():
    # truth: logit P = z - 1; score: logit p = 2.5 (z - 1) + 1.5  =>  P = sigmoid(-0.6 + 0.4 logit p)
    rng = np.random.default_rng(1)
    y_cal, p_cal = _miscalibrated(rng, 20000)
    rec = fit_recalibrator(y_cal, p_cal, "platt")
    assert rec.params["a"] == pytest.approx(-0.6, abs=0.06)
    assert rec.params["b"] == pytest.approx(0.4, abs=0.03)
    y_t, p_t = _miscalibrated(rng, 20000)
    c = calibration_stats(y_t, rec.apply(p_t))
    assert c.slope == pytest.approx(1.0, abs=0.05) and c.intercept == pytest.approx(0.0, abs=0.05)


def test_temperature_only_rescales_and_keeps_the_ranking():
    rng = np.random.default_rng(2)
    y, p = _miscalibrated(rng, 500)
    rec = fit_recalibrator(y, p, "temperature")
    assert rec.params["temperature"] > 1.0  # over-confident scores are softened
    q = rec.apply(p)
    assert np.array_equal(np.argsort(p, kind="stable"), np.argsort(q, kind="stable"))


@pytest.mark.parametrize("method", ["platt", "isotonic", "temperature"])
def test_recalibrator_json_round_trip_applies_identically(method):
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(3)
    y, p = _miscalibrated(rng, 200)
    rec = fit_recalibrator(y, p, method)
    back = Recalibrator.from_dict(json.loads(json.dumps(rec.to_dict())))
    grid = np.linspace(0.0, 1.0, 101)
    assert np.array_equal(back.apply(grid), rec.apply(grid))
    if method == "isotonic":  # the saved knots reproduce scikit-learn's own predict
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        assert np.allclose(back.apply(grid), iso.predict(grid), atol=1e-12)


def test_recalibration_bad_inputs():
    with pytest.raises(ValueError, match="method"):
        fit_recalibrator([0, 1], [0.2, 0.8], "beta")
    with pytest.raises(ValueError, match="both"):
        fit_recalibrator([1, 1, 1], [0.2, 0.8, 0.5], "platt")
    with pytest.raises(ValueError, match="temperature"):
        Recalibrator.from_dict({"method": "temperature", "params": {"temperature": -1}})
    with pytest.raises(ValueError, match="lacks"):
        Recalibrator.from_dict({"method": "platt", "params": {"a": 0.0}})


def test_platt_stays_finite_under_perfect_separation():
    rec = fit_recalibrator([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], "platt")
    assert math.isfinite(rec.params["a"]) and math.isfinite(rec.params["b"])


def test_ece_known_values():
    assert expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)
    # two bins: predicted 0.05 observed 0, predicted 0.95 observed 1 -> ECE 0.05
    assert expected_calibration_error([0, 0, 1, 1], [0.05, 0.05, 0.95, 0.95]) == pytest.approx(0.05)


# ----------------------------------------------------------------------------------------------- conformal
@pytest.mark.parametrize(("mode", "alpha"), [("marginal", 0.1), ("marginal", 0.2), ("class", 0.1)])
def test_conformal_coverage_at_least_one_minus_alpha_over_many_draws(mode, alpha):
    """Exchangeable calibration/test draws: mean coverage >= 1 - alpha (up to Monte-Carlo error)."""
    rng = np.random.default_rng(4)
    cover, cover_pos = [], []
    n_draws, n_cal, n_test = 400, 100, 200
    for _ in range(n_draws):
        z = rng.normal(size=n_cal + n_test)
        y = (rng.uniform(size=z.size) < 1.0 / (1.0 + np.exp(-(1.5 * z - 0.8)))).astype(int)
        p = 1.0 / (1.0 + np.exp(-(2.0 * z)))  # a miscalibrated but informative score
        conf = fit_conformal(y[:n_cal], p[:n_cal], alpha=alpha, mode=mode)
        cov = conformal_coverage(conf, y[n_cal:], p[n_cal:])
        cover.append(cov["coverage"])
        cover_pos.append(cov["coverage_pos"])
    mc_se = np.std(cover) / math.sqrt(n_draws)
    assert np.mean(cover) >= 1.0 - alpha - 2.0 * mc_se
    # the guarantee is tight-ish, not trivially met by answering "uncertain" for everybody
    assert np.mean(cover) <= 1.0 - alpha + 0.06
    if mode == "class":
        assert np.mean(cover_pos) >= 1.0 - alpha - 3.0 * np.std(cover_pos) / math.sqrt(n_draws)


def test_conformal_sets_and_calls_by_hand():
    # scores 1 - p(true): 0.1, 0.2, 0.3, 0.4, 0.6 (n = 5); alpha 0.2 -> k = ceil(6 * 0.8) = 5 -> qhat = 0.6
    conf = fit_conformal([1, 1, 0, 0, 1], [0.9, 0.8, 0.3, 0.4, 0.4], alpha=0.2)
    assert conf.qhat["all"] == pytest.approx(0.6)
    # HER2+ in set when 1 - p <= 0.6 (p >= 0.4); HER2- when p <= 0.6
    assert conf.calls([0.1, 0.5, 0.95]) == ["HER2-", "uncertain", "HER2+"]
    # too few calibration patients for alpha: k > n -> every set is {0, 1}
    small = fit_conformal([0, 1], [0.2, 0.9], alpha=0.1)
    assert small.qhat["all"] is None and small.calls([0.01, 0.99]) == ["uncertain", "uncertain"]
    # an empty set is possible when qhat < 0.5
    tight = fit_conformal([0] * 10 + [1] * 10, [0.02] * 10 + [0.98] * 10, alpha=0.1)
    assert tight.calls([0.5]) == ["empty"]


def test_conformal_json_round_trip_and_errors():
    conf = fit_conformal([0, 1, 0, 1, 0, 1] * 5, np.linspace(0.05, 0.95, 30), alpha=0.1, mode="class")
    back = ConformalCalibration.from_dict(json.loads(json.dumps(conf.to_dict())))
    grid = np.linspace(0, 1, 51)
    assert back.calls(grid) == conf.calls(grid)
    with pytest.raises(ValueError, match="alpha"):
        fit_conformal([0, 1], [0.2, 0.8], alpha=1.5)
    with pytest.raises(ValueError, match="mode"):
        fit_conformal([0, 1], [0.2, 0.8], mode="mondrian")


# ------------------------------------------------------------------------------------------- unpaired DeLong
def _direct_delong_variance(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """AUC and DeLong variance from the pairwise kernel written out (DeLong et al. 1988, section 2)."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = psi.mean()
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    s10 = np.sum((v10 - auc) ** 2) / (pos.size - 1)
    s01 = np.sum((v01 - auc) ** 2) / (neg.size - 1)
    return float(auc), float(s10 / pos.size + s01 / neg.size)


def _unpaired_example(df: pd.DataFrame) -> tuple[np.ndarray, ...]:
    y = df["y"].to_numpy()
    return y[:100], df["score_a"].to_numpy()[:100], y[100:], df["score_b"].to_numpy()[100:]


def test_unpaired_delong_equals_the_direct_formula(df):
    """pROC roc.test(paired = FALSE) written out independently of her2mri's midrank DeLong."""
    y1, s1, y2, s2 = _unpaired_example(df)
    r = delong_test_unpaired(y1, s1, y2, s2)
    a1, v1 = _direct_delong_variance(y1, s1)
    a2, v2 = _direct_delong_variance(y2, s2)
    d = (a1 - a2) / math.sqrt(v1 + v2)
    dof = (v1 + v2) ** 2 / (v1**2 / (y1.size - 1) + v2**2 / (y2.size - 1))
    p = 2 * student_t.sf(abs(d), dof)
    assert r.auc1 == pytest.approx(a1, abs=1e-12) and r.auc2 == pytest.approx(a2, abs=1e-12)
    assert r.var1 == pytest.approx(v1, rel=1e-10) and r.var2 == pytest.approx(v2, rel=1e-10)
    assert r.statistic == pytest.approx(d, rel=1e-10)
    assert r.df == pytest.approx(dof, rel=1e-10)
    assert r.p_value == pytest.approx(p, rel=1e-10)
    assert r.diff_ci_lower < r.diff < r.diff_ci_upper
    # and it reuses the same DeLong variance as the CI of each AUC
    assert r.var1 == pytest.approx(auc_ci_delong(y1, s1).variance, rel=1e-12)
    # swapping the cohorts flips the sign and keeps p
    s = delong_test_unpaired(y2, s2, y1, s1)
    assert s.statistic == pytest.approx(-r.statistic) and s.p_value == pytest.approx(r.p_value)


def test_unpaired_delong_matches_r_roc_test(df, ref):
    if "delong_unpaired" not in ref:
        pytest.skip(
            "tests/data/r_reference.json has no delong_unpaired block: regenerate it with "
            "tools/make_r_reference.py where R + pROC are installed"
        )
    y1, s1, y2, s2 = _unpaired_example(df)
    r = delong_test_unpaired(y1, s1, y2, s2)
    u = ref["delong_unpaired"]
    assert r.statistic == pytest.approx(u["statistic"], abs=1e-6)
    assert r.df == pytest.approx(u["df"], abs=1e-6)
    assert r.p_value == pytest.approx(u["p"], abs=1e-6)


def test_unpaired_delong_detects_a_real_difference():
    rng = np.random.default_rng(5)
    y1, y2 = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    good, poor = y1 * 2.0 + rng.normal(size=400), y2 * 0.2 + rng.normal(size=400)
    assert delong_test_unpaired(y1, good, y2, poor).p_value < 1e-6
    with pytest.raises(ValueError, match="positives"):
        delong_test_unpaired([0, 1, 1], [0.1, 0.5, 0.7], y2, poor)
