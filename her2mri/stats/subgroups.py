"""Subgroup results (AUC with DeLong CI, sensitivity/specificity with Wilson CIs) and the site-shortcut probe.

**Subgroups**: the patients are divided by a column (site, an age band, any clinical column); in each
subgroup the AUC (DeLong CI) and the sensitivity and specificity at the model's *fixed* threshold (Wilson CIs)
are computed. Statistics undefined in a subgroup (one class, too few patients) are ``None`` with a note.

**Site-shortcut probe**: a model that has learned the site (scanner, protocol) instead of the tumour can look
good on a pooled test set whose HER2 prevalence differs between sites. The probe asks how well the model's
outputs (and optional features) predict the site: a cross-validated multinomial logistic regression
(scikit-learn, stratified k folds) of the site on the features, scored by the macro one-vs-rest AUC of the
out-of-fold probabilities. Because the HER2 label itself may differ between sites, the same probe on the label
alone is reported as the baseline; the warning is raised when the probe AUC reaches ``warn_at`` (default 0.7)
*and* exceeds the label-only baseline by at least 0.05.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from her2mri.stats.auc import auc_ci_delong, roc_auc
from her2mri.stats.calibration import clipped_logit
from her2mri.stats.thresholds import metrics_at_threshold

__all__ = ["DEFAULT_AGE_BANDS", "age_bands", "site_probe", "subgroup_table"]

#: default age band edges in years: < 50 and >= 50 (a proxy of menopausal status, which changes breast
#: parenchymal enhancement on DCE-MRI; one edge keeps the subgroups large enough for an AUC)
DEFAULT_AGE_BANDS: tuple[float, ...] = (50.0,)


def age_bands(ages: Sequence[Any], edges: Sequence[float] = DEFAULT_AGE_BANDS) -> list[str | None]:
    """Band label per age: ``"<50"``, ``"50-59"``, ``">=60"`` for edges ``(50, 60)``; ``None`` when missing.

    Raises:
        ValueError: edges not strictly increasing or empty.
    """
    e = [float(x) for x in edges]
    if not e or any(b <= a for a, b in zip(e, e[1:], strict=False)):
        raise ValueError(f"age band edges must be a non-empty increasing list; got {list(edges)!r}.")

    def fmt(x: float) -> str:
        return f"{x:g}"

    out: list[str | None] = []
    for a in ages:
        try:
            v = float(a)
        except (TypeError, ValueError):
            out.append(None)
            continue
        if not np.isfinite(v):
            out.append(None)
            continue
        k = int(np.searchsorted(e, v, side="right"))
        if k == 0:
            out.append(f"<{fmt(e[0])}")
        elif k == len(e):
            out.append(f">={fmt(e[-1])}")
        else:
            out.append(
                f"{fmt(e[k - 1])}-{fmt(e[k] - 1)}"
                if float(e[k]).is_integer()
                else f"{fmt(e[k - 1])}-<{fmt(e[k])}"
            )
    return out


def subgroup_table(
    labels: Any,
    probs: Any,
    groups: Sequence[str | None],
    threshold: float,
    variable: str,
    conf_level: float = 0.95,
) -> list[dict[str, Any]]:
    """AUC (DeLong CI) and sensitivity/specificity (Wilson CIs) at ``threshold`` per subgroup.

    Args:
        labels: 0/1 labels.
        probs: predicted probabilities.
        groups: subgroup label per patient (``None``: missing, reported as ``(missing)``).
        threshold: the model's fixed threshold (positive when ``prob >= threshold``).
        variable: the name of the grouping variable (recorded in each row).
        conf_level: confidence level.

    Returns:
        One dict per subgroup: ``variable, level, n, n_pos, auroc, auroc_ci_low, auroc_ci_high, sensitivity,
        sensitivity_ci_low, sensitivity_ci_high, specificity, ..., notes``.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if not (y.size == p.size == len(groups)):
        raise ValueError(f"labels ({y.size}), probs ({p.size}) and groups ({len(groups)}) differ in length.")
    g = np.asarray(
        ["(missing)" if v is None or str(v).strip() == "" else str(v) for v in groups], dtype=object
    )
    rows = []
    for level in sorted(set(g.tolist())):
        keep = g == level
        ys, ps = y[keep], p[keep]
        notes: list[str] = []
        row: dict[str, Any] = {
            "variable": variable,
            "level": level,
            "n": int(ys.size),
            "n_pos": int(ys.sum()),
        }
        auc = lo = hi = None
        if 0 < ys.sum() < ys.size:
            auc = roc_auc(ys, ps)
            try:
                r = auc_ci_delong(ys, ps, conf_level)
                lo, hi = r.ci_lower, r.ci_upper
            except ValueError as exc:
                notes.append(f"DeLong CI: {exc}")
        else:
            notes.append("one class only: no AUC")
        row.update({"auroc": auc, "auroc_ci_low": lo, "auroc_ci_high": hi})
        tm = metrics_at_threshold(ys, ps, threshold, conf_level)
        for name in ("sensitivity", "specificity"):
            pc = getattr(tm, name)
            row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = pc.estimate, pc.lower, pc.upper
        row["notes"] = notes
        rows.append(row)
    return rows


