"""Calibration intercept/slope/Brier (vs R rms::val.prob 6.5), calibration-in-the-large, binned curve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from her2mri.stats import brier_score, calibration_curve, calibration_stats, hosmer_lemeshow

TOL = 1e-6


@pytest.mark.parametrize(("col", "key"), [("prob", "calibration"), ("prob_rounded", "calibration_rounded")])
def test_matches_rms_val_prob(df, ref, col, key):
    c = calibration_stats(df["y"], df[col])
    r = ref[key]
    assert c.intercept == pytest.approx(r["intercept"], abs=TOL)
    assert c.slope == pytest.approx(r["slope"], abs=TOL)
    assert c.brier == pytest.approx(r["brier"], abs=TOL)
    assert c.n_clipped == 0


def test_calibration_in_the_large_matches_r_glm_offset(df, ref):
    c = calibration_stats(df["y"], df["prob"])
    assert c.citl == pytest.approx(ref["calibration"]["citl"], abs=TOL)
    assert c.citl != pytest.approx(c.intercept, abs=1e-3)  # two different definitions


def test_well_calibrated_probabilities_give_slope_one():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, size=20000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    c = calibration_stats(y, p)
    assert c.slope == pytest.approx(1.0, abs=0.06)
    assert c.intercept == pytest.approx(0.0, abs=0.05)
    assert c.citl == pytest.approx(0.0, abs=0.05)


def test_probabilities_of_0_and_1_are_clipped_not_infinite():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    p = np.array([0.0, 0.2, 0.7, 1.0, 0.6, 0.4, 0.9, 0.1])
    c = calibration_stats(y, p)
    assert c.n_clipped == 2 and np.isfinite(c.slope) and c.eps == 1e-6
    assert c.brier == pytest.approx(brier_score(y, p))


def test_perfect_separation_raises_clear_error():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    with pytest.raises(ValueError, match="separated|converge"):
        calibration_stats(y, p)


def test_bad_eps():
    with pytest.raises(ValueError, match="eps"):
        calibration_stats([0, 1, 0, 1], [0.2, 0.3, 0.6, 0.7], eps=0.0)


def test_quantile_curve_uses_the_hosmer_lemeshow_groups(df):
    cur = calibration_curve(df["y"], df["prob"], n_bins=10, strategy="quantile")
    hl = hosmer_lemeshow(df["y"], df["prob"], g=10)
    assert cur.count.tolist() == hl.count.tolist()
    assert cur.observed == pytest.approx(hl.observed / hl.count)
    assert cur.mean_predicted == pytest.approx(hl.expected / hl.count)


def test_uniform_curve_drops_empty_bins():
    y = np.array([0, 1, 0, 1, 1])
    p = np.array([0.05, 0.08, 0.91, 0.95, 1.0])
    cur = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert cur.count.tolist() == [2, 3]
    assert cur.observed.tolist() == [0.5, pytest.approx(2 / 3)]
    assert len(cur.bin_edges) == 11
    assert json.loads(json.dumps(cur.to_dict()))["strategy"] == "uniform"


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"strategy": "kmeans"}, "strategy"), ({"n_bins": 1}, "n_bins")]
)
def test_curve_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibration_curve([0, 1], [0.2, 0.8], **kwargs)
