"""Table 1 (a test per variable type), subgroup AUC/sens/spec with CIs, site-shortcut probe (issue 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from her2mri.stats import auc_ci_delong, wilson_ci
from her2mri.stats.subgroups import age_bands, site_probe, subgroup_table
from her2mri.stats.table1 import infer_variable_type, table_one


def _cohort() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 80
    return pd.DataFrame(
        {
            "pid": [f"P{i}" for i in range(n)],
            "split": ["train"] * 50 + ["test"] * 30,
            "age": np.round(rng.normal(50, 10, n), 0),
            "HR": rng.choice(["pos", "neg"], n),
            "grade": rng.choice(["1", "2", "3"], n),
        }
    )


def test_variable_types():
    df = _cohort()
    assert infer_variable_type(df["age"]) == "continuous"
    assert infer_variable_type(df["HR"]) == "categorical"
    assert infer_variable_type(pd.Series([0, 1, 1, 0, 1, 0, 1])) == "categorical"  # 0/1 numeric


def test_continuous_row_uses_kruskal_wallis_and_median_iqr():
    df = _cohort()
    t = table_one(df, "split", ["age"])
    assert t.iloc[0]["variable"] == "N" and t.iloc[0]["train"] == "50" and t.iloc[0]["test"] == "30"
    med = t[(t.variable == "age") & (t.level == "median [Q1, Q3]")].iloc[0]
    a_tr = df.loc[df.split == "train", "age"]
    assert med["p_value"] == pytest.approx(sps.kruskal(a_tr, df.loc[df.split == "test", "age"]).pvalue)
    q1, m, q3 = np.percentile(a_tr, [25, 50, 75])
    assert med["train"] == f"{m:.1f} [{q1:.1f}, {q3:.1f}]" and med["test"].startswith(
        ("", "1", "2", "3", "4", "5", "6")
    )
    mean = t[(t.variable == "age") & (t.level == "mean (SD)")].iloc[0]
    assert mean["train"] == f"{a_tr.mean():.1f} ({a_tr.std(ddof=1):.1f})"


def test_categorical_rows_fisher_for_2x2_chi_square_otherwise_and_missing():
    df = _cohort()
    df.loc[[0, 1, 60], "HR"] = np.nan
    t = table_one(df, "split", ["HR", "grade"])
    hr = t[t.variable == "HR"]
    sub = df.dropna(subset=["HR"])
    table = pd.crosstab(sub["HR"], sub["split"])[["test", "train"]]
    assert hr.iloc[0]["statistical_test"] == "Fisher exact"
    assert hr.iloc[0]["p_value"] == pytest.approx(sps.fisher_exact(table.to_numpy()).pvalue)
    n_neg_train = int(((sub.HR == "neg") & (sub.split == "train")).sum())
    assert hr[hr.level == "neg"].iloc[0]["train"] == f"{n_neg_train} ({100 * n_neg_train / 48:.1f}%)"
    assert hr[hr.level == "n missing"].iloc[0][["train", "test"]].tolist() == ["2", "1"]
    grade = t[t.variable == "grade"].iloc[0]
    g_tab = pd.crosstab(df["grade"], df["split"])[["test", "train"]].to_numpy()
    assert grade["statistical_test"] == "chi-square"
    assert grade["p_value"] == pytest.approx(sps.chi2_contingency(g_tab, correction=False).pvalue)
    with pytest.raises(ValueError, match="group='site'"):
        table_one(df, "site")
    with pytest.raises(ValueError, match="types"):
        table_one(df, "split", ["age"], types={"age": "ordinal"})


def test_age_bands():
    assert age_bands([30, 49.5, 50, 71, None, "x"]) == ["<50", "<50", ">=50", ">=50", None, None]
    assert age_bands([39, 40, 55, 60, 80], (40, 50, 60)) == ["<40", "40-49", "50-59", ">=60", ">=60"]
    with pytest.raises(ValueError, match="increasing"):
        age_bands([1], (60, 50))


def test_subgroup_table_equals_per_group_statistics():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120)
    p = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, 120), 0, 1)
    g = ["A"] * 60 + ["B"] * 55 + [None] * 5
    rows = subgroup_table(y, p, g, 0.5, "site")
    a = next(r for r in rows if r["level"] == "A")
    ref = auc_ci_delong(y[:60], p[:60])
    assert (a["auroc"], a["auroc_ci_low"], a["auroc_ci_high"]) == pytest.approx(
        (ref.auc, ref.ci_lower, ref.ci_upper)
    )
    tp = int(((p[:60] >= 0.5) & (y[:60] == 1)).sum())
    w = wilson_ci(tp, int(y[:60].sum()))
    assert (a["sensitivity_ci_low"], a["sensitivity_ci_high"]) == pytest.approx((w.lower, w.upper))
    assert [r["level"] for r in rows] == ["(missing)", "A", "B"] and rows[0]["n"] == 5


def test_site_probe_flags_a_model_that_learned_the_site():
    rng = np.random.default_rng(2)
    n = 200
    site = np.array(["S1"] * 100 + ["S2"] * 100)
    y = rng.integers(0, 2, n)  # same prevalence at both sites: the label does not predict the site
    honest = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.15, n), 0.01, 0.99)
    shortcut = np.clip(honest + np.where(site == "S2", 0.3, -0.3), 0.01, 0.99)
    h = site_probe(site, honest, y)
    s = site_probe(site, shortcut, y)
    assert h["auc_outputs"] < 0.65 and not h["warn"]
    assert s["auc_outputs"] > 0.9 and s["warn"]
    assert h["auc_label_only"] < 0.65
    one = site_probe(["S1"] * 10, honest[:10], y[:10])
    assert one["auc_outputs"] is None and "fewer than two sites" in one["notes"][0]
