"""Seeded, stratified percentile bootstrap (AUC and any other statistic).

Stratified: every replicate resamples the positives among the positives and the negatives among the
negatives (with replacement), so each replicate keeps the observed class counts and the AUC is always
defined; this is pROC's default (``boot.stratified = TRUE``). The interval is the percentile interval:
the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the replicates (linear interpolation, R type 7).
Replicates come from ``numpy.random.default_rng(seed)``: the same seed gives the same interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import rankdata

from her2mri.stats._validate import check_level, labels_and_scores
from her2mri.stats.auc import AUCResult, roc_auc

# replicates are ranked in blocks of at most this many elements (bounds memory for large cohorts)
_BLOCK_ELEMENTS = 4_000_000


def _check_n_boot(n_boot: int) -> int:
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or int(n_boot) < 10:
        raise ValueError(f"n_boot must be an integer >= 10; got {n_boot!r}.")
    return int(n_boot)


def stratified_bootstrap_indices(y: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Indices of ``n_boot`` stratified bootstrap replicates.

    Args:
        y: validated 0/1 labels, shape ``(n,)``.
        n_boot: number of replicates.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``int64`` array ``(n_boot, n)``: the first ``n_pos`` columns index positives, the rest negatives.
    """
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y == 0)
    ip = pos[rng.integers(0, pos.size, size=(n_boot, pos.size))]
    ineg = neg[rng.integers(0, neg.size, size=(n_boot, neg.size))]
    return np.concatenate([ip, ineg], axis=1)


def _boot_aucs(y: np.ndarray, s: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    idx = stratified_bootstrap_indices(y, n_boot, seed)
    m, n0 = int(y.sum()), int(y.size - y.sum())
    out = np.empty(n_boot)
    block = max(1, _BLOCK_ELEMENTS // y.size)
    for start in range(0, n_boot, block):
        ranks = rankdata(s[idx[start : start + block]], method="average", axis=1)
        out[start : start + block] = (ranks[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n0)
    return out


def _percentile_ci(values: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(values, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def auc_ci_bootstrap(
    y_true: Any, y_score: Any, n_boot: int = 2000, conf_level: float = 0.95, seed: int = 0
) -> AUCResult:
    """AUC with a stratified percentile bootstrap confidence interval.

    Args:
        y_true: binary labels (0/1), both classes present.
        y_score: scores or probabilities.
        n_boot: number of replicates (>= 10; default 2000 as pROC: enough for stable 2.5/97.5 percentiles).
        conf_level: confidence level in (0, 1).
        seed: seed of the replicate generator (default 0, so reports are reproducible).

    Returns:
        An :class:`~her2mri.stats.auc.AUCResult` with ``method="bootstrap"``; ``auc`` is the full-sample AUC.
    """
    level = check_level(conf_level)
    n_boot = _check_n_boot(n_boot)
    y, s = labels_and_scores(y_true, y_score)
    aucs = _boot_aucs(y, s, n_boot, int(seed))
    lo, hi = _percentile_ci(aucs, level)
    return AUCResult(
        auc=roc_auc(y, s),
        ci_lower=lo,
        ci_upper=hi,
        conf_level=level,
        method="bootstrap",
        n_pos=int(y.sum()),
        n_neg=int(y.size - y.sum()),
        n_boot=n_boot,
        seed=int(seed),
    )


def bootstrap_ci(
    y_true: Any,
    y_score: Any,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 2000,
    conf_level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Stratified percentile bootstrap CI of any statistic ``statistic(y, score) -> float``.

    Replicates where the statistic is NaN (undefined) are dropped; if more than half are, a
    ``ValueError`` is raised.

    Args:
        y_true: binary labels (0/1), both classes present.
        y_score: scores or probabilities.
        statistic: function of (labels, scores) returning a float.
        n_boot: number of replicates (>= 10).
        conf_level: confidence level in (0, 1).
        seed: seed of the replicate generator.

    Returns:
        ``(estimate on the full sample, lower, upper)``.
    """
    level = check_level(conf_level)
    n_boot = _check_n_boot(n_boot)
    y, s = labels_and_scores(y_true, y_score)
    idx = stratified_bootstrap_indices(y, n_boot, int(seed))
    values = np.array([float(statistic(y[i], s[i])) for i in idx])
    ok = np.isfinite(values)
    if ok.sum() < n_boot / 2:
        raise ValueError(f"statistic was undefined (NaN/inf) in {int((~ok).sum())} of {n_boot} replicates.")
    lo, hi = _percentile_ci(values[ok], level)
    return float(statistic(y, s)), lo, hi