def _macro_ovr_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    aucs = [roc_auc((y == c).astype(int), proba[:, k]) for k, c in enumerate(classes)]
    return float(np.mean(aucs))


def site_probe(
    sites: Sequence[str | None],
    probs: Any,
    labels: Any,
    features: np.ndarray | None = None,
    *,
    n_splits: int = 5,
    seed: int = 0,
    warn_at: float = 0.7,
    min_per_site: int = 5,
) -> dict[str, Any]:
    """How well the model's outputs (and ``features``) predict the site, against a label-only baseline.

    Args:
        sites: site per patient (``None``: left out).
        probs: the model's probabilities (used as ``logit(prob)``).
        labels: 0/1 labels (the baseline probe uses them alone).
        features: optional extra per-patient features ``(n, d)`` (e.g. penultimate-layer embeddings or
            radiomics), standardised inside each fold.
        n_splits: stratified folds (reduced to the smallest site size when needed, at least 2).
        seed: fold shuffling seed.
        warn_at: probe AUC at which the warning is raised (with a margin of 0.05 over the baseline).
        min_per_site: sites with fewer patients are left out (noted).

    Returns:
        ``{"n", "sites", "auc_outputs", "auc_label_only", "warn", "warn_at", "inputs", "notes"}``;
        ``auc_outputs`` is ``None`` when fewer than two sites remain.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(["" if v is None else str(v) for v in sites], dtype=object)
    notes: list[str] = []
    keep = s != ""
    names, counts = np.unique(s[keep], return_counts=True)
    small = names[counts < min_per_site]
    if small.size:
        notes.append(f"sites with < {min_per_site} patients left out: {small.tolist()}")
        keep &= ~np.isin(s, small)
    names = np.unique(s[keep])
    result: dict[str, Any] = {
        "n": int(keep.sum()),
        "sites": names.tolist(),
        "auc_outputs": None,
        "auc_label_only": None,
        "warn": False,
        "warn_at": float(warn_at),
        "inputs": "logit(prob)" + (f" + {features.shape[1]} features" if features is not None else ""),
        "notes": notes,
    }
    if names.size < 2:
        notes.append("fewer than two sites: no probe")
        return result
    lp, _ = clipped_logit(p[keep])
    x = (
        lp[:, None]
        if features is None
        else np.column_stack([lp, np.asarray(features, dtype=np.float64)[keep]])
    )
    target = s[keep]
    k = int(min(n_splits, np.unique(target, return_counts=True)[1].min()))
    cv = StratifiedKFold(n_splits=max(k, 2), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    classes = np.unique(target)
    proba = cross_val_predict(model, x, target, cv=cv, method="predict_proba")
    result["auc_outputs"] = _macro_ovr_auc(target, proba, classes)
    proba_y = cross_val_predict(model, y[keep][:, None], target, cv=cv, method="predict_proba")
    result["auc_label_only"] = _macro_ovr_auc(target, proba_y, classes)
    result["warn"] = bool(
        result["auc_outputs"] >= warn_at and result["auc_outputs"] >= result["auc_label_only"] + 0.05
    )
    return result
