"""ROC AUC with DeLong variance: confidence interval and paired test (fast DeLong of Sun & Xu).

Conventions (those of R pROC with ``direction = "<"``): label 1 is the positive class (case) and a *higher*
score means *more likely positive*; ties between a case and a control count 1/2. No automatic direction
flip: an AUC below 0.5 is reported as such.

References:
    DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845.
    Sun & Xu (2014), IEEE Signal Processing Letters 21(11):1389-1393 (midrank algorithm, O(n log n)).
    Robin et al. (2011), BMC Bioinformatics 12:77 (pROC; ``ci.auc(method="delong")`` and
    ``roc.test(method="delong", paired=TRUE)`` are reproduced here to 1e-6, see tests/test_stats_auc.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata

from her2mri.stats._validate import (
    as_labels,
    as_scores,
    check_both_classes,
    check_level,
    check_not_constant,
    check_same_length,
    labels_and_scores,
)


@dataclass(frozen=True)
class AUCResult:
    """An AUC with its confidence interval.

    Attributes:
        auc: area under the ROC curve (Mann-Whitney estimate, ties count 1/2).
        ci_lower: lower confidence bound.
        ci_upper: upper confidence bound.
        conf_level: confidence level, e.g. 0.95.
        method: ``"delong"`` or ``"bootstrap"``.
        n_pos: number of positives (cases).
        n_neg: number of negatives (controls).
        variance: DeLong variance of the AUC (``None`` for bootstrap).
        n_boot: bootstrap replicates (``None`` for DeLong).
        seed: bootstrap seed (``None`` for DeLong).
    """

    auc: float
    ci_lower: float
    ci_upper: float
    conf_level: float
    method: str
    n_pos: int
    n_neg: int
    variance: float | None = None
    n_boot: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON serialisable)."""
        return asdict(self)


@dataclass(frozen=True)
class DeLongTestResult:
    """Paired DeLong test of two AUCs measured on the same patients.

    Attributes:
        auc1: AUC of the first model.
        auc2: AUC of the second model.
        diff: ``auc1 - auc2``.
        diff_ci_lower: lower bound of the CI of the difference (normal approximation, not clipped).
        diff_ci_upper: upper bound of the CI of the difference.
        z: ``diff / sd(diff)``; 0 when both the difference and its SD are 0 (identical models).
        p_value: two-sided p-value, ``2 * Phi(-|z|)``.
        conf_level: confidence level of the difference CI.
        n_pos: number of positives.
        n_neg: number of negatives.
    """

    auc1: float
    auc2: float
    diff: float
    diff_ci_lower: float
    diff_ci_upper: float
    z: float
    p_value: float
    conf_level: float
    n_pos: int
    n_neg: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON serialisable)."""
        return asdict(self)


def delong_placements(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong placement values of ``k`` models by midranks (Sun & Xu 2014).

    Inputs are assumed validated (labels 0/1 with both classes; finite scores).

    Args:
        y: labels, shape ``(n,)``.
        scores: scores, shape ``(k, n)``.

    Returns:
        ``(auc (k,), v10 (k, m), v01 (k, n0))``: for each case the fraction of controls it outranks
        (``v10``), for each control the fraction of cases that outrank it (``v01``); ties count 1/2.
    """
    pos = scores[:, y == 1]
    neg = scores[:, y == 0]
    m, n0 = pos.shape[1], neg.shape[1]
    tz = rankdata(np.concatenate([pos, neg], axis=1), method="average", axis=1)
    tx = rankdata(pos, method="average", axis=1)
    ty = rankdata(neg, method="average", axis=1)
    v10 = (tz[:, :m] - tx) / n0
    v01 = 1.0 - (tz[:, m:] - ty) / m
    auc = v10.mean(axis=1)
    return auc, v10, v01


