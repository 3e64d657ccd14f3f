"""Stratified percentile bootstrap: reproducible per seed, stratified, consistent with the generic version."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from her2mri.stats import auc_ci_bootstrap, auc_ci_delong, bootstrap_ci, stratified_bootstrap_indices


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    y = (rng.uniform(size=120) < 0.3).astype(int)
    s = y * 0.9 + rng.normal(size=120)
    return y, s


def test_same_seed_same_ci_other_seed_other_ci(data):
    y, s = data
    a = auc_ci_bootstrap(y, s, n_boot=500, seed=1)
    b = auc_ci_bootstrap(y, s, n_boot=500, seed=1)
    c = auc_ci_bootstrap(y, s, n_boot=500, seed=2)
    assert (a.ci_lower, a.ci_upper) == (b.ci_lower, b.ci_upper)
    assert (a.ci_lower, a.ci_upper) != (c.ci_lower, c.ci_upper)
    assert a.auc == c.auc == pytest.approx(roc_auc_score(y, s))
    assert a.method == "bootstrap" and a.n_boot == 500 and a.seed == 1


def test_default_2000_close_to_delong(data):
    y, s = data
    boot = auc_ci_bootstrap(y, s)
    dl = auc_ci_delong(y, s)
    assert boot.n_boot == 2000
    assert boot.ci_lower < boot.auc < boot.ci_upper
    assert boot.ci_lower == pytest.approx(dl.ci_lower, abs=0.03)
    assert boot.ci_upper == pytest.approx(dl.ci_upper, abs=0.03)


def test_replicates_are_stratified(data):
    y, _ = data
    idx = stratified_bootstrap_indices(y, 50, seed=0)
    assert idx.shape == (50, y.size)
    assert np.all(y[idx].sum(axis=1) == y.sum())  # class counts kept in every replicate


def test_generic_bootstrap_equals_vectorised_auc(data):
    y, s = data
    est, lo, hi = bootstrap_ci(y, s, roc_auc_score, n_boot=100, seed=5)
    fast = auc_ci_bootstrap(y, s, n_boot=100, seed=5)
    assert est == pytest.approx(fast.auc, abs=1e-12)
    assert (lo, hi) == pytest.approx((fast.ci_lower, fast.ci_upper), abs=1e-12)


@pytest.mark.parametrize("n_boot", [0, 5, 10.5, True])
def test_bad_n_boot(data, n_boot):
    y, s = data
    with pytest.raises(ValueError, match="n_boot"):
        auc_ci_bootstrap(y, s, n_boot=n_boot)


def test_undefined_statistic_raises(data):
    y, s = data
    with pytest.raises(ValueError, match="undefined"):
        bootstrap_ci(y, s, lambda yy, ss: float("nan"), n_boot=20)
