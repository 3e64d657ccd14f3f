"""DeLong AUC CI and paired test against R pROC 1.18 (committed reference numbers, 1e-6)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from her2mri.stats import auc_ci_delong, delong_covariance, delong_pvalue_matrix, delong_test, roc_auc

TOL = 1e-6


@pytest.mark.parametrize(
    ("col", "key", "level"),
    [("score_a", "ci_a", 0.95), ("score_b", "ci_b", 0.95), ("score_a", "ci_a_90", 0.90)],
)
def test_delong_ci_matches_proc(df, ref, col, key, level):
    r = auc_ci_delong(df["y"], df[col], conf_level=level)
    lo, mid, hi = ref["delong"][key]
    assert r.auc == pytest.approx(mid, abs=TOL)
    assert r.ci_lower == pytest.approx(lo, abs=TOL)
    assert r.ci_upper == pytest.approx(hi, abs=TOL)
    assert (r.n_pos, r.n_neg) == (int(df["y"].sum()), int((1 - df["y"]).sum()))


def test_delong_variance_and_covariance_match_proc(df, ref):
    aucs, cov = delong_covariance(df["y"], df["score_a"], df["score_b"])
    assert aucs[0] == pytest.approx(ref["delong"]["auc_a"], abs=TOL)
    assert aucs[1] == pytest.approx(ref["delong"]["auc_b"], abs=TOL)
    assert cov[0, 0] == pytest.approx(ref["delong"]["var_a"], abs=1e-9)
    assert cov[0, 1] == pytest.approx(ref["delong"]["cov_ab"], abs=1e-9)


def test_paired_delong_test_matches_proc(df, ref):
    t = delong_test(df["y"], df["score_a"], df["score_b"])
    assert t.z == pytest.approx(ref["delong"]["test_z"], abs=TOL)
    assert t.p_value == pytest.approx(ref["delong"]["test_p"], abs=TOL)
    assert [t.diff_ci_lower, t.diff_ci_upper] == pytest.approx(ref["delong"]["test_diff_ci"], abs=TOL)
    assert t.diff == pytest.approx(ref["delong"]["auc_a"] - ref["delong"]["auc_b"], abs=TOL)
    # swapping the models flips the sign of z and keeps p
    s = delong_test(df["y"], df["score_b"], df["score_a"])
    assert s.z == pytest.approx(-t.z) and s.p_value == pytest.approx(t.p_value)


def test_asah_reference_is_pROC_documented_example(ref):
    # pROC's documented example roc.test(s100b, wfns): Z = -2.209, p = 0.0272 (the aSAH data is GPL-3 and not
    # committed; tools/make_r_reference.py checked Python on it to 1e-6 when the JSON was generated).
    assert ref["asah"]["z"] == pytest.approx(-2.209, abs=5e-4)
    assert ref["asah"]["p"] == pytest.approx(0.0272, abs=5e-5)
    assert ref["asah"]["python"]["z"] == pytest.approx(ref["asah"]["z"], abs=TOL)


def _naive_placements(y, s):
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(axis=1), 1.0 - psi.mean(axis=0), psi.mean()


def test_fast_delong_equals_direct_definition_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 70)
    s1 = np.round(y + rng.normal(size=70), 1)  # ties
    s2 = np.round(0.5 * y + rng.normal(size=70), 1)
    aucs, cov = delong_covariance(y, s1, s2)
    v10_1, v01_1, a1 = _naive_placements(y, s1)
    v10_2, v01_2, a2 = _naive_placements(y, s2)
    m, n = int(y.sum()), int((1 - y).sum())
    expected = np.cov(np.vstack([v10_1, v10_2])) / m + np.cov(np.vstack([1 - v01_1, 1 - v01_2])) / n
    assert aucs == pytest.approx([a1, a2], abs=1e-12)
    assert cov == pytest.approx(expected, abs=1e-12)
    assert roc_auc(y, s1) == pytest.approx(roc_auc_score(y, s1), abs=1e-12)


def test_identical_models_give_z0_p1_like_proc(df):
    t = delong_test(df["y"], df["score_a"], df["score_a"] * 2 + 1)  # same ranking
    assert (t.z, t.p_value, t.diff) == (0.0, 1.0, 0.0)


def test_ci_clipped_to_unit_interval():
    y = np.array([0] * 5 + [1] * 5)
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.75, 0.7, 0.8, 0.9, 0.95, 0.99])  # one inversion: AUC 0.96
    r = auc_ci_delong(y, s)
    assert r.auc == pytest.approx(0.96)
    assert r.auc + 1.959963984540054 * np.sqrt(r.variance) > 1.0  # the raw interval pokes above 1 ...
    assert r.ci_upper == 1.0  # ... and is clipped, as pROC does
    assert 0.0 < r.ci_lower < r.auc


def test_pvalue_matrix_symmetric(df):
    mat = delong_pvalue_matrix(df["y"], {"a": df["score_a"], "b": df["score_b"], "c": df["prob"]})
    assert mat["a"]["a"] == 1.0
    assert (
        mat["a"]["b"]
        == mat["b"]["a"]
        == pytest.approx(delong_test(df["y"], df["score_a"], df["score_b"]).p_value)
    )
    # prob is a monotone transform of score_a: same AUC, identical ranking
    assert mat["a"]["c"] == 1.0


def test_to_dict_is_json_serialisable(df):
    r = auc_ci_delong(df["y"], df["score_a"])
    t = delong_test(df["y"], df["score_a"], df["score_b"])
    out = json.loads(json.dumps({"auc": r.to_dict(), "test": t.to_dict()}))
    assert out["auc"]["method"] == "delong" and out["test"]["p_value"] == pytest.approx(t.p_value)


def test_auc_below_half_is_not_flipped():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, [0.9, 0.8, 0.1, 0.2]) == 0.0
