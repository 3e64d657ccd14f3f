"""Figures of the validation sections, drawn from the report dict only.

Internal vs external side by side (ROC and calibration of every source on its own patients) and the
calibration before/after recalibration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from her2mri.report.figures import _color, _fmt

__all__ = ["VALIDATION_FIGURE_FILES", "cohorts_figure", "recalibration_figure", "save_validation_figures"]

VALIDATION_FIGURE_FILES: dict[str, str] = {"cohorts": "cohorts.png", "recalibration": "recalibration.png"}
_STYLES = ("-", "--", ":", "-.")


def cohorts_figure(report: dict[str, Any]) -> Figure:
    """ROC curves (left) and calibration curves (right) of every source, each on its own cohort's patients.

    Colour: the model; line style: the cohort (solid internal, dashed external...).
    """
    block = report["cohorts"]
    cohort_names = [c["name"] for c in block["cohorts"]]
    models = list(dict.fromkeys(v["model"] for v in block["sources"].values()))
    fig = Figure(figsize=(12.0, 5.4))
    ax_roc, ax_cal = fig.subplots(1, 2)
    for label, src in block["sources"].items():
        c = _color(models.index(src["model"]))
        ls = _STYLES[cohort_names.index(src["cohort"]) % len(_STYLES)]
        mt = src["metrics"]
        ax_roc.plot(
            src["roc"]["fpr"], src["roc"]["tpr"], color=c, ls=ls, lw=2,
            label=f"{label} (n={mt['n']}): AUC {_fmt(mt['auroc'])} ({_fmt(mt['auroc_ci_low'])}-"
            f"{_fmt(mt['auroc_ci_high'])})",
        )  # fmt: skip
        curve = src.get("calibration_curve")
        if curve:
            ax_cal.plot(
                curve["mean_predicted"], curve["observed"], color=c, ls=ls, lw=1.5, marker="o", ms=4,
                label=f"{label}: slope {_fmt(mt['calibration_slope'])}, ECE {_fmt(mt.get('ece'))}",
            )  # fmt: skip
    ax_roc.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1)
    ax_cal.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect calibration")
    for ax in (ax_roc, ax_cal):
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7, framealpha=0.9)
    ax_roc.set_xlabel("1 - specificity")
    ax_roc.set_ylabel("Sensitivity")
    ax_roc.set_title("ROC per cohort (DeLong 95% CI)", fontsize=9)
    ax_cal.set_xlabel("Predicted probability of HER2-positive")
    ax_cal.set_ylabel("Observed fraction HER2-positive")
    ax_cal.set_title("Calibration per cohort (10 equal-count bins)", fontsize=9)
    fig.tight_layout()
    return fig


def recalibration_figure(report: dict[str, Any]) -> Figure:
    """Calibration curve before (dashed) and after (solid) recalibration, one panel per recalibrated run."""
    recal = report["recalibration"]
    names = list(recal)
    fig = Figure(figsize=(5.0 * len(names), 4.6))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        r = recal[name]
        for tag, ls, c in (("before", "--", "#d62728"), ("after", "-", "#1f77b4")):
            b = r[tag]
            if b.get("curve"):
                ax.plot(
                    b["curve"]["mean_predicted"], b["curve"]["observed"], ls=ls, color=c, marker="o", ms=4,
                    label=f"{tag}: ECE {_fmt(b['ece'])}, Brier {_fmt(b['brier'])}, slope {_fmt(b['slope'])}",
                )  # fmt: skip
        ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
        ax.set_title(f"{name}: {r.get('method') or 'no'} recalibration (n={r['n']})", fontsize=9)
        ax.set_xlabel("Predicted probability")
        ax.set_ylabel("Observed fraction HER2-positive")
    fig.tight_layout()
    return fig


def save_validation_figures(report: dict[str, Any], out_dir: str | Path, dpi: int = 110) -> dict[str, Path]:
    """Draw the validation figures that apply (cohorts: >= 2 cohorts; recalibration: any recalibrated run)."""
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    if report.get("cohorts"):
        paths["cohorts"] = out / VALIDATION_FIGURE_FILES["cohorts"]
        cohorts_figure(report).savefig(paths["cohorts"], dpi=dpi)
    if report.get("recalibration"):
        paths["recalibration"] = out / VALIDATION_FIGURE_FILES["recalibration"]
        recalibration_figure(report).savefig(paths["recalibration"], dpi=dpi)
    return paths
