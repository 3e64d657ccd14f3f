"""The TRIPOD+AI / CLAIM reporting checklist of a report, filled from the run where her2mri knows the answer.

TRIPOD+AI (Collins et al., BMJ 2024) and CLAIM (Mongan et al., Radiology: AI 2020; 2024 update) list what a
prediction-model or imaging-AI paper must report. her2mri fills the items it can know from the report (sample
sizes and patient flow, missing data, threshold choice, calibration, internal vs external validation,
subgroups, uncertainty, software); every other item reads "to be completed by the authors". Item numbers refer
to the TRIPOD+AI checklist (CLAIM items in brackets); the wording is abridged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["AUTHORS", "build_checklist"]

AUTHORS = "to be completed by the authors"


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _flow(report: Mapping[str, Any]) -> str:
    parts = []
    for name, m in report["models"].items():
        n_val = f", threshold chosen on {m['n_val']} validation patients" if m.get("n_val") else ""
        parts.append(
            f"{name}: {m['n_total']} patients in {m['predictions_csv']}, {m['n_dropped']} not common to all "
            f"models{n_val}"
        )
    cohorts = (report.get("cohorts") or {}).get("cohorts") or []
    for c in cohorts[1:]:
        parts.append(f"{c['name']} cohort: {c['n_patients']} patients ({', '.join(c['sources'])})")
    return "; ".join(parts)


def _threshold(report: Mapping[str, Any]) -> str:
    rule = report["threshold_rule"]
    if rule == "locked":
        sources = {m["threshold_source"] for m in report["models"].values()}
        text = "the locked threshold stored with each model (chosen on its validation patients at training)"
        if any(s.startswith("fallback") for s in sources):
            text += f"; fixed {report['fallback_threshold']} for a model without a stored threshold"
        return text
    if rule != "youden":
        return f"fixed threshold {rule} for every model (set before evaluation)"
    sources = {m["threshold_source"] for m in report["models"].values()}
    text = (
        f"Youden index on the {report['val_split']} predictions of each model, applied unchanged to "
        f"{report['split']}"
    )
    if any(s.startswith("fallback") for s in sources):
        text += f"; fixed {report['fallback_threshold']} for a model without validation predictions"
    ext = (report.get("cohorts") or {}).get("sources") or {}
    if any(v.get("threshold_source") == "youden_val_training_run" for v in ext.values()):
        text += "; external runs use the threshold locked on the training run's validation patients"
    return text


def _calibration(report: Mapping[str, Any]) -> str:
    parts = []
    for name, m in report["models"].items():
        mt = m["metrics"]
        parts.append(
            f"{name}: intercept {_fmt(mt.get('calibration_intercept'))}, "
            f"slope {_fmt(mt.get('calibration_slope'))}, "
            f"Brier {_fmt(mt.get('brier'))}"
        )
    text = "; ".join(parts) + " (calibration plot in the report)"
    recal = report.get("recalibration") or {}
    if recal:
        text += "; recalibrated: " + "; ".join(
            f"{k} ({v.get('method') or 'none'}): ECE {_fmt(v['before']['ece'])} -> {_fmt(v['after']['ece'])}"
            for k, v in recal.items()
        )
    return text


def _validation(report: Mapping[str, Any]) -> str:
    cohorts = (report.get("cohorts") or {}).get("cohorts") or []
    if len(cohorts) > 1:
        names = ", ".join(f"{c['name']} ({c['n_patients']} patients)" for c in cohorts)
        return (
            f"internal and external validation shown side by side: {names}; unpaired DeLong tests between "
            "cohorts. Whether the external cohort is a different centre, period or scanner: " + AUTHORS
        )
    return (
        f"evaluation on the {report['split']} split ({report['cohort']['n']} patients) only; no external "
        "validation in this report. Type of internal validation (split sample, cross-validation): " + AUTHORS
    )


def _subgroups(report: Mapping[str, Any]) -> str:
    sub = (report.get("subgroups") or {}).get("sources") or {}
    variables = sorted({r["variable"] for rows in sub.values() for r in rows})
    if not variables:
        return "no subgroup analysis (no site column and no clinical CSV); " + AUTHORS
    return f"subgroup AUC and sensitivity/specificity by {', '.join(variables)} (Subgroups section)"


def _missing(report: Mapping[str, Any]) -> str:
    t1 = report.get("table1") or {}
    rows = [r for r in t1.get("rows", []) if r.get("level") == "n missing"]
    text = "patients without a label are left out of every metric (a warning names them)"
    if rows:
        text += (
            "; missing clinical values per group in Table 1 (" + ", ".join(r["variable"] for r in rows) + ")"
        )
    return text + "; how missing values were handled in model development: " + AUTHORS


def _uncertainty(report: Mapping[str, Any]) -> str:
    recal = report.get("recalibration") or {}
    conf = {k: v["conformal"] for k, v in recal.items() if v.get("conformal")}
    if not conf:
        return "95% CIs for every metric (DeLong, bootstrap, Wilson); no conformal prediction sets"
    return "95% CIs for every metric; split-conformal calls: " + "; ".join(
        f"{k}: coverage {_fmt(c['coverage'])}, uncertain {_fmt(c['share_uncertain'])}"
        for k, c in conf.items()
    )


def build_checklist(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """The checklist rows ``{"item", "topic", "status", "text"}`` (status: ``filled`` or ``authors``).

    Args:
        report: the report dict (after every section has been added).

    Returns:
        The rows, in checklist order.
    """
    version = report.get("her2mri_version") or ""
    shortcut = (report.get("site_probe") or {}).get("sources") or {}
    probe = (
        "; ".join(
            f"{k}: site predicted from outputs with AUC {_fmt(v.get('auc_outputs'))}"
            + (" (WARNING)" if v.get("warn") else "")
            for k, v in shortcut.items()
        )
        or "no site information: probe not run"
    )
    rows = [
        ("1-3", "Title, abstract, background and objectives", AUTHORS),
        ("5 [CLAIM 7-8]", "Data sources, study dates, setting and centres", AUTHORS),
        ("6 [CLAIM 9]", "Eligibility criteria", AUTHORS),
        (
            "7 [CLAIM 10-12]",
            "Image acquisition and data preprocessing",
            AUTHORS + " (her2mri config in metrics.json)",
        ),
        (
            "8 [CLAIM 14-16]",
            "Outcome: HER2 status and its reference standard (IHC/ISH)",
            "label 1 = HER2-positive; definition: " + AUTHORS,
        ),
        ("9 [CLAIM 21]", "Sample size; flow of patients", _flow(report)),
        ("10 [CLAIM 13]", "Missing data", _missing(report)),
        (
            "12 [CLAIM 22-26]",
            "Model: architecture, training, selection",
            AUTHORS + " (see the run's metrics.json config)",
        ),
        ("12e", "How the classification threshold was chosen", _threshold(report)),
        ("12f [CLAIM 28-29]", "Internal and external validation", _validation(report)),
        (
            "12g [CLAIM 30]",
            "Performance measures: discrimination",
            "AUC with DeLong and bootstrap CIs; sensitivity, specificity, PPV, NPV at the threshold with "
            "Wilson CIs",
        ),
        ("12g", "Calibration", _calibration(report)),
        ("12g", "Uncertainty of individual predictions", _uncertainty(report)),
        ("12h [CLAIM 32]", "Subgroup results and fairness", _subgroups(report)),
        (
            "20 [CLAIM 33]",
            "Participants: Table 1 of characteristics",
            "Table 1 per cohort and split" if report.get("table1") else AUTHORS,
        ),
        ("-", "Shortcut learning (site predicted from the model's outputs)", probe),
        ("24-25 [CLAIM 37-38]", "Interpretation, limitations, clinical use", AUTHORS),
        (
            "14, 18 [CLAIM 41-42]",
            "Software and code availability",
            f"her2mri {version}; " + AUTHORS + " (repository, version tag)",
        ),
        ("3 [CLAIM 40]", "Ethics approval, consent, funding, conflicts, registration", AUTHORS),
    ]
    return [
        {"item": i, "topic": t, "status": "authors" if text.startswith(AUTHORS) else "filled", "text": text}
        for i, t, text in rows
    ]
