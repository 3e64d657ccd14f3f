"""Patient-level metrics with confidence intervals, flat and JSON-safe (``metrics.json`` and the report).

One call gives the AUC with its DeLong and bootstrap CIs, the threshold (Youden on validation predictions, a
fixed value, or the 0.5 fallback), sensitivity/specificity/PPV/NPV/accuracy/balanced accuracy with Wilson CIs,
Brier score, calibration and Hosmer-Lemeshow. Nothing here re-implements a statistic: everything comes from
the other modules of :mod:`her2mri.stats`; this module only chooses the threshold, collects the results and
makes them JSON-safe.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from her2mri.stats._validate import as_labels, as_probabilities, check_same_length
from her2mri.stats.auc import auc_ci_delong, roc_auc
from her2mri.stats.bootstrap import auc_ci_bootstrap
from her2mri.stats.calibration import brier_score, calibration_stats
from her2mri.stats.hosmer_lemeshow import hosmer_lemeshow
from her2mri.stats.thresholds import metrics_at_threshold, youden_threshold

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_N_BOOT",
    "FALLBACK_THRESHOLD",
    "json_safe",
    "metrics_detail",
    "patient_metrics_with_ci",
    "try_or_note",
]

DEFAULT_N_BOOT = 2000
#: threshold used by ``threshold="youden"`` when a model has no validation predictions
FALLBACK_THRESHOLD = 0.5
_PROPORTIONS = ("sensitivity", "specificity", "ppv", "npv", "accuracy", "balanced_accuracy")


def json_safe(obj: Any) -> Any:
    """Plain JSON data: numpy scalars/arrays to Python, NaN/inf to ``None``, tuples to lists."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def try_or_note(notes: list[str], what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; on ``ValueError`` record ``what: message`` in ``notes`` and return ``None``."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        notes.append(f"{what}: {exc}")
        return None


def _choose_threshold(
    threshold: str | float | None,
    val_labels: Any,
    val_probs: Any,
    notes: list[str],
    locked: float | None = None,
) -> tuple[float, str]:
    """``(threshold, source)`` with source ``locked``, ``youden_val``, ``fixed`` or ``fallback_0.5``."""
    if threshold == "locked":
        if locked is not None:
            return float(locked), "locked"
        msg = (
            "no locked threshold is stored with this model (its run's metrics.json has none): the threshold "
            f"is the fixed fallback {FALLBACK_THRESHOLD}"
        )
        log.warning(msg)
        notes.append(msg)
        return FALLBACK_THRESHOLD, f"fallback_{FALLBACK_THRESHOLD}"
    if threshold is not None and threshold != "youden":
        t = float(threshold)
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"threshold must be 'youden' or a number in [0, 1]; got {threshold!r}.")
        return t, "fixed"
    if val_labels is not None and val_probs is not None:
        t = try_or_note(notes, "Youden threshold on validation", youden_threshold, val_labels, val_probs)
        if t is not None:
            return float(t), "youden_val"
        why = "the Youden threshold could not be chosen on the validation predictions"
    else:
        why = "no validation predictions"
    notes.append(
        f"{why}: the threshold is the fixed fallback {FALLBACK_THRESHOLD} "
        "(a Youden threshold chosen on the evaluated patients themselves would be optimistic)"
    )
    return FALLBACK_THRESHOLD, f"fallback_{FALLBACK_THRESHOLD}"


