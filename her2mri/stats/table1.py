"""Table 1: the characteristics of a cohort per group (split or cohort), with a test per variable type.

Plain pandas + scipy (the ``tableone`` package is not a dependency). Variable types:

- ``continuous`` (numeric with more than ``max_levels`` distinct values): ``median [Q1, Q3]`` and
  ``mean (SD)`` per group; test across groups: Kruskal-Wallis (Mann-Whitney U for two groups gives the same
  p-value up to the continuity correction; Kruskal-Wallis is used for any number of groups). Rank tests are
  the default because clinical variables (age, tumour size) are rarely normal in small cohorts.
- ``categorical`` (anything else, including 0/1): ``n (%)`` per level and group (percentages of the
  non-missing values); test: Fisher's exact test for a 2 x 2 table, else Pearson's chi-square (a note says
  when an expected count is below 5, where chi-square is unreliable).
- missing values: ``n missing`` per variable and group (never imputed, never in the percentages).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

__all__ = ["VARIABLE_TYPES", "infer_variable_type", "table_one"]

VARIABLE_TYPES: tuple[str, ...] = ("continuous", "categorical")


def infer_variable_type(values: pd.Series, max_levels: int = 5) -> str:
    """``continuous``: numeric with more than ``max_levels`` distinct values; else ``categorical``."""
    numeric = pd.to_numeric(values, errors="coerce")
    non_missing = values.notna() & (values.astype(str).str.strip() != "")
    if non_missing.any() and numeric[non_missing].notna().all() and numeric.nunique() > max_levels:
        return "continuous"
    return "categorical"


def _missing(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip().isin(["", "nan", "NaN", "NA"]))


def _continuous_rows(name: str, df: pd.DataFrame, group: str, groups: list[str]) -> list[dict[str, Any]]:
    values = pd.to_numeric(df[name], errors="coerce")
    per = {g: values[(df[group] == g).to_numpy()].dropna().to_numpy() for g in groups}
    p, test, note = None, "Kruskal-Wallis", ""
    samples = [v for v in per.values() if v.size > 0]
    if len(samples) >= 2 and all(v.size >= 1 for v in samples):
        try:
            p = float(sps.kruskal(*samples).pvalue)
        except ValueError as exc:  # all values identical
            note = str(exc)
    row_med: dict[str, Any] = {"variable": name, "level": "median [Q1, Q3]", "type": "continuous"}
    row_mean: dict[str, Any] = {"variable": name, "level": "mean (SD)", "type": "continuous"}
    for g, v in per.items():
        if v.size:
            q1, med, q3 = np.percentile(v, [25, 50, 75])
            row_med[g] = f"{med:.1f} [{q1:.1f}, {q3:.1f}]"
            row_mean[g] = f"{v.mean():.1f} ({v.std(ddof=1):.1f})" if v.size > 1 else f"{v.mean():.1f}"
        else:
            row_med[g] = row_mean[g] = "–"
    row_med.update({"statistical_test": test, "p_value": p, "note": note})
    row_mean.update({"statistical_test": "", "p_value": None, "note": ""})
    return [row_med, row_mean]


def _categorical_rows(name: str, df: pd.DataFrame, group: str, groups: list[str]) -> list[dict[str, Any]]:
    miss = _missing(df[name])
    sub = df.loc[~miss.to_numpy(), [group, name]].copy()
    sub[name] = sub[name].astype(str).str.strip()
    table = pd.crosstab(sub[name], sub[group]).reindex(columns=groups, fill_value=0)
    p, test, note = None, "", ""
    nonzero = table.loc[:, table.sum(axis=0) > 0]
    if nonzero.shape[0] >= 2 and nonzero.shape[1] >= 2:
        if nonzero.shape == (2, 2):
            test, p = "Fisher exact", float(sps.fisher_exact(nonzero.to_numpy()).pvalue)
        else:
            res = sps.chi2_contingency(nonzero.to_numpy(), correction=False)
            test, p = "chi-square", float(res.pvalue)
            if (res.expected_freq < 5).any():
                note = "expected count < 5 in some cells: chi-square approximate"
    rows = []
    totals = table.sum(axis=0)
    for i, level in enumerate(table.index):
        row: dict[str, Any] = {"variable": name, "level": str(level), "type": "categorical"}
        for g in groups:
            n = int(table.loc[level, g])
            row[g] = f"{n} ({100.0 * n / totals[g]:.1f}%)" if totals[g] else "0"
        row.update(
            {
                "statistical_test": test if i == 0 else "",
                "p_value": p if i == 0 else None,
                "note": note if i == 0 else "",
            }
        )
        rows.append(row)
    return rows


def table_one(
    df: pd.DataFrame,
    group: str,
    variables: Sequence[str] | None = None,
    types: dict[str, str] | None = None,
    max_levels: int = 5,
) -> pd.DataFrame:
    """Table 1 of ``df`` by ``group``: one block of rows per variable, a test per variable type.

    Args:
        df: one row per patient.
        group: the column holding the group (split or cohort) of each patient.
        variables: the columns to describe (default: every column except ``group`` and ``pid``).
        types: ``column -> "continuous" | "categorical"`` overriding :func:`infer_variable_type`.
        max_levels: numeric columns with at most this many distinct values are categorical.

    Returns:
        A DataFrame with columns ``variable, level, type, <group 1>, ..., <group k>, statistical_test,
        p_value, note``; the first row is ``N`` (patients per group) and every variable with missing values
        has an ``n missing`` row.

    Raises:
        ValueError: ``group`` or a variable is not a column, or an unknown type.
    """
    if group not in df.columns:
        raise ValueError(f"group={group!r} is not a column; columns: {list(df.columns)}.")
    variables = [c for c in df.columns if c not in (group, "pid")] if variables is None else list(variables)
    missing_cols = [v for v in variables if v not in df.columns]
    if missing_cols:
        raise ValueError(f"variables {missing_cols} are not columns; columns: {list(df.columns)}.")
    types = dict(types or {})
    bad = {k: v for k, v in types.items() if v not in VARIABLE_TYPES}
    if bad:
        raise ValueError(f"types {bad} must be one of {list(VARIABLE_TYPES)}.")
    df = df.copy()
    df[group] = df[group].astype(str)
    groups = sorted(df[group].unique().tolist())
    rows: list[dict[str, Any]] = [
        {"variable": "N", "level": "", "type": "", **{g: str(int((df[group] == g).sum())) for g in groups},
         "statistical_test": "", "p_value": None, "note": ""}
    ]  # fmt: skip
    for name in variables:
        kind = types.get(name) or infer_variable_type(df[name], max_levels)
        block = (_continuous_rows if kind == "continuous" else _categorical_rows)(name, df, group, groups)
        rows.extend(block)
        miss = _missing(df[name])
        if miss.any():
            row = {"variable": name, "level": "n missing", "type": kind}
            row.update({g: str(int((miss & (df[group] == g)).sum())) for g in groups})
            row.update({"statistical_test": "", "p_value": None, "note": ""})
            rows.append(row)
    return pd.DataFrame(
        rows, columns=["variable", "level", "type", *groups, "statistical_test", "p_value", "note"]
    )
