"""ROC curve points and the bootstrap confidence band of the ROC curve (for the report's ROC figure).

The band is a figure element, not one of the statistics of :mod:`her2mri.stats`; it uses the stratified
replicate indices of :func:`her2mri.stats.stratified_bootstrap_indices`, so it is seeded exactly like the
bootstrap CI of the AUC.
"""

from __future__ import annotations

import numpy as np

from her2mri import stats

__all__ = ["ROC_GRID", "roc_band", "roc_points"]

DEFAULT_N_BOOT = 2000
#: FPR grid of the ROC confidence band
ROC_GRID = np.linspace(0.0, 1.0, 101)


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical ROC curve: ``(fpr, tpr, thresholds)`` from (0, 0) to (1, 1), one point per distinct score.

    A patient is positive when ``score >= threshold`` (the convention of :mod:`her2mri.stats`); the first
    threshold is ``+inf`` (nobody positive).
    """
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    y = labels[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    n_pos, n_neg = int(labels.sum()), int(labels.size - labels.sum())
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, s[last]]


def _tpr_at(labels: np.ndarray, scores: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Highest TPR reached at FPR <= each grid value (the ROC step function)."""
    fpr, tpr, _ = roc_points(labels, scores)
    return tpr[np.searchsorted(fpr, grid, side="right") - 1]


def roc_band(
    labels: np.ndarray,
    scores: np.ndarray,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    conf_level: float = 0.95,
    grid: np.ndarray = ROC_GRID,
) -> dict[str, list[float]]:
    """Pointwise percentile bootstrap band of the TPR over a fixed FPR grid (the ROC confidence band).

    The replicates are the stratified ones of :func:`her2mri.stats.stratified_bootstrap_indices` with the
    same ``n_boot`` and ``seed`` as the AUC bootstrap CI. At each FPR of ``grid`` the TPR of each replicate is
    its step-function value (highest TPR with FPR <= grid value); the band is the ``(1 -/+ level) / 2``
    quantiles.

    Returns:
        ``{"fpr": grid, "tpr_low": [...], "tpr_high": [...]}``.
    """
    idx = stats.stratified_bootstrap_indices(labels, int(n_boot), int(seed))
    tprs = np.stack([_tpr_at(labels[i], scores[i], grid) for i in idx])
    lo, hi = np.quantile(tprs, [(1.0 - conf_level) / 2.0, (1.0 + conf_level) / 2.0], axis=0)
    return {"fpr": grid.tolist(), "tpr_low": lo.tolist(), "tpr_high": hi.tolist()}
