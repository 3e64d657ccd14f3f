"""The self-contained HTML report: tables of every number, figures embedded as base64 PNG.

Every number shown in a table is a ``<span class="num" data-key=POINTER data-fmt=KIND>`` whose ``data-key``
is the JSON pointer (RFC 6901) of the value in ``report.json`` and whose text is :func:`format_value` of that
value, so a test (or a reader) can check that the page shows exactly the numbers of the JSON.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["FORMATS", "format_value", "json_pointer", "render_html", "resolve_pointer"]

#: number formats used in the page: 3 decimals, p-value, integer, 2 decimals
FORMATS: tuple[str, ...] = ("f3", "p", "int", "f2")
NA = "n/a"


def format_value(value: Any, kind: str = "f3") -> str:
    """Text of a number as shown in the report.

    Args:
        value: a number or ``None`` (shown as ``n/a``).
        kind: ``f3`` (3 decimals), ``f2`` (2 decimals), ``p`` (p-value: ``<0.001`` below 0.001, else 3
            decimals) or ``int``.

    Returns:
        The text.
    """
    if kind not in FORMATS:
        raise ValueError(f"kind must be one of {list(FORMATS)}; got {kind!r}.")
    if value is None:
        return NA
    if kind == "int":
        return str(int(value))
    if kind == "p":
        return "<0.001" if value < 0.001 else f"{value:.3f}"
    return f"{value:.{2 if kind == 'f2' else 3}f}"


def json_pointer(*parts: str | int) -> str:
    """JSON pointer (RFC 6901) of a path: ``json_pointer("models", "a/b", 0)`` -> ``/models/a~1b/0``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """The value at a JSON pointer of :func:`json_pointer` (``KeyError``/``IndexError`` when absent)."""
    if pointer == "":
        return doc
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


class _Page:
    """Helpers bound to one report dict."""

    def __init__(self, report: Mapping[str, Any]) -> None:
        self.r = report

    def num(self, *path: str | int, kind: str = "f3") -> str:
        pointer = json_pointer(*path)
        text = format_value(resolve_pointer(self.r, pointer), kind)
        return f'<span class="num" data-key="{_esc(pointer)}" data-fmt="{kind}">{_esc(text)}</span>'

    def ci(self, *path: str | int, est: str, kind: str = "f3") -> str:
        """``estimate (low-high)`` from the keys ``est``, ``est_ci_low``, ``est_ci_high`` under ``path``."""
        return self.ci3(path, est, f"{est}_ci_low", f"{est}_ci_high", kind)

    def ci3(self, path: tuple[str | int, ...], est: str, low: str, high: str, kind: str = "f3") -> str:
        obj = resolve_pointer(self.r, json_pointer(*path))
        if obj.get(low) is None and obj.get(high) is None:
            return self.num(*path, est, kind=kind)
        return (
            f"{self.num(*path, est, kind=kind)} <span class='ci'>({self.num(*path, low, kind=kind)}&ndash;"
            f"{self.num(*path, high, kind=kind)})</span>"
        )


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}" title="{_esc(Path(path).name)}">'


