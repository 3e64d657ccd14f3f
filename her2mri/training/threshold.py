"""The locked decision threshold: chosen once on the validation patients, stored, reused unchanged.

Training chooses the threshold on the validation patients of each checkpoint's own weights (rule ``youden``,
the default, or ``sensitivity``: the highest threshold whose validation sensitivity reaches a target) and
stores it in the checkpoint's hyper-parameters (``locked_threshold``) and in ``metrics.json``.
``her2mri-eval``, ``her2mri-report`` and ``her2mri-predict`` apply it by default; only when none is stored do
they fall back to 0.5, with a warning. A case is positive when ``prob >= threshold`` (the one rule,
:func:`her2mri.stats.thresholds.called_positive`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from her2mri.options import check_choice
from her2mri.stats.thresholds import called_positive, youden_or_nan

log = logging.getLogger(__name__)

RULES: tuple[str, ...] = ("youden", "sensitivity")
FALLBACK_THRESHOLD = 0.5


@dataclass(frozen=True)
class LockedThreshold:
    """A threshold chosen on validation patients, with its provenance.

    Attributes:
        value: the threshold (``prob >= value`` is positive), or None when it could not be chosen (one class).
        rule: ``youden`` or ``sensitivity``.
        target_sensitivity: the target of rule ``sensitivity`` (None for ``youden``).
        n_val: validation patients it was chosen on; n_pos / n_neg: of which HER2-positive / negative.
        val_sensitivity / val_specificity: on those patients at ``value`` (None when undefined).
    """

    value: float | None
    rule: str
    target_sensitivity: float | None
    n_val: int
    n_pos: int
    n_neg: int
    val_sensitivity: float | None
    val_specificity: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LockedThreshold:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


def sensitivity_threshold(probs: Any, labels: Any, target: float) -> float:
    """The highest threshold at which ``prob >= threshold`` reaches sensitivity ``target`` on these patients.

    The value lies half-way between the last positive score that must be called positive and the next lower
    score (0 below the lowest), a midpoint like :func:`her2mri.stats.thresholds.youden_threshold`.

    Args:
        probs: predicted probabilities.
        labels: 0/1 labels.
        target: the sensitivity to reach, in (0, 1].

    Returns:
        The threshold in [0, 1], or NaN without positive patients.

    Raises:
        ValueError: ``target`` outside (0, 1].
    """
    if not 0.0 < float(target) <= 1.0:
        raise ValueError(f"target_sensitivity={target!r} must be in (0, 1].")
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    pos = np.sort(p[y == 1])[::-1]
    if pos.size == 0:
        return float("nan")
    k = math.ceil(float(target) * pos.size - 1e-12)  # positives that must score above the threshold
    cut = float(pos[k - 1])
    below = p[p < cut]
    lower = float(below.max()) if below.size else 0.0
    return (cut + lower) / 2.0


def choose_threshold(
    probs: Any, labels: Any, rule: str = "youden", target_sensitivity: float | None = 0.9
) -> LockedThreshold:
    """Choose the locked threshold on validation patients.

    Args:
        probs: validation patient probabilities.
        labels: their 0/1 labels (patients without a label, ``< 0``, are left out).
        rule: ``youden`` (maximise sensitivity + specificity - 1) or ``sensitivity``.
        target_sensitivity: for rule ``sensitivity``, in (0, 1].

    Returns:
        The :class:`LockedThreshold` (``value`` None when the rule is undefined, e.g. one class only).

    Raises:
        ValueError: unknown ``rule`` or a bad ``target_sensitivity``.
    """
    check_choice("threshold_rule", rule, RULES)
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    keep = y >= 0
    p, y = p[keep], y[keep]
    if rule == "youden":
        value = youden_or_nan(y, p)
        target = None
    else:
        if target_sensitivity is None:
            raise ValueError("threshold_rule='sensitivity' needs target_sensitivity (a number in (0, 1]).")
        target = float(target_sensitivity)
        value = sensitivity_threshold(p, y, target)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if not math.isfinite(value):
        return LockedThreshold(None, rule, target, int(y.size), n_pos, n_neg, None, None)
    called = called_positive(p, value)
    sens = float(called[y == 1].mean()) if n_pos else None
    spec = float((~called[y == 0]).mean()) if n_neg else None
    return LockedThreshold(float(value), rule, target, int(y.size), n_pos, n_neg, sens, spec)


def resolve_threshold(stored: Mapping[str, Any] | None, override: float | None = None) -> tuple[float, str]:
    """The threshold to apply and where it came from.

    Args:
        stored: the checkpoint's ``locked_threshold`` dict (or None).
        override: a threshold the user gave explicitly (wins), in [0, 1].

    Returns:
        ``(value, source)`` with source ``given``, ``locked (<rule> on <n> validation patients)`` or
        ``fallback_0.5`` (a warning is logged).

    Raises:
        ValueError: ``override`` outside [0, 1].
    """
    if override is not None:
        if not 0.0 <= float(override) <= 1.0:
            raise ValueError(f"threshold={override!r} must be in [0, 1] (or null for the locked one).")
        return float(override), "given"
    if stored and stored.get("value") is not None:
        rule = stored.get("rule", "youden")
        if rule == "sensitivity":
            rule = f"sensitivity >= {stored.get('target_sensitivity')}"
        return float(stored["value"]), f"locked ({rule} on {stored.get('n_val', '?')} validation patients)"
    log.warning(
        "no locked threshold is stored with this model (trained before thresholds were stored, or its "
        "validation split had one class): using the fixed fallback %s",
        FALLBACK_THRESHOLD,
    )
    return FALLBACK_THRESHOLD, f"fallback_{FALLBACK_THRESHOLD}"
