"""Binary classification metrics at slice and patient level (torchmetrics functional API).

Threshold rule: the one rule of her2mri, :func:`her2mri.stats.thresholds.called_positive`: a case is called
positive when its probability is ``>= threshold``. The default threshold is 0.5, which, with the default
class-balanced loss, corresponds to equal class priors. Because a fixed 0.5 on an imbalanced problem is a
common error, every run also reports the test metrics at the *validation* Youden threshold
(``stage/..._valthr`` keys, :func:`her2mri.stats.thresholds.youden_threshold`), chosen on validation patients
only and then applied unchanged to the test patients. AUROC is threshold-free.

Metrics that are undefined on the given data (AUROC or balanced accuracy with one class only, sensitivity
without positives, specificity without negatives) are NaN, never a silent 0 or 0.5.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_recall,
    binary_specificity,
)

from her2mri.stats.thresholds import called_positive

METRIC_NAMES: tuple[str, ...] = ("auroc", "accuracy", "sensitivity", "specificity", "balanced_accuracy")


def _as_tensors(
    probs: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor
) -> tuple[torch.Tensor, ...]:
    p = torch.as_tensor(np.asarray(probs, dtype=np.float64) if not torch.is_tensor(probs) else probs)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64) if not torch.is_tensor(labels) else labels)
    p = p.detach().to("cpu", torch.float64).reshape(-1)
    y = y.detach().to("cpu", torch.int64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"probs and labels must have one length; got {p.numel()} and {y.numel()}.")
    return p, y


def binary_metrics(
    probs: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    threshold: float = 0.5,
) -> dict[str, float]:
    """AUROC, accuracy, sensitivity, specificity and balanced accuracy.

    Args:
        probs: predicted positive-class probabilities.
        labels: true labels (0/1).
        threshold: a case is called positive when its probability is ``>= threshold``, in [0, 1].

    Returns:
        A dict with the keys of :data:`METRIC_NAMES`; undefined values are NaN; all NaN when empty.

    Raises:
        ValueError: ``threshold`` outside [0, 1] or lengths differ.

    Example:
        >>> m = binary_metrics(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        >>> round(m["auroc"], 2), m["sensitivity"], m["specificity"]
        (0.75, 0.5, 1.0)
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold={threshold!r} must be in [0, 1].")
    p, y = _as_tensors(probs, labels)
    nan = float("nan")
    if p.numel() == 0:
        return dict.fromkeys(METRIC_NAMES, nan)
    n_pos = int((y == 1).sum())
    n_neg = int((y == 0).sum())
    called = torch.from_numpy(called_positive(p.numpy(), threshold)).long()  # integer labels: no re-threshold
    out = {"accuracy": float(binary_accuracy(called, y))}
    out["sensitivity"] = float(binary_recall(called, y)) if n_pos else nan
    out["specificity"] = float(binary_specificity(called, y)) if n_neg else nan
    out["auroc"] = float(binary_auroc(p, y)) if n_pos and n_neg else nan
    both = n_pos and n_neg
    out["balanced_accuracy"] = (out["sensitivity"] + out["specificity"]) / 2 if both else nan
    return {k: out[k] for k in METRIC_NAMES}


def prefixed(metrics: dict[str, float], stage: str, level: str, suffix: str = "") -> dict[str, float]:
    """Rename ``{"auroc": x}`` to ``{"<stage>/auroc_<level><suffix>": x}`` (e.g. ``val/auroc_patient``)."""
    return {f"{stage}/{name}_{level}{suffix}": float(v) for name, v in metrics.items()}


def finite_or_none(value: float) -> float | None:
    """JSON-safe float: NaN and infinities become None."""
    value = float(value)
    return value if math.isfinite(value) else None