def delong_covariance(y_true: Any, *y_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for one or more models scored on the same patients.

    Args:
        y_true: binary labels (0/1), both classes present.
        *y_scores: one score array per model, each as long as ``y_true``.

    Returns:
        ``(aucs (k,), covariance (k, k))`` with ``S = S10 / m + S01 / n`` as in DeLong et al. and pROC.
    """
    if not y_scores:
        raise ValueError("delong_covariance needs at least one score array; got none.")
    y = as_labels(y_true)
    check_both_classes(y)
    cols = []
    for i, s in enumerate(y_scores):
        arr = as_scores(s, f"y_scores[{i}]")
        check_same_length(y_true=y, **{f"y_scores[{i}]": arr})
        cols.append(arr)
    auc, v10, v01 = delong_placements(y, np.vstack(cols))
    m, n0 = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10, ddof=1)) if m > 1 else np.zeros((len(cols), len(cols)))
    s01 = np.atleast_2d(np.cov(v01, ddof=1)) if n0 > 1 else np.zeros((len(cols), len(cols)))
    return auc, s10 / m + s01 / n0


def roc_auc(y_true: Any, y_score: Any) -> float:
    """ROC AUC (Mann-Whitney, ties count 1/2; higher score = positive).

    Args:
        y_true: binary labels (0/1), both classes present.
        y_score: scores or probabilities.

    Returns:
        The AUC in [0, 1].
    """
    y, s = labels_and_scores(y_true, y_score)
    auc, _, _ = delong_placements(y, s[None, :])
    return float(auc[0])


def auc_ci_delong(y_true: Any, y_score: Any, conf_level: float = 0.95) -> AUCResult:
    """AUC with the DeLong confidence interval, as pROC ``ci.auc(method = "delong")``.

    The interval is ``AUC -/+ z_{(1+level)/2} * sqrt(var_DeLong)`` on the AUC scale, clipped to [0, 1]
    (pROC clips the same way). At least two cases and two controls are needed.

    Args:
        y_true: binary labels (0/1), both classes present.
        y_score: scores or probabilities (not constant).
        conf_level: confidence level in (0, 1).

    Returns:
        An :class:`AUCResult` with ``method="delong"`` and the variance.

    Example:
        >>> r = auc_ci_delong([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
        >>> round(r.auc, 3)
        0.889
    """
    level = check_level(conf_level)
    y, s = labels_and_scores(y_true, y_score, need_variance=True)
    m, n0 = int(y.sum()), int(y.size - y.sum())
    if m < 2 or n0 < 2:
        raise ValueError(f"y_true needs >= 2 positives and >= 2 negatives for a DeLong CI; got {m} and {n0}.")
    auc, cov = delong_covariance(y, s)
    var = float(max(cov[0, 0], 0.0))
    half = float(norm.ppf(0.5 + level / 2.0)) * math.sqrt(var)
    a = float(auc[0])
    return AUCResult(
        auc=a,
        ci_lower=float(min(max(a - half, 0.0), 1.0)),
        ci_upper=float(min(max(a + half, 0.0), 1.0)),
        conf_level=level,
        method="delong",
        n_pos=m,
        n_neg=n0,
        variance=var,
    )


def delong_test(y_true: Any, y_score1: Any, y_score2: Any, conf_level: float = 0.95) -> DeLongTestResult:
    """Paired DeLong test of two models on the same patients, as pROC ``roc.test(method="delong")``.

    ``z = (AUC1 - AUC2) / sqrt(var1 + var2 - 2 cov12)``, two-sided ``p = 2 * Phi(-|z|)``; the CI of the
    difference is ``diff -/+ z_{(1+level)/2} * sd`` (not clipped). When the two models rank every pair
    identically (difference and SD both 0) ``z = 0`` and ``p = 1``, as in pROC.

    Args:
        y_true: binary labels (0/1), both classes present, >= 2 of each.
        y_score1: scores of model 1 (not constant).
        y_score2: scores of model 2 (not constant), same patients in the same order.
        conf_level: confidence level of the difference CI.

    Returns:
        A :class:`DeLongTestResult`.
    """
    level = check_level(conf_level)
    y, s1 = labels_and_scores(y_true, y_score1, score_name="y_score1", need_variance=True)
    s2 = as_scores(y_score2, "y_score2")
    check_same_length(y_true=y, y_score2=s2)
    check_not_constant(s2, "y_score2")
    m, n0 = int(y.sum()), int(y.size - y.sum())
    if m < 2 or n0 < 2:
        raise ValueError(
            f"y_true needs >= 2 positives and >= 2 negatives for a DeLong test; got {m} and {n0}."
        )
    auc, cov = delong_covariance(y, s1, s2)
    diff = float(auc[0] - auc[1])
    sd = math.sqrt(max(float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]), 0.0))
    if sd == 0.0:
        if diff != 0.0:  # cannot happen with finite data; guard against a silent inf
            raise ValueError(f"DeLong variance of the AUC difference is 0 but the difference is {diff}.")
        z, p = 0.0, 1.0
    else:
        z = diff / sd
        p = float(2.0 * norm.sf(abs(z)))
    half = float(norm.ppf(0.5 + level / 2.0)) * sd
    return DeLongTestResult(
        auc1=float(auc[0]),
        auc2=float(auc[1]),
        diff=diff,
        diff_ci_lower=diff - half,
        diff_ci_upper=diff + half,
        z=float(z),
        p_value=p,
        conf_level=level,
        n_pos=m,
        n_neg=n0,
    )


def delong_pvalue_matrix(y_true: Any, scores: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Paired DeLong p-values between every pair of models (for a report's p-value matrix).

    Args:
        y_true: binary labels shared by all models.
        scores: model name -> scores on the same patients in the same order.

    Returns:
        Nested dict ``p[name_i][name_j]``; the diagonal is 1.0.
    """
    if len(scores) < 2:
        raise ValueError(f"scores needs at least two models; got {list(scores)}.")
    names = list(scores)
    out: dict[str, dict[str, float]] = {a: {} for a in names}
    for i, a in enumerate(names):
        out[a][a] = 1.0
        for b in names[i + 1 :]:
            p = delong_test(y_true, scores[a], scores[b]).p_value
            out[a][b] = out[b][a] = p
    return out


@dataclass(frozen=True)
class UnpairedDeLongResult:
    """DeLong test of two AUCs on *different* patients (e.g. an internal test set and an external site).

    Attributes:
        auc1: AUC of the first ROC curve.
        auc2: AUC of the second ROC curve.
        diff: ``auc1 - auc2``.
        diff_ci_lower: lower bound of the CI of the difference (``diff -/+ t_{df} * sd``).
        diff_ci_upper: upper bound.
        statistic: pROC's ``D = diff / sqrt(var1 + var2)`` (DeLong variances of each curve).
        df: Welch-Satterthwaite degrees of freedom, as pROC.
        p_value: two-sided p-value ``2 * P(T_df > |D|)``.
        conf_level: confidence level of the difference CI.
        var1: DeLong variance of ``auc1``.
        var2: DeLong variance of ``auc2``.
        n1: patients of curve 1.
        n2: patients of curve 2.
    """

    auc1: float
    auc2: float
    diff: float
    diff_ci_lower: float
    diff_ci_upper: float
    statistic: float
    df: float
    p_value: float
    conf_level: float
    var1: float
    var2: float
    n1: int
    n2: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON serialisable)."""
        return asdict(self)


def delong_test_unpaired(
    y_true1: Any, y_score1: Any, y_true2: Any, y_score2: Any, conf_level: float = 0.95
) -> UnpairedDeLongResult:
    """Unpaired DeLong test of two ROC curves on disjoint patients, as pROC ``roc.test(paired = FALSE)``.

    pROC (``delong.unpaired.test``) computes ``D = (AUC1 - AUC2) / sqrt(V1 + V2)`` with each ``V`` the DeLong
    variance of one curve, and ``df = (V1 + V2)^2 / (V1^2 / (N1 - 1) + V2^2 / (N2 - 1))`` with ``N`` the
    number of patients of a curve; the p-value is from Student's t with ``df`` degrees of freedom. The CI
    of the difference (not given by pROC for unpaired curves) uses the same ``t_df`` quantile.

    Args:
        y_true1: labels of cohort 1 (both classes, >= 2 of each).
        y_score1: scores of cohort 1.
        y_true2: labels of cohort 2 (both classes, >= 2 of each).
        y_score2: scores of cohort 2.
        conf_level: confidence level of the difference CI.

    Returns:
        An :class:`UnpairedDeLongResult`.
    """
    from scipy.stats import t as student_t

    level = check_level(conf_level)
    r1 = auc_ci_delong(y_true1, y_score1, level)
    r2 = auc_ci_delong(y_true2, y_score2, level)
    v1, v2 = float(r1.variance or 0.0), float(r2.variance or 0.0)
    n1, n2 = r1.n_pos + r1.n_neg, r2.n_pos + r2.n_neg
    diff = r1.auc - r2.auc
    var = v1 + v2
    if var <= 0.0:
        raise ValueError(
            f"the DeLong variances of both curves are 0 (AUCs {r1.auc} and {r2.auc}): "
            "no unpaired test possible."
        )
    sd = math.sqrt(var)
    stat = diff / sd
    df = var**2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    p = float(2.0 * student_t.sf(abs(stat), df))
    half = float(student_t.ppf(0.5 + level / 2.0, df)) * sd
    return UnpairedDeLongResult(
        auc1=r1.auc,
        auc2=r2.auc,
        diff=diff,
        diff_ci_lower=diff - half,
        diff_ci_upper=diff + half,
        statistic=float(stat),
        df=float(df),
        p_value=p,
        conf_level=level,
        var1=v1,
        var2=v2,
        n1=n1,
        n2=n2,
    )