_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1320px;
color:#222;line-height:1.45;padding:0 16px}
h1{font-size:26px;margin-bottom:4px}
h2{font-size:20px;margin-top:34px;border-bottom:2px solid #ddd;padding-bottom:4px}
h3{font-size:16px;margin-top:22px}
.meta{color:#555;font-size:14px}
table{border-collapse:collapse;margin:10px 0 6px;font-size:14px}
th,td{border:1px solid #ccc;padding:5px 9px;text-align:right;vertical-align:top}
th{background:#f2f4f7;text-align:center}
td.name,th.name{text-align:left;font-weight:600}
td.text{text-align:left;font-size:12px;word-break:break-all;max-width:420px}
.ci{color:#555;font-size:12px;white-space:nowrap}
table.metrics td{white-space:nowrap}table.metrics td .ci{display:block}
.num{white-space:nowrap}
.sig{background:#fde9e7}
.warn{background:#fff6d6;border:1px solid #e6c96b;padding:8px 14px;border-radius:4px;font-size:14px}
.note{color:#555;font-size:13px;max-width:1100px}
.figs{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.figs figure{margin:0;flex:1 1 560px;max-width:640px}
figure img{width:100%;height:auto;border:1px solid #e3e3e3}
figure.wide{max-width:100%}
figcaption{font-size:13px;color:#444}
.gallery{display:flex;flex-wrap:wrap;gap:14px}
.gallery figure{margin:0;width:640px;max-width:100%}
"""


def _inputs_table(p: _Page) -> str:
    rows = []
    for name, m in p.r["models"].items():
        val = (
            f"{_esc(m['val_csv'])} ({p.num('models', name, 'n_val', kind='int')} patients)"
            if m["val_csv"]
            else NA
        )
        rows.append(
            f"<tr><td class='name'>{_esc(name)}</td><td class='text'>{_esc(m['predictions_csv'])}</td>"
            f"<td>{p.num('models', name, 'n_total', kind='int')}</td>"
            f"<td>{p.num('models', name, 'n_dropped', kind='int')}</td>"
            f"<td class='text'>{val}</td><td>{_esc(m['threshold_source'])}</td></tr>"
        )
    return (
        "<table><tr><th class='name'>model</th><th>predictions file</th><th>patients in file</th>"
        "<th>left out (not common)</th><th>validation file (threshold)</th><th>threshold from</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _metrics_tables(p: _Page) -> str:
    level = round(100 * p.r["conf_level"])
    head = (
        "<table class='metrics'><tr><th class='name'>model</th><th>n (pos)</th>"
        f"<th>AUC (DeLong {level}% CI)</th><th>AUC bootstrap {level}% CI</th><th>threshold</th>"
        "<th>sensitivity</th><th>specificity</th><th>PPV</th><th>NPV</th><th>accuracy</th>"
        "<th>balanced accuracy</th></tr>"
    )
    rows = []
    for name in p.r["models"]:
        path = ("models", name, "metrics")
        mt = p.r["models"][name]["metrics"]
        boot = (
            f"{p.num(*path, 'auroc_boot_ci_low')}&ndash;{p.num(*path, 'auroc_boot_ci_high')}"
            if mt["auroc_boot_ci_low"] is not None
            else NA
        )
        cells = [
            f"{p.num(*path, 'n', kind='int')} ({p.num(*path, 'n_pos', kind='int')})",
            p.ci(*path, est="auroc"),
            boot,
            p.num(*path, "threshold"),
            *(
                p.ci(*path, est=k)
                for k in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "balanced_accuracy")
            ),
        ]
        rows.append(
            f"<tr><td class='name'>{_esc(name)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    table1 = head + "".join(rows) + "</table>"
    head2 = (
        "<table><tr><th class='name'>model</th><th>Brier score</th><th>calibration intercept</th>"
        "<th>calibration slope</th><th>calibration-in-the-large</th>"
        "<th>Hosmer&ndash;Lemeshow &chi;&sup2;</th>"
        "<th>HL df</th><th>HL p</th></tr>"
    )
    rows2 = []
    for name in p.r["models"]:
        path = ("models", name, "metrics")
        cells = [
            p.num(*path, "brier"),
            p.num(*path, "calibration_intercept"),
            p.num(*path, "calibration_slope"),
            p.num(*path, "calibration_citl"),
            p.num(*path, "hl_chi2", kind="f2"),
            p.num(*path, "hl_df", kind="int"),
            p.num(*path, "hl_p", kind="p"),
        ]
        rows2.append(
            f"<tr><td class='name'>{_esc(name)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    table2 = head2 + "".join(rows2) + "</table>"
    return (
        "<h3>Discrimination and metrics at the threshold</h3>"
        + table1
        + f"<p class='note'>Intervals: AUC by DeLong and by a stratified percentile bootstrap "
        f"({p.num('n_boot', kind='int')} replicates, seed {p.num('seed', kind='int')}); "
        "proportions by Wilson; "
        "balanced accuracy by MOVER-Wilson. A patient is positive when prob &ge; threshold.</p>"
        + "<h3>Calibration</h3>"
        + table2
        + "<p class='note'>Intercept and slope of the logistic recalibration "
        "logit(P) = a + b&middot;logit(p) (ideal 0 and 1, as rms val.prob); "
        "calibration-in-the-large is the intercept with the slope fixed at 1. "
        "Hosmer&ndash;Lemeshow on deciles of predicted risk, df = g &minus; 2.</p>"
    )


def _delong_section(p: _Page) -> str:
    d = p.r["delong"]
    names = d["names"]
    intro = (
        f"<p class='note'>Paired DeLong test on the {p.num('delong', 'n', kind='int')} patients common to "
        f"all models ({p.num('delong', 'n_pos', kind='int')} positive, "
        f"{p.num('delong', 'n_neg', kind='int')} negative); two-sided p-values. Shaded: p &lt; 0.05.</p>"
    )
    if d["p_values"] is None:
        notes = "".join(f"<li>{_esc(n)}</li>" for n in d["notes"])
        return intro + f"<p>No p-value matrix.</p><ul class='note'>{notes}</ul>"
    head = (
        "<table><tr><th class='name'>p-value</th>" + "".join(f"<th>{_esc(n)}</th>" for n in names) + "</tr>"
    )
    rows = []
    for a in names:
        cells = []
        for b in names:
            if a == b:
                cells.append("<td>&mdash;</td>")
                continue
            pv = d["p_values"][a][b]
            cls = " class='sig'" if pv is not None and pv < 0.05 else ""
            cells.append(f"<td{cls}>{p.num('delong', 'p_values', a, b, kind='p')}</td>")
        rows.append(f"<tr><td class='name'>{_esc(a)}</td>" + "".join(cells) + "</tr>")
    matrix = head + "".join(rows) + "</table>"
    level = round(100 * p.r["conf_level"])
    prow = []
    for i, pair in enumerate(d["pairs"]):
        path = ("delong", "pairs", i)
        prow.append(
            f"<tr><td class='name'>{_esc(pair['model1'])} &minus; {_esc(pair['model2'])}</td>"
            f"<td>{p.num(*path, 'auc1')}</td><td>{p.num(*path, 'auc2')}</td>"
            f"<td>{p.ci3(path, 'diff', 'diff_ci_lower', 'diff_ci_upper')}</td>"
            f"<td>{p.num(*path, 'z', kind='f2')}</td><td>{p.num(*path, 'p_value', kind='p')}</td></tr>"
        )
    pairs = (
        "<table><tr><th class='name'>comparison</th><th>AUC 1</th><th>AUC 2</th>"
        f"<th>difference ({level}% CI)</th>"
        "<th>z</th><th>p</th></tr>" + "".join(prow) + "</table>"
    )
    return intro + matrix + pairs


def _confusion_table(p: _Page) -> str:
    rows = []
    for name in p.r["models"]:
        path = ("models", name, "metrics")
        rows.append(
            f"<tr><td class='name'>{_esc(name)}</td><td>{p.num(*path, 'threshold')}</td>"
            + "".join(f"<td>{p.num(*path, k, kind='int')}</td>" for k in ("tp", "fn", "tn", "fp"))
            + "</tr>"
        )
    return (
        "<table><tr><th class='name'>model</th><th>threshold</th>"
        "<th>TP</th><th>FN</th><th>TN</th><th>FP</th></tr>" + "".join(rows) + "</table>"
    )


def _site_section(p: _Page) -> str:
    rows = []
    for name, m in p.r["models"].items():
        for i, row in enumerate(m["per_site"] or []):
            path = ("models", name, "per_site", i)
            rows.append(
                f"<tr><td class='name'>{_esc(name)}</td><td class='name'>{_esc(row['site'])}</td>"
                f"<td>{p.num(*path, 'n', kind='int')}</td><td>{p.num(*path, 'n_pos', kind='int')}</td>"
                f"<td>{p.ci(*path, est='auroc')}</td><td>{p.ci(*path, est='sensitivity')}</td>"
                f"<td>{p.ci(*path, est='specificity')}</td></tr>"
            )
    return (
        "<table><tr><th class='name'>model</th><th class='name'>site</th><th>n</th><th>positives</th>"
        "<th>AUC (DeLong CI)</th><th>sensitivity</th><th>specificity</th></tr>" + "".join(rows) + "</table>"
        "<p class='note'>Each model's own threshold (above) is applied at every site; n/a where a site lacks "
        "a class or has too few patients for the interval.</p>"
    )


def _gallery(p: _Page, gradcam_files: Mapping[str, list[Path]]) -> str:
    parts = []
    for name, entries in p.r.get("gradcam", {}).items():
        figs = []
        for i, (entry, path) in enumerate(zip(entries, gradcam_files.get(name, []), strict=False)):
            cap = [_esc(entry["file"])]
            if entry.get("pid") is not None:
                cap.append(f"pid {_esc(entry['pid'])}")
            if entry.get("label") is not None:
                cap.append(f"label {p.num('gradcam', name, i, 'label', kind='int')}")
            if entry.get("prob") is not None:
                cap.append(f"p {p.num('gradcam', name, i, 'prob')}")
            caption = " &middot; ".join(cap)
            figs.append(f"<figure>{_img(path, entry['file'])}<figcaption>{caption}</figcaption></figure>")
        parts.append(f"<h3>{_esc(name)}</h3><div class='gallery'>{''.join(figs)}</div>")
    return "".join(parts)


def render_html(
    report: Mapping[str, Any],
    figures: Mapping[str, Path],
    gradcam_files: Mapping[str, list[Path]] | None = None,
    generated: str = "",
    version: str = "",
    validation: str = "",
) -> str:
    """The report page as one self-contained HTML string (figures embedded as base64 PNG).

    Args:
        report: the dict of :func:`her2mri.report.compute.compute_report` (plus ``gradcam`` when present).
        figures: figure key -> PNG (keys of :data:`her2mri.report.figures.FIGURE_FILES`).
        gradcam_files: model name -> Grad-CAM PNGs, in the order of ``report["gradcam"][model]``.
        generated: time stamp shown in the header.
        version: her2mri version shown in the header.
        validation: the HTML of the validation sections
            (:func:`her2mri.report.html_validation.render_validation`), placed before the Grad-CAM gallery.

    Returns:
        The HTML text.
    """
    p = _Page(report)
    r = report
    thr_rule = (
        f"Youden index chosen on each model's <b>{_esc(r['val_split'])}</b> predictions and applied "
        f"unchanged to <b>{_esc(r['split'])}</b> (fixed {_esc(r['fallback_threshold'])} for a model "
        "without validation predictions)"
        if r["threshold_rule"] == "youden"
        else "each model's locked threshold, chosen on its validation patients during training and stored "
        f"with it (fixed {_esc(r['fallback_threshold'])} for a model without one)"
        if r["threshold_rule"] == "locked"
        else f"fixed threshold {p.num('threshold_rule')} for every model"
    )
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_esc(r['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(r['title'])}</h1>",
        f"<p class='meta'>her2mri {_esc(version)} &middot; generated {_esc(generated)} &middot; split "
        f"<b>{_esc(r['split'])}</b> &middot; {p.num('cohort', 'n', kind='int')} patients "
        f"({p.num('cohort', 'n_pos', kind='int')} HER2-positive, {p.num('cohort', 'n_neg', kind='int')} "
        f"HER2-negative) &middot; {len(r['models'])} model(s) &middot; confidence level "
        f"{p.num('conf_level', kind='f2')}<br>Threshold: {thr_rule}.</p>",
    ]
    if r["warnings"]:
        items = "".join(f"<li>{_esc(w)}</li>" for w in r["warnings"])
        out.append(f"<div class='warn'><b>Warnings</b><ul>{items}</ul></div>")
    out += ["<h2>Inputs</h2>", _inputs_table(p), "<h2>Metrics</h2>", _metrics_tables(p)]
    out += [
        "<h2>ROC curves and calibration</h2><div class='figs'>",
        f"<figure>{_img(figures['roc'], 'ROC curves')}<figcaption>ROC curves; shaded: pointwise "
        "bootstrap band of the sensitivity at fixed false-positive rates.</figcaption></figure>",
        f"<figure>{_img(figures['calibration'], 'calibration plot')}<figcaption>Calibration curve "
        "(marker area ~ patients per bin) and the distribution of predicted probabilities."
        "</figcaption></figure></div>",
        "<h2>Model comparison (DeLong)</h2>",
        _delong_section(p),
        "<h2>Decision curves and confusion matrices</h2><div class='figs'>",
        f"<figure>{_img(figures['decision_curve'], 'decision curves')}<figcaption>Net benefit against the "
        "threshold probability; a model helps where its curve lies above treat-all and treat-none."
        "</figcaption></figure>",
        f"<figure>{_img(figures['confusion'], 'confusion matrices')}<figcaption>Confusion matrices at each "
        "model's threshold.</figcaption>" + _confusion_table(p) + "</figure></div>",
    ]
    if r.get("has_sites"):
        out += ["<h2>Per site</h2>", _site_section(p)]
    out.append(validation)
    if r.get("gradcam"):
        out += [
            "<h2>Grad-CAM</h2><p class='note'>Grad-CAM of the HER2-positive logit on the fused RGB slice "
            "(R = pre, G = early, B = late contrast); green: tumour contour. One map per head for "
            "THDA-ResNet.</p>",
            _gallery(p, gradcam_files or {}),
        ]
    out.append(
        "<p class='note'>Every number on this page is in <code>report.json</code> beside this file (the page "
        "shows them rounded); figures are also saved there as PNG.</p></body></html>"
    )
    return "\n".join(out)
