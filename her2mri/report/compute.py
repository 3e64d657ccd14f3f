"""Every number of the evaluation report, computed with :mod:`her2mri.stats` into one JSON-safe dict.

Nothing here re-implements a statistic: AUC and its DeLong CI, the stratified bootstrap, the paired DeLong
test, the Youden threshold, Wilson CIs, calibration, Hosmer-Lemeshow and decision curves all come from
``her2mri.stats``. This module only chooses the threshold, collects the results and makes them JSON-safe.
The ROC curve points and band are drawn by :mod:`her2mri.report.roc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from her2mri import stats
from her2mri.data.errors import DataError
from her2mri.report.collect import ModelSource, align_on_common_pids
from her2mri.report.roc import roc_band, roc_points
from her2mri.stats.patient_metrics import (
    DEFAULT_N_BOOT,
    FALLBACK_THRESHOLD,
    json_safe,
    metrics_detail,
    try_or_note,
)

__all__ = ["compute_report"]


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
        auc = try_or_note(notes, "AUC", stats.roc_auc, ys, ps)
        de = (
            try_or_note(notes, "DeLong CI", stats.auc_ci_delong, ys, ps, conf_level)
            if auc is not None
            else None
        )
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
    block["p_values"] = try_or_note(
        block["notes"], "DeLong p-value matrix", stats.delong_pvalue_matrix, y, scores
    )
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            r = try_or_note(
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
        curve = try_or_note(entry["notes"], "calibration curve", stats.calibration_curve, y, p)
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
