"""The threshold rule of her2mri, threshold choice (validation Youden or fixed) and metrics with Wilson CIs.

Threshold rule (the one rule of her2mri, used by the training metrics, the locked threshold, evaluation and
the report): a case is called **positive when ``score >= threshold``** (:func:`called_positive`).

Youden threshold (as pROC ``coords(roc, "best", best.method = "youden")``): the candidate thresholds are
the midpoints between consecutive distinct validation scores; the chosen one maximises
``J = sensitivity + specificity - 1`` on the *validation* set; ties in J go to the highest threshold (the
most specific). It is then applied unchanged to the test set, so test metrics are not optimistically biased
by choosing the threshold on the test data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from her2mri.stats._validate import check_level, labels_and_scores
from her2mri.stats.proportions import ProportionCI, finite_or_none, mover_mean_ci, wilson_ci


@dataclass(frozen=True)
class ThresholdMetrics:
    """Confusion matrix and derived metrics at one threshold.

    Attributes:
        threshold: the threshold applied (``score >= threshold`` is positive).
        threshold_source: ``"fixed"`` or ``"youden_val"`` (chosen on validation).
        tp, fp, tn, fn: confusion-matrix counts.
        sensitivity: TP / (TP + FN), Wilson CI.
        specificity: TN / (TN + FP), Wilson CI.
        ppv: TP / (TP + FP), Wilson CI (NaN without predicted positives).
        npv: TN / (TN + FN), Wilson CI (NaN without predicted negatives).
        accuracy: (TP + TN) / n, Wilson CI.
        balanced_accuracy: (sensitivity + specificity) / 2, MOVER-Wilson CI (``method="mover-wilson"``).
    """

    threshold: float
    threshold_source: str
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: ProportionCI
    specificity: ProportionCI
    ppv: ProportionCI
    npv: ProportionCI
    accuracy: ProportionCI
    balanced_accuracy: ProportionCI

    @property
    def confusion_matrix(self) -> np.ndarray:
        """``[[TN, FP], [FN, TP]]`` (rows: true 0/1, columns: predicted 0/1, as scikit-learn)."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]])

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON serialisable; undefined values are ``None``)."""
        out: dict[str, Any] = {
            "threshold": finite_or_none(float(self.threshold)),
            "threshold_source": self.threshold_source,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
        }
        for name in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "balanced_accuracy"):
            out[name] = getattr(self, name).to_dict()
        return out


def called_positive(scores: Any, threshold: float) -> np.ndarray:
    """The threshold rule: ``scores >= threshold`` (boolean array of the shape of ``scores``)."""
    return np.asarray(scores, dtype=np.float64) >= float(threshold)


def youden_or_nan(y_val: Any, score_val: Any) -> float:
    """:func:`youden_threshold`, or NaN where it is undefined (one class, constant scores, no case)."""
    try:
        return youden_threshold(y_val, score_val)
    except ValueError:
        return float("nan")


def youden_threshold(y_val: Any, score_val: Any) -> float:
    """Threshold maximising Youden's J on validation data (pROC midpoint convention).

    Args:
        y_val: validation labels (0/1), both classes present.
        score_val: validation scores (not constant).

    Returns:
        The threshold (a midpoint between two observed scores); ``score >= threshold`` is positive.
    """
    y, s = labels_and_scores(y_val, score_val, score_name="score_val", need_variance=True)
    u = np.unique(s)
    cand = (u[:-1] + u[1:]) / 2.0
    pos = np.sort(s[y == 1])
    neg = np.sort(s[y == 0])
    sens = (pos.size - np.searchsorted(pos, cand, side="left")) / pos.size
    spec = np.searchsorted(neg, cand, side="left") / neg.size
    j = sens + spec - 1.0
    best = np.flatnonzero(j == j.max())
    return float(cand[best].max())


def metrics_at_threshold(
    y_true: Any, y_score: Any, threshold: float, conf_level: float = 0.95, threshold_source: str = "fixed"
) -> ThresholdMetrics:
    """Confusion matrix, sensitivity, specificity, PPV, NPV, accuracy, balanced accuracy with CIs.

    One class only is allowed here: the metrics that need the missing class are NaN.

    Args:
        y_true: labels (0/1).
        y_score: scores or probabilities.
        threshold: finite threshold; ``score >= threshold`` is positive.
        conf_level: confidence level of the Wilson intervals.
        threshold_source: label stored in the result (``"fixed"`` or ``"youden_val"``).

    Returns:
        A :class:`ThresholdMetrics`.
    """
    level = check_level(conf_level)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite; got {threshold!r}.")
    y, s = labels_and_scores(y_true, y_score, need_both_classes=False)
    pred = called_positive(s, threshold)
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    sens = wilson_ci(tp, tp + fn, level)
    spec = wilson_ci(tn, tn + fp, level)
    est, lo, hi = mover_mean_ci(sens, spec)
    bacc = ProportionCI(est, lo, hi, None, None, level, method="mover-wilson")
    return ThresholdMetrics(
        threshold=float(threshold),
        threshold_source=threshold_source,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        sensitivity=sens,
        specificity=spec,
        ppv=wilson_ci(tp, tp + fp, level),
        npv=wilson_ci(tn, tn + fn, level),
        accuracy=wilson_ci(tp + tn, y.size, level),
        balanced_accuracy=bacc,
    )


def metrics_at_youden(
    y_val: Any, score_val: Any, y_test: Any, score_test: Any, conf_level: float = 0.95
) -> ThresholdMetrics:
    """Choose the Youden threshold on validation data and report the test metrics at it.

    Args:
        y_val: validation labels (0/1), both classes present.
        score_val: validation scores (not constant).
        y_test: test labels (0/1).
        score_test: test scores.
        conf_level: confidence level of the Wilson intervals.

    Returns:
        A :class:`ThresholdMetrics` on the test set with ``threshold_source="youden_val"``.
    """
    thr = youden_threshold(y_val, score_val)
    return metrics_at_threshold(y_test, score_test, thr, conf_level, threshold_source="youden_val")
