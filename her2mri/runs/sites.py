"""Per-site patient metrics for cohorts whose manifest has a ``site`` column (multi-centre validation).

Keys: ``<stage>/site_<site>/<metric>_patient`` (``auroc``, ``accuracy``, ``sensitivity``, ``specificity``,
``balanced_accuracy``) and ``<stage>/site_<site>/n_patients``; the site name is made key-safe (characters
other
than letters, digits, ``-``, ``_`` and ``.`` become ``_``). Patients without a site are grouped under
``site_unknown`` when at least one other patient has a site. Metrics undefined on a site (one class only) are
NaN, as everywhere in her2mri.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from her2mri.training.aggregation import PatientPredictions
from her2mri.training.metrics import binary_metrics

UNKNOWN_SITE = "unknown"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def site_key(site: str | None) -> str:
    """Key-safe site name (``"Site A/2"`` -> ``"Site_A_2"``; None or blank -> ``"unknown"``)."""
    if site is None or not str(site).strip():
        return UNKNOWN_SITE
    return _UNSAFE.sub("_", str(site).strip())


def site_metrics(
    patients: PatientPredictions,
    sites: Mapping[str, str | None] | None,
    stage: str,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Patient metrics per site.

    Args:
        patients: aggregated patient predictions (labels < 0 = unknown are left out of the metrics).
        sites: ``pid -> site``; None or no known site gives an empty dict.
        stage: the metric prefix (``test``, ``all``...).
        threshold: decision threshold (``prob >= threshold`` is positive).

    Returns:
        ``{"<stage>/site_<site>/<metric>_patient": value, "<stage>/site_<site>/n_patients": n}``.

    Example:
        >>> p = PatientPredictions(("a", "b", "c", "d"), np.array([0, 1, 0, 1]), np.array([.1, .9, .6, .4]),
        ...                        np.ones(4, dtype=np.int64))
        >>> m = site_metrics(p, {"a": "X", "b": "X", "c": "Y", "d": "Y"}, "test")
        >>> m["test/site_X/auroc_patient"], m["test/site_Y/auroc_patient"]
        (1.0, 0.0)
    """
    if not sites or not any(sites.get(p) for p in patients.pids):
        return {}
    keys = np.asarray([site_key(sites.get(p)) for p in patients.pids], dtype=object)
    out: dict[str, float] = {}
    for key in sorted(set(keys.tolist())):
        sel = (keys == key) & (patients.labels >= 0)
        metrics = binary_metrics(patients.probs[sel], patients.labels[sel], threshold)
        for name, value in metrics.items():
            out[f"{stage}/site_{key}/{name}_patient"] = float(value)
        out[f"{stage}/site_{key}/n_patients"] = float(np.sum(keys == key))
    return out
