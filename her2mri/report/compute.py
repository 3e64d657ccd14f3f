"""Every number of the evaluation report, computed with :mod:`her2mri.stats` into one JSON-safe dict.

Nothing here re-implements a statistic: AUC and its DeLong CI, the stratified bootstrap, the paired DeLong
test, the Youden threshold, Wilson CIs, calibration, Hosmer-Lemeshow and decision curves all come from
``her2mri.stats``. This module only chooses the threshold, collects the results and makes them JSON-safe.
The ROC curve points and band are drawn by :mod:`her2mri.report.roc`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from her2mri import stats
from her2mri.data.errors import DataError
from her2mri.report.collect import ModelSource, align_on_common_pids
from her2mri.report.roc import roc_band, roc_points
from her2mri.stats._validate import as_labels, as_probabilities, check_same_length

__all__ = [
    "DEFAULT_N_BOOT",
    "FALLBACK_THRESHOLD",
    "compute_report",
    "json_safe",
    "patient_metrics_with_ci",
]

log = logging.getLogger(__name__)

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


# ----------------------------------------------------------------------------------------------- metrics
def _try(notes: list[str], what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
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
        t = _try(notes, "Youden threshold on validation", stats.youden_threshold, val_labels, val_probs)
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

    flat["auroc"] = _try(notes, "AUC", stats.roc_auc, y, p)
    de = _try(notes, "DeLong CI", stats.auc_ci_delong, y, p, conf_level)
    flat["auroc_ci_low"], flat["auroc_ci_high"] = (de.ci_lower, de.ci_upper) if de else (None, None)
    flat["auroc_var_delong"] = de.variance if de else None
    bo = _try(notes, "bootstrap CI", stats.auc_ci_bootstrap, y, p, n_boot, conf_level, seed)
    flat["auroc_boot_ci_low"], flat["auroc_boot_ci_high"] = (bo.ci_lower, bo.ci_upper) if bo else (None, None)

    thr, source = _choose_threshold(threshold, val_labels, val_probs, notes, locked)
    flat["threshold"] = thr
    flat["threshold_from_val"] = int(source == "youden_val")
    tm = stats.metrics_at_threshold(y, p, thr, conf_level, threshold_source=source)
    flat.update({"tp": tm.tp, "fp": tm.fp, "tn": tm.tn, "fn": tm.fn})
    for name in _PROPORTIONS:
        pc = getattr(tm, name)
        flat[name], flat[f"{name}_ci_low"], flat[f"{name}_ci_high"] = pc.estimate, pc.lower, pc.upper

    flat["brier"] = _try(notes, "Brier score", stats.brier_score, y, p)
    cal = _try(notes, "calibration", stats.calibration_stats, y, p)
    flat["calibration_intercept"] = cal.intercept if cal else None
    flat["calibration_slope"] = cal.slope if cal else None
    flat["calibration_citl"] = cal.citl if cal else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hl = _try(notes, "Hosmer-Lemeshow", stats.hosmer_lemeshow, y, p)
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


# ----------------------------------------------------------------------------------------------- per site
def _per_site(
    y: np.ndarray, p: np.ndarray, sites: Sequence[str | None], thr: float, conf_level: float
) -> list[dict[str, Any]]:
    rows = []
    names = sorted({s if s is not None else "(unknown)" for s in sites})
    site_arr = np.asarray([s if s is not None else "(unknown)" for s in sites], dtype=object)
    for site in names:
        keep = site_arr == site
        ys, ps = y[keep], p[keep]
        notes: list[str] = []
        auc = _try(notes, "AUC", stats.roc_auc, ys, ps)
        de = _try(notes, "DeLong CI", stats.auc_ci_delong, ys, ps, conf_level) if auc is not None else None
        tm = stats.metrics_at_threshold(ys, ps, thr, conf_level)
        rows.append(
            {
                "site": site,
                "n": int(ys.size),
                "n_pos": int(ys.sum()),
                "auroc": auc,
                "auroc_ci_low": de.ci_lower if de else None,
                "auroc_ci_high": de.ci_upper if de else None,
                "sensitivity": tm.sensitivity.estimate,
                "sensitivity_ci_low": tm.sensitivity.lower,
                "sensitivity_ci_high": tm.sensitivity.upper,
                "specificity": tm.specificity.estimate,
                "specificity_ci_low": tm.specificity.lower,
                "specificity_ci_high": tm.specificity.upper,
                "notes": notes,
            }
        )
    return json_safe(rows)


# ----------------------------------------------------------------------------------------------- report
def _delong_block(names: list[str], y: np.ndarray, scores: dict[str, np.ndarray], conf_level: float) -> dict:
    block: dict[str, Any] = {
        "names": names,
        "n": int(y.size),
        "n_pos": int(y.sum()),
        "n_neg": int(y.size - y.sum()),
        "p_values": None,
        "pairs": [],
        "notes": [],
    }
    if len(names) < 2:
        block["notes"].append("one model: no comparison")
        return block
    block["p_values"] = _try(block["notes"], "DeLong p-value matrix", stats.delong_pvalue_matrix, y, scores)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            r = _try(
                block["notes"],
                f"DeLong test {a} vs {b}",
                stats.delong_test,
                y,
                scores[a],
                scores[b],
                conf_level,
            )
            if r is not None:
                block["pairs"].append({"model1": a, "model2": b, **r.to_dict()})
    return json_safe(block)


def compute_report(
    sources: list[ModelSource],
    *,
    threshold: str | float = "youden",
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    conf_level: float = 0.95,
    split: str = "test",
    val_split: str | None = "val",
    title: str = "HER2 evaluation report",
) -> dict[str, Any]:
    """Every number of the report, as one JSON-safe dict (written as ``report.json``).

    All models are evaluated on the patients they share (a warning says how many were left out per model).
    Each model's threshold comes from its own validation predictions (``threshold="youden"``), or is fixed.

    Args:
        sources: the models (see :func:`her2mri.report.collect.load_sources`).
        threshold: ``"youden"`` or a fixed probability in [0, 1].
        n_boot: bootstrap replicates (AUC CI and ROC band).
        seed: bootstrap seed.
        conf_level: confidence level of every interval.
        split: name of the evaluated split (recorded).
        val_split: name of the validation split (recorded).
        title: report title.

    Returns:
        ``{"title", "split", "val_split", "threshold_rule", "n_boot", "seed", "conf_level", "cohort",
        "warnings", "has_sites", "models": {name: {...}}, "delong": {...}, "decision_curve": [...],
        "patients": {"pids", "labels", "probs": {name: [...]}}}`` (the common patients, sorted by pid).
    """
    if threshold not in ("youden", "locked"):
        threshold = float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(
                f"threshold must be 'locked', 'youden' or a number in [0, 1]; got {threshold!r}."
            )
    aligned, info = align_on_common_pids(sources)
    y = aligned[0].test.labels
    if y.min() == y.max():
        files = ", ".join(str(s.test.path) for s in aligned)
        raise DataError(
            f"the {y.size} evaluated patients all have label {int(y[0])}: a report needs both classes "
            f"({files})."
        )
    names = [s.name for s in aligned]
    scores = {s.name: s.test.probs for s in aligned}
    report_warnings = list(info["warnings"])
    models: dict[str, Any] = {}
    for s in aligned:
        p = s.test.probs
        val_y = s.val.labels if s.val is not None else None
        val_p = s.val.probs if s.val is not None else None
        detail = metrics_detail(
            y, p, val_y, val_p, threshold=threshold, n_boot=n_boot, seed=seed, conf_level=conf_level,
            locked=s.locked_threshold,
        )  # fmt: skip
        fpr, tpr, thr = roc_points(y, p)
        entry: dict[str, Any] = {
            "source": str(s.source),
            "predictions_csv": str(s.test.path),
            "val_csv": str(s.val.path) if s.val is not None else None,
            "n_val": len(s.val.pids) if s.val is not None else None,
            "run_dir": str(s.run_dir) if s.run_dir is not None else None,
            "n_total": info["models"][s.name]["n_total"],
            "n_dropped": info["models"][s.name]["n_dropped"],
            "metrics": detail["flat"],
            "threshold_source": detail["threshold_source"],
            "threshold_metrics": detail["threshold_metrics"],
            "confusion_matrix": [
                [detail["flat"]["tn"], detail["flat"]["fp"]],
                [detail["flat"]["fn"], detail["flat"]["tp"]],
            ],
            "hosmer_lemeshow": detail["hosmer_lemeshow"],
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()},
            "roc_band": None,
            "calibration_curve": None,
            "per_site": None,
            "notes": detail["notes"],
        }
        if 0 < y.sum() < y.size:
            entry["roc_band"] = roc_band(y, p, n_boot, seed, conf_level)
        curve = _try(entry["notes"], "calibration curve", stats.calibration_curve, y, p)
        entry["calibration_curve"] = curve.to_dict() if curve is not None else None
        if s.test.sites is not None:
            entry["per_site"] = _per_site(y, p, s.test.sites, detail["flat"]["threshold"], conf_level)
        report_warnings.extend(f"{s.name}: {n}" for n in entry["notes"])
        models[s.name] = json_safe(entry)
    dca = stats.decision_curve(y, scores)
    return json_safe(
        {
            "title": title,
            "split": split,
            "val_split": val_split,
            "threshold_rule": threshold if isinstance(threshold, str) else float(threshold),
            "fallback_threshold": FALLBACK_THRESHOLD,
            "n_boot": int(n_boot),
            "seed": int(seed),
            "conf_level": float(conf_level),
            "cohort": {
                "n": int(y.size),
                "n_pos": int(y.sum()),
                "n_neg": int(y.size - y.sum()),
                "pids_common": info["n_common"],
            },
            "warnings": report_warnings,
            "has_sites": any(m["per_site"] is not None for m in models.values()),
            "models": models,
            "delong": _delong_block(names, y, scores, conf_level),
            "decision_curve": dca.to_dict(orient="records"),
            "patients": {
                "pids": list(aligned[0].test.pids),
                "labels": y.tolist(),
                "probs": {name: scores[name].tolist() for name in names},
            },
        }
    )
