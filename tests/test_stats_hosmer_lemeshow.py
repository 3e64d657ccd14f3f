"""Hosmer-Lemeshow against the ResourceSelection::hoslem.test algorithm run in R (1e-6)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from her2mri.stats import hosmer_lemeshow

TOL = 1e-6


@pytest.mark.parametrize(
    ("col", "g", "key"),
    [("prob", 10, "prob_g10"), ("prob", 5, "prob_g5"), ("prob_rounded", 10, "prob_rounded_g10")],
)
def test_matches_r(df, ref, col, g, key):
    r = ref["hoslem"][key]
    h = hosmer_lemeshow(df["y"], df[col], g=g)
    assert h.chi2 == pytest.approx(r["chisq"], abs=TOL)
    assert h.df == r["df"] == g - 2
    assert h.p_value == pytest.approx(r["p"], abs=TOL)
    assert h.breaks == pytest.approx(r["breaks"], abs=1e-9)
    assert h.count.tolist() == [int(c) for c in r["counts"]]
    assert h.observed == pytest.approx(r["observed1"], abs=1e-9)
    assert h.expected == pytest.approx(r["expected1"], abs=1e-9)


def test_rounded_probabilities_fall_in_right_closed_bins(df):
    """A value equal to a break belongs to the lower group (hoslem.test's cut(..., include.lowest = TRUE))."""
    p = df["prob_rounded"].to_numpy()
    h = hosmer_lemeshow(df["y"], p, g=10)
    inner = h.breaks[1:-1]
    assert any(np.any(p == b) for b in inner)  # the rounded data put values exactly on breaks
    right_closed = np.searchsorted(inner, p, side="left")  # group index with (lo, hi] bins
    left_closed = np.searchsorted(inner, p, side="right")  # [lo, hi) bins
    assert h.count.tolist() == np.bincount(right_closed, minlength=h.n_groups).tolist()
    assert h.count.tolist() != np.bincount(left_closed, minlength=h.n_groups).tolist()


def test_tied_probabilities_warn_and_keep_df():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(0.05, 0.95, 60), np.full(40, 0.5)])  # a big tied block merges breaks
    y = (rng.uniform(size=p.size) < p).astype(int)
    with pytest.warns(UserWarning, match="groups instead of g=10"):
        h = hosmer_lemeshow(y, p)
    assert h.n_groups < 10 and h.df == 8
    assert h.count.sum() == 100


def test_empty_group_raises_clear_error():
    # interpolated quantile 0.4 between the tied blocks 0.3 and 0.5 leaves (0.3, 0.4] empty (R gives NaN)
    p = np.repeat([0.1, 0.3, 0.5, 0.7], 25)
    y = np.tile([0, 1], 50)
    with pytest.raises(ValueError, match="is empty"), pytest.warns(UserWarning, match="groups instead"):
        hosmer_lemeshow(y, p)


@pytest.mark.parametrize("g", [2, 0, 4.5, True])
def test_bad_g(g):
    with pytest.raises(ValueError, match="g must"):
        hosmer_lemeshow([0, 1, 0, 1], [0.1, 0.4, 0.5, 0.9], g=g)


def test_to_dict(df):
    d = json.loads(json.dumps(hosmer_lemeshow(df["y"], df["prob"]).to_dict()))
    assert d["df"] == 8 and len(d["observed"]) == d["n_groups"] == 10
