"""Report figures drawn from the numbers of ``report.json`` (matplotlib object API, Agg canvas, headless).

Every figure is drawn from the report dict only (never recomputed), so the pictures show exactly the numbers
of ``report.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from her2mri import stats

__all__ = [
    "FIGURE_FILES",
    "calibration_figure",
    "confusion_figure",
    "decision_curve_figure",
    "roc_figure",
    "save_figures",
]

#: figure key -> PNG file name written beside report.html
FIGURE_FILES: dict[str, str] = {
    "roc": "roc.png",
    "calibration": "calibration.png",
    "decision_curve": "decision_curve.png",
    "confusion": "confusion.png",
}
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _color(i: int) -> str:
    return _COLORS[i % len(_COLORS)]


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def roc_figure(report: dict[str, Any]) -> Figure:
    """ROC curve of every model with its bootstrap band (shaded) and the chance diagonal."""
    fig = Figure(figsize=(6.0, 5.4))
    ax = fig.add_subplot(1, 1, 1)
    level = round(100 * report["conf_level"])
    for i, (name, m) in enumerate(report["models"].items()):
        c = _color(i)
        mt = m["metrics"]
        label = f"{name}: AUC {_fmt(mt['auroc'])} ({_fmt(mt['auroc_ci_low'])}-{_fmt(mt['auroc_ci_high'])})"
        band = m.get("roc_band")
        if band:
            ax.fill_between(
                band["fpr"], band["tpr_low"], band["tpr_high"], color=c, alpha=0.15, step="post", lw=0
            )
        ax.plot(m["roc"]["fpr"], m["roc"]["tpr"], color=c, lw=2, label=label)
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("Sensitivity (true-positive rate)")
    ax.set_title(
        f"ROC ({report['cohort']['n']} patients); bands: {level}% bootstrap, DeLong CI in legend", fontsize=9
    )
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def calibration_figure(report: dict[str, Any]) -> Figure:
    """Binned calibration curve per model (marker area ~ patients per bin) and a histogram of predictions."""
    fig = Figure(figsize=(6.0, 6.2))
    gs = fig.add_gridspec(2, 1, height_ratios=(4, 1), hspace=0.08)
    ax = fig.add_subplot(gs[0])
    hx = fig.add_subplot(gs[1], sharex=ax)
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect calibration")
    bins = np.linspace(0, 1, 21)
    for i, (name, m) in enumerate(report["models"].items()):
        c = _color(i)
        mt = m["metrics"]
        curve = m.get("calibration_curve")
        label = (
            f"{name}: slope {_fmt(mt['calibration_slope'])}, intercept {_fmt(mt['calibration_intercept'])}"
        )
        if curve:
            size = 12 + 60 * np.asarray(curve["count"]) / max(curve["count"])
            ax.plot(curve["mean_predicted"], curve["observed"], color=c, lw=1.5, label=label)
            ax.scatter(curve["mean_predicted"], curve["observed"], s=size, color=c, zorder=3)
        hx.hist(report["patients"]["probs"][name], bins=bins, histtype="step", color=c, lw=1.5)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_ylabel("Observed fraction HER2-positive")
    ax.set_title("Calibration (10 equal-count bins of predicted risk)", fontsize=9)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    ax.grid(alpha=0.3)
    ax.tick_params(labelbottom=False)
    hx.set_xlabel("Predicted probability of HER2-positive")
    hx.set_ylabel("Patients")
    hx.grid(alpha=0.3)
    fig.subplots_adjust(left=0.12, right=0.97, top=0.94, bottom=0.09)
    return fig


def decision_curve_figure(report: dict[str, Any]) -> Figure:
    """Net benefit vs threshold probability (treat-all and treat-none included), via her2mri.stats."""
    df = pd.DataFrame(report["decision_curve"])
    df["net_benefit"] = df["net_benefit"].astype(float)
    fig = Figure(figsize=(6.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_prop_cycle(color=list(_COLORS))  # the same colour per model as in the ROC and calibration plots
    stats.plot_decision_curve(df, ax=ax, title="Decision curves")
    fig.tight_layout()
    return fig


def confusion_figure(report: dict[str, Any]) -> Figure:
    """Confusion matrix of every model at its threshold (rows: truth, columns: prediction)."""
    names = list(report["models"])
    fig = Figure(figsize=(3.3 * len(names), 3.4))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        m = report["models"][name]
        cm = np.asarray(m["confusion_matrix"], dtype=float)
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(cm.max(), 1))
        for r in range(2):
            for c in range(2):
                color = "white" if cm[r, c] > cm.max() / 2 else "black"
                ax.text(c, r, f"{int(cm[r, c])}", ha="center", va="center", color=color, fontsize=13)
        ax.set_xticks([0, 1], ["pred. HER2-", "pred. HER2+"], fontsize=8)
        ax.set_yticks([0, 1], ["HER2-", "HER2+"], fontsize=8)
        ax.set_xlabel("prediction", fontsize=8)
        ax.set_ylabel("truth", fontsize=8)
        thr = m["metrics"]["threshold"]
        ax.set_title(f"{name}\nthreshold {_fmt(thr)} ({m['threshold_source']})", fontsize=9)
    fig.tight_layout()
    return fig


def save_figures(report: dict[str, Any], out_dir: str | Path, dpi: int = 110) -> dict[str, Path]:
    """Draw every report figure and save it as PNG in ``out_dir``.

    Args:
        report: the dict of :func:`her2mri.report.compute.compute_report`.
        out_dir: folder (created).
        dpi: PNG resolution.

    Returns:
        Figure key (``roc``, ``calibration``, ``decision_curve``, ``confusion``) -> PNG path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    makers = {
        "roc": roc_figure,
        "calibration": calibration_figure,
        "decision_curve": decision_curve_figure,
        "confusion": confusion_figure,
    }
    paths: dict[str, Path] = {}
    for key, make in makers.items():
        fig = make(report)
        path = out / FIGURE_FILES[key]
        fig.savefig(path, dpi=dpi)
        paths[key] = path
    return paths