def metrics_detail(
    labels: Any,
    probs: Any,
    val_labels: Any = None,
    val_probs: Any = None,
    *,
    threshold: str | float | None = "youden",
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    conf_level: float = 0.95,
    locked: float | None = None,
) -> dict[str, Any]:
    """All patient-level metrics of one model, nested (the per-model block of the report).

    ``threshold="locked"`` applies ``locked`` (the threshold stored with the model), 0.5 with a warning when
    it is None.

    Returns:
        ``{"flat": {...}, "threshold_source": str, "threshold_metrics": ThresholdMetrics.to_dict() | None,
        "hosmer_lemeshow": {...} | None, "notes": [str]}`` where ``flat`` is the dict of
        :func:`patient_metrics_with_ci`.
    """
    notes: list[str] = []
    y = as_labels(labels, "labels")
    p = as_probabilities(probs, "probs")
    check_same_length(labels=y, probs=p)
    n_pos = int(y.sum())
    flat: dict[str, Any] = {"n": int(y.size), "n_pos": n_pos, "n_neg": int(y.size) - n_pos}
    flat["prevalence"] = n_pos / y.size if y.size else None

    flat["auroc"] = try_or_note(notes, "AUC", roc_auc, y, p)
    de = try_or_note(notes, "DeLong CI", auc_ci_delong, y, p, conf_level)
    flat["auroc_ci_low"], flat["auroc_ci_high"] = (de.ci_lower, de.ci_upper) if de else (None, None)
    flat["auroc_var_delong"] = de.variance if de else None
    bo = try_or_note(notes, "bootstrap CI", auc_ci_bootstrap, y, p, n_boot, conf_level, seed)
    flat["auroc_boot_ci_low"], flat["auroc_boot_ci_high"] = (bo.ci_lower, bo.ci_upper) if bo else (None, None)

    thr, source = _choose_threshold(threshold, val_labels, val_probs, notes, locked)
    flat["threshold"] = thr
    flat["threshold_from_val"] = int(source == "youden_val")
    tm = metrics_at_threshold(y, p, thr, conf_level, threshold_source=source)
    flat.update({"tp": tm.tp, "fp": tm.fp, "tn": tm.tn, "fn": tm.fn})
    for name in _PROPORTIONS:
        pc = getattr(tm, name)
        flat[name], flat[f"{name}_ci_low"], flat[f"{name}_ci_high"] = pc.estimate, pc.lower, pc.upper

    flat["brier"] = try_or_note(notes, "Brier score", brier_score, y, p)
    cal = try_or_note(notes, "calibration", calibration_stats, y, p)
    flat["calibration_intercept"] = cal.intercept if cal else None
    flat["calibration_slope"] = cal.slope if cal else None
    flat["calibration_citl"] = cal.citl if cal else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hl = try_or_note(notes, "Hosmer-Lemeshow", hosmer_lemeshow, y, p)
    notes.extend(f"Hosmer-Lemeshow: {w.message}" for w in caught)
    flat["hl_chi2"] = hl.chi2 if hl else None
    flat["hl_df"] = hl.df if hl else None
    flat["hl_p"] = hl.p_value if hl else None
    flat.update({"n_boot": int(n_boot), "seed": int(seed), "conf_level": float(conf_level)})
    return {
        "flat": json_safe(flat),
        "threshold_source": source,
        "threshold_metrics": json_safe(tm.to_dict()),
        "hosmer_lemeshow": json_safe(hl.to_dict()) if hl else None,
        "notes": notes,
    }


def patient_metrics_with_ci(
    labels: Any,
    probs: Any,
    val_labels: Any = None,
    val_probs: Any = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    threshold: str | float | None = "youden",
    conf_level: float = 0.95,
) -> dict[str, float | int | None]:
    """Patient-level metrics with confidence intervals, flat and JSON-safe (for ``metrics.json``).

    The threshold is the Youden threshold of the validation predictions when they are given (and
    ``threshold="youden"``), a fixed number when ``threshold`` is one, else the fallback 0.5
    (``threshold_from_val = 0``). Statistics that are undefined for the data (e.g. a DeLong CI with one
    positive) are ``None`` and a ``UserWarning`` says why.

    Args:
        labels: 0/1 labels of the evaluated patients.
        probs: their predicted probabilities of HER2-positive.
        val_labels: validation labels (for the Youden threshold), optional.
        val_probs: validation probabilities, optional.
        n_boot: bootstrap replicates of the AUC CI.
        seed: bootstrap seed.
        threshold: ``"youden"`` (default) or a fixed probability in [0, 1].
        conf_level: confidence level of every interval.

    Returns:
        ``{"n", "n_pos", "n_neg", "prevalence", "auroc", "auroc_ci_low", "auroc_ci_high", "auroc_var_delong",
        "auroc_boot_ci_low", "auroc_boot_ci_high", "threshold", "threshold_from_val", "tp", "fp", "tn", "fn",
        "sensitivity", "sensitivity_ci_low", "sensitivity_ci_high", ... (same for specificity, ppv, npv,
        accuracy, balanced_accuracy), "brier", "calibration_intercept", "calibration_slope",
        "calibration_citl", "hl_chi2", "hl_df", "hl_p", "n_boot", "seed", "conf_level"}``; prefix the keys
        with the stage (``test/``) for ``metrics.json``.

    Example:
        >>> m = patient_metrics_with_ci(y_test, p_test, y_val, p_val, n_boot=2000, seed=0)  # doctest: +SKIP
        >>> m["auroc"], m["auroc_ci_low"], m["auroc_ci_high"]  # doctest: +SKIP
    """
    detail = metrics_detail(
        labels,
        probs,
        val_labels,
        val_probs,
        threshold=threshold,
        n_boot=n_boot,
        seed=seed,
        conf_level=conf_level,
    )
    for note in detail["notes"]:
        warnings.warn(note, stacklevel=2)
    return detail["flat"]
