"""Calibration of predicted probabilities: logistic recalibration, Brier score, binned calibration curve.

Definitions (as R ``rms::val.prob``):

- **intercept** and **slope**: one logistic fit ``logit P(y=1) = a + b * logit(p)``; perfect calibration is
  ``a = 0, b = 1``. ``b < 1`` means predictions too extreme (overfitting), ``b > 1`` too moderate.
  This is what val.prob prints as "Intercept" and "Slope".
- **calibration-in-the-large** (``citl``): the intercept of ``logit P(y=1) = a + 1 * logit(p)`` (slope fixed
  at 1 through an offset); ``a > 0`` means the predicted risks are too low on average. It is *not* the
  val.prob "Intercept"; both are reported.
- **Brier score**: ``mean((p - y)^2)`` on the unclipped probabilities.

Probabilities are clipped to ``[eps, 1 - eps]`` (default ``eps = 1e-6``, so ``|logit| <= 13.8``) before the
logit: a probability of exactly 0 or 1 (a saturated float32 sigmoid) would give an infinite logit. rms drops
such points instead ("observations deleted from logistic calibration"); with eps clipping they stay in the
fit and the result is unchanged whenever no probability is within ``eps`` of 0 or 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import logit

from her2mri.stats._logistic import fit_logistic
from her2mri.stats._validate import labels_and_scores

DEFAULT_EPS = 1e-6


@dataclass(frozen=True)
class CalibrationResult:
    """Calibration statistics of predicted probabilities.

    Attributes:
        intercept: ``a`` of ``logit P(y=1) = a + b logit(p)`` (rms val.prob "Intercept").
        slope: ``b`` of the same fit (rms val.prob "Slope").
        citl: calibration-in-the-large, intercept with the slope fixed at 1.
        brier: Brier score.
        n: number of patients.
        n_clipped: probabilities moved by the eps clipping.
        eps: clipping constant.
    """

    intercept: float
    slope: float
    citl: float
    brier: float
    n: int
    n_clipped: int
    eps: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON serialisable)."""
        return asdict(self)


@dataclass(frozen=True)
class CalibrationCurve:
    """Binned calibration curve (non-empty bins only).

    Attributes:
        mean_predicted: mean predicted probability per bin.
        observed: observed fraction of positives per bin.
        count: patients per bin.
        bin_edges: the ``n_bins + 1`` edges used (empty bins are dropped from the three arrays above).
        strategy: ``"quantile"`` or ``"uniform"``.
    """

    mean_predicted: np.ndarray
    observed: np.ndarray
    count: np.ndarray
    bin_edges: np.ndarray
    strategy: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict with lists (JSON serialisable)."""
        return {
            "mean_predicted": self.mean_predicted.tolist(),
            "observed": self.observed.tolist(),
            "count": self.count.tolist(),
            "bin_edges": self.bin_edges.tolist(),
            "strategy": self.strategy,
        }


def _check_eps(eps: float) -> float:
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5); got {eps!r}.")
    return float(eps)


def clipped_logit(p: np.ndarray, eps: float = DEFAULT_EPS) -> tuple[np.ndarray, int]:
    """``logit(clip(p, eps, 1 - eps))`` and the number of clipped values."""
    eps = _check_eps(eps)
    q = np.clip(p, eps, 1.0 - eps)
    return logit(q), int(np.sum(q != p))


def brier_score(y_true: Any, y_prob: Any) -> float:
    """Brier score ``mean((p - y)^2)`` (0 is perfect; 0.25 is a constant 0.5)."""
    y, p = labels_and_scores(y_true, y_prob, score_name="y_prob", probabilities=True, need_both_classes=False)
    return float(np.mean((p - y) ** 2))


def calibration_stats(y_true: Any, y_prob: Any, eps: float = DEFAULT_EPS) -> CalibrationResult:
    """Logistic recalibration intercept and slope, calibration-in-the-large and Brier score.

    Args:
        y_true: labels (0/1), both classes present.
        y_prob: predicted probabilities in [0, 1], not constant.
        eps: probabilities are clipped to ``[eps, 1 - eps]`` before the logit.

    Returns:
        A :class:`CalibrationResult`.

    Raises:
        ValueError: bad inputs, or the recalibration fit does not converge (perfect separation).
    """
    y, p = labels_and_scores(y_true, y_prob, score_name="y_prob", probabilities=True, need_variance=True)
    lp, n_clipped = clipped_logit(p, eps)
    yf = y.astype(np.float64)
    ones = np.ones((y.size, 1))
    a, b = fit_logistic(np.column_stack([ones, lp]), yf, start=np.array([0.0, 1.0]))
    (citl,) = fit_logistic(ones, yf, offset=lp)
    return CalibrationResult(
        intercept=float(a),
        slope=float(b),
        citl=float(citl),
        brier=float(np.mean((p - yf) ** 2)),
        n=int(y.size),
        n_clipped=n_clipped,
        eps=float(eps),
    )


def calibration_curve(
    y_true: Any, y_prob: Any, n_bins: int = 10, strategy: str = "quantile"
) -> CalibrationCurve:
    """Binned calibration curve: observed fraction of positives vs mean predicted probability.

    Args:
        y_true: labels (0/1).
        y_prob: predicted probabilities in [0, 1].
        n_bins: number of bins (>= 2).
        strategy: ``"quantile"`` (equal-count bins, edges at the quantiles of ``y_prob``; default, because
            predicted risks are rarely uniform and equal-width bins leave many bins nearly empty) or
            ``"uniform"`` (equal-width bins on [0, 1]).

    Returns:
        A :class:`CalibrationCurve`. Bins are right-closed, the first also left-closed (as R ``cut`` with
        ``include.lowest = TRUE``); tied quantile edges are merged.
    """
    if strategy not in ("quantile", "uniform"):
        raise ValueError(f"strategy must be 'quantile' or 'uniform'; got {strategy!r}.")
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2; got {n_bins!r}.")
    y, p = labels_and_scores(y_true, y_prob, score_name="y_prob", probabilities=True, need_both_classes=False)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, int(n_bins) + 1)))
    else:
        edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    idx = np.clip(np.searchsorted(edges, p, side="left") - 1, 0, max(edges.size - 2, 0))
    nb = max(edges.size - 1, 1)
    count = np.bincount(idx, minlength=nb)
    sum_p = np.bincount(idx, weights=p, minlength=nb)
    sum_y = np.bincount(idx, weights=y.astype(np.float64), minlength=nb)
    keep = count > 0
    return CalibrationCurve(
        mean_predicted=sum_p[keep] / count[keep],
        observed=sum_y[keep] / count[keep],
        count=count[keep],
        bin_edges=edges,
        strategy=strategy,
    )


def expected_calibration_error(
    y_true: Any, y_prob: Any, n_bins: int = 10, strategy: str = "uniform"
) -> float:
    """Expected calibration error: ``sum_b (n_b / n) * |mean predicted_b - observed_b|``.

    The bins are those of :func:`calibration_curve` (default: ``n_bins`` equal-width bins on [0, 1], the usual
    ECE of Guo et al. 2017). 0 is perfect; it depends on the binning, so compare values with the same bins.

    Args:
        y_true: labels (0/1).
        y_prob: predicted probabilities in [0, 1].
        n_bins: number of bins (>= 2).
        strategy: ``"uniform"`` (default) or ``"quantile"``.

    Returns:
        The ECE in [0, 1].
    """
    curve = calibration_curve(y_true, y_prob, n_bins=n_bins, strategy=strategy)
    weights = curve.count / curve.count.sum()
    return float(np.sum(weights * np.abs(curve.mean_predicted - curve.observed)))
