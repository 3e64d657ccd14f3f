"""HTML of the validation sections of the report.

Internal vs external, recalibration and conformal calls, Table 1, subgroups, site-shortcut probe and the
TRIPOD+AI / CLAIM checklist. Numbers are ``<span class="num">`` bound to their JSON pointer, as in
:mod:`her2mri.report.html`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from her2mri.report.html import NA, _esc, _img, _Page

__all__ = ["render_validation"]


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th{' class=name' if i == 0 else ''}>{h}</th>" for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=name' if i == 0 else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table{f' class={cls}' if cls else ''}><tr>{th}</tr>{body}</table>"


def _cohorts(p: _Page, figures: Mapping[str, Path]) -> str:
    block = p.r["cohorts"]
    level = round(100 * p.r["conf_level"])
    out = [
        "<h2>Internal vs external validation</h2>",
        "<p class='note'>Each source on <b>all its own patients</b>; cohorts are sources on disjoint "
        "patients. The threshold is locked before the external data are seen (Youden on the validation "
        "predictions of the training run, or the fixed --threshold) and applied unchanged. Comparisons "
        "across cohorts: unpaired DeLong test (as pROC roc.test(paired = FALSE): statistic D, Welch df, "
        "Student-t p); within a cohort: paired DeLong on the common patients.</p>",
    ]
    if "cohorts" in figures:
        out.append(
            f"<div class='figs'><figure class='wide'>{_img(figures['cohorts'], 'internal vs external')}"
            "<figcaption>ROC (left) and calibration (right) per cohort; colour = model, line style = cohort "
            "(solid: first cohort).</figcaption></figure></div>"
        )
    rows = []
    for label, src in block["sources"].items():
        path = ("cohorts", "sources", label, "metrics")
        rows.append(
            [
                _esc(label),
                _esc(src["cohort"]),
                f"{p.num(*path, 'n', kind='int')} ({p.num(*path, 'n_pos', kind='int')})",
                p.ci(*path, est="auroc"),
                f"{p.num(*path, 'threshold')} <span class='ci'>{_esc(src['threshold_source'])}</span>",
                p.ci(*path, est="sensitivity"),
                p.ci(*path, est="specificity"),
                p.num(*path, "brier"),
                p.num(*path, "ece"),
                p.num(*path, "calibration_intercept"),
                p.num(*path, "calibration_slope"),
            ]
        )
    out.append(
        _table(
            [
                "source",
                "cohort",
                "n (pos)",
                f"AUC (DeLong {level}% CI)",
                "threshold (from)",
                "sensitivity",
                "specificity",
                "Brier",
                "ECE",
                "cal. intercept",
                "cal. slope",
            ],
            rows,
            "metrics",
        )  # fmt: skip
    )
    urows = []
    for i, u in enumerate(block["unpaired"]):
        path = ("cohorts", "unpaired", i)
        urows.append(
            [
                f"{_esc(u['source1'])} &minus; {_esc(u['source2'])}",
                p.num(*path, "auc1"),
                p.num(*path, "auc2"),
                p.ci3(path, "diff", "diff_ci_lower", "diff_ci_upper"),
                p.num(*path, "statistic", kind="f2"),
                p.num(*path, "df", kind="f2"),
                p.num(*path, "p_value", kind="p"),
            ]
        )
    if urows:
        out.append("<h3>Unpaired comparisons (different patients)</h3>")
        out.append(
            _table(["comparison", "AUC 1", "AUC 2", f"difference ({level}% CI)", "D", "df", "p"], urows)
        )
    for ci, cohort in enumerate(block["cohorts"]):
        paired = cohort.get("paired")
        if not paired or not paired.get("pairs"):
            continue
        prow = []
        for j, pair in enumerate(paired["pairs"]):
            path = ("cohorts", "cohorts", ci, "paired", "pairs", j)
            prow.append(
                [
                    f"{_esc(pair['model1'])} &minus; {_esc(pair['model2'])}",
                    p.num(*path, "auc1"),
                    p.num(*path, "auc2"),
                    p.ci3(path, "diff", "diff_ci_lower", "diff_ci_upper"),
                    p.num(*path, "p_value", kind="p"),
                ]
            )
        out.append(f"<h3>Paired comparisons within the {_esc(cohort['name'])} cohort</h3>")
        out.append(_table(["comparison", "AUC 1", "AUC 2", f"difference ({level}% CI)", "p"], prow))
    srows = []
    for label, src in block["sources"].items():
        for i, row in enumerate(src.get("per_site") or []):
            path = ("cohorts", "sources", label, "per_site", i)
            srows.append(
                [
                    _esc(label),
                    _esc(row["site"]),
                    f"{p.num(*path, 'n', kind='int')} ({p.num(*path, 'n_pos', kind='int')})",
                    p.ci(*path, est="auroc"),
                    p.ci(*path, est="sensitivity"),
                    p.ci(*path, est="specificity"),
                ]
            )
    if srows:
        out.append("<h3>Per site, per cohort (locked threshold)</h3>")
        out.append(_table(["source", "site", "n (pos)", "AUC", "sensitivity", "specificity"], srows))
    if block.get("notes"):
        out.append("<ul class='note'>" + "".join(f"<li>{_esc(n)}</li>" for n in block["notes"]) + "</ul>")
    return "".join(out)


def _recalibration(p: _Page, figures: Mapping[str, Path]) -> str:
    recal = p.r["recalibration"]
    out = [
        "<h2>Recalibration and conformal calls</h2>",
        "<p class='note'>From <code>predictions/&lt;split&gt;_recalibrated_patients.csv</code> of "
        "her2mri-eval runs with <code>recalibrate=</code> / <code>conformal_alpha=</code>: the held-out "
        "patients only (never the calibration set). ECE: 10 equal-width bins.</p>",
    ]
    rows = []
    for name, r in recal.items():
        for tag in ("before", "after"):
            path = ("recalibration", name, tag)
            rows.append(
                [
                    _esc(name) if tag == "before" else "",
                    _esc(r.get("method") or "none") if tag == "before" else "",
                    tag,
                    p.num("recalibration", name, "n", kind="int") if tag == "before" else "",
                    p.num(*path, "brier"),
                    p.num(*path, "ece"),
                    p.num(*path, "intercept"),
                    p.num(*path, "slope"),
                    p.num(*path, "auroc"),
                ]
            )
    out.append(
        _table(
            ["model", "method", "", "n held out", "Brier", "ECE", "cal. intercept", "cal. slope", "AUC"], rows
        )
    )
    if "recalibration" in figures:
        out.append(
            f"<div class='figs'><figure>{_img(figures['recalibration'], 'recalibration')}"
            "<figcaption>Calibration before (dashed) and after (solid) recalibration, 5 equal-count bins."
            "</figcaption></figure></div>"
        )
    crow = []
    for name, r in recal.items():
        if not r.get("conformal"):
            continue
        path = ("recalibration", name, "conformal")
        crow.append(
            [
                _esc(name),
                p.num("recalibration", name, "conformal_alpha", kind="f2"),
                _esc(r.get("conformal_mode") or NA),
                p.num(*path, "target_coverage", kind="f2") if "target_coverage" in r["conformal"] else NA,
                p.num(*path, "coverage"),
                p.num(*path, "coverage_pos"),
                p.num(*path, "coverage_neg"),
                p.num(*path, "share_uncertain"),
                " / ".join(
                    p.num(*path, "n_calls", c, kind="int") for c in ("HER2-", "HER2+", "uncertain", "empty")
                ),
            ]
        )
    if crow:
        out.append("<h3>Conformal calls (HER2&minus;, HER2+, uncertain = refer to biopsy)</h3>")
        out.append(
            _table(
                [
                    "model",
                    "alpha",
                    "mode",
                    "target coverage",
                    "coverage",
                    "coverage HER2+",
                    "coverage HER2-",
                    "share uncertain",
                    "calls HER2- / HER2+ / uncertain / empty",
                ],
                crow,
            )  # fmt: skip
        )
    return "".join(out)


def _table1(p: _Page) -> str:
    t1 = p.r["table1"]
    groups = t1["groups"]
    rows = []
    for i, row in enumerate(t1["rows"]):
        cells = [
            _esc(row["variable"]),
            _esc(row["level"]),
            *(_esc(row.get(g) if row.get(g) is not None else "") for g in groups),
            _esc(row["statistical_test"] or ""),
            p.num("table1", "rows", i, "p_value", kind="p") if row["p_value"] is not None else "",
        ]
        rows.append(cells)
    note = "".join(f"<li>{_esc(n)}</li>" for n in t1.get("notes", []))
    return (
        "<h2>Table 1: patients per cohort and split</h2>"
        + _table(["variable", "", *[_esc(g) for g in groups], "test", "p"], rows)
        + "<p class='note'>Continuous: median [Q1, Q3] and mean (SD), Kruskal&ndash;Wallis; categorical: "
        "n (% of non-missing), Fisher's exact test (2&times;2) or chi-square. Also in "
        "<code>table1.csv</code>.</p>" + (f"<ul class='note'>{note}</ul>" if note else "")
    )


def _subgroups(p: _Page) -> str:
    rows = []
    for label, entries in p.r["subgroups"]["sources"].items():
        for i, row in enumerate(entries):
            path = ("subgroups", "sources", label, i)
            rows.append(
                [
                    _esc(label),
                    _esc(row["variable"]),
                    _esc(row["level"]),
                    f"{p.num(*path, 'n', kind='int')} ({p.num(*path, 'n_pos', kind='int')})",
                    p.ci(*path, est="auroc"),
                    p.ci(*path, est="sensitivity"),
                    p.ci(*path, est="specificity"),
                ]
            )
    if not rows:
        return ""
    return (
        "<h2>Subgroups</h2>"
        + _table(
            ["source", "variable", "subgroup", "n (pos)", "AUC (DeLong CI)", "sensitivity", "specificity"],
            rows,
        )
        + "<p class='note'>Each source's locked threshold in every subgroup; Wilson CIs; n/a where a "
        "subgroup lacks a class or has too few patients. Also in <code>subgroups.csv</code>.</p>"
    )


def _site_probe(p: _Page) -> str:
    rows = []
    for label, r in p.r["site_probe"]["sources"].items():
        path = ("site_probe", "sources", label)
        verdict = "<b>WARNING</b>" if r["warn"] else ("n/a" if r["auc_outputs"] is None else "ok")
        rows.append(
            [
                _esc(label),
                _esc(", ".join(r["sites"])),
                p.num(*path, "n", kind="int"),
                _esc(r["inputs"]),
                p.num(*path, "auc_outputs"),
                p.num(*path, "auc_label_only"),
                verdict,
            ]
        )
    if not rows:
        return ""
    return (
        "<h2>Site-shortcut probe</h2>"
        + _table(
            [
                "source",
                "sites",
                "n",
                "probe inputs",
                "site AUC from outputs",
                "site AUC from label only",
                "verdict",
            ],
            rows,
        )  # fmt: skip
        + "<p class='note'>Cross-validated logistic regression predicting the site from the model's outputs "
        "(macro one-vs-rest AUC). A warning when it reaches "
        f"{p.num('site_probe_warn_at', kind='f2')} and exceeds the label-only baseline by 0.05: the model "
        "may have learned the site (scanner, protocol) rather than the tumour.</p>"
    )


def _checklist(p: _Page) -> str:
    rows = []
    for row in p.r["checklist"]:
        text = _esc(row["text"])
        if row["status"] == "authors":
            text = f"<i>{text}</i>"
        rows.append([_esc(row["item"]), _esc(row["topic"]), text])
    return (
        "<h2>Reporting checklist (TRIPOD+AI / CLAIM)</h2>"
        "<p class='note'>Filled from this report where her2mri knows the answer; items in italics are "
        "<i>to be completed by the authors</i>. Item numbers: TRIPOD+AI (CLAIM in brackets).</p>"
        + _table(["item", "topic", "what this study reports"], rows, "checklist")
    )


def render_validation(report: Mapping[str, Any], figures: Mapping[str, Path]) -> str:
    """HTML of every validation section present in ``report``."""
    p = _Page(report)
    out = [
        "<style>table.checklist td{text-align:left;vertical-align:top}table.checklist td i{color:#777}"
        "table.checklist{max-width:1300px}</style>"
    ]
    if report.get("cohorts"):
        out.append(_cohorts(p, figures))
    if report.get("recalibration"):
        out.append(_recalibration(p, figures))
    if report.get("table1"):
        out.append(_table1(p))
    if report.get("subgroups"):
        out.append(_subgroups(p))
    if report.get("site_probe"):
        out.append(_site_probe(p))
    if report.get("checklist"):
        out.append(_checklist(p))
    return "".join(out)
