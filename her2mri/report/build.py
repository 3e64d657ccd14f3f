"""Assemble a report folder: ``report.json``, ``report.html`` and the PNGs beside them."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from her2mri.report.checklist import build_checklist
from her2mri.report.collect import ModelSource
from her2mri.report.compute import compute_report
from her2mri.report.figures import save_figures
from her2mri.report.figures_validation import save_validation_figures
from her2mri.report.html import render_html
from her2mri.report.html_validation import render_validation
from her2mri.report.validation import (
    DEFAULT_AGE_BANDS,
    DEFAULT_SITE_PROBE_WARN,
    cohort_section,
    load_cohort_sources,
    read_clinical_csv,
    recalibration_section,
    site_probe_section,
    subgroup_section,
    table1_section,
)
from her2mri.report.validation import cohort_names as validation_cohort_names
from her2mri.stats.patient_metrics import DEFAULT_N_BOOT, json_safe

__all__ = ["DEFAULT_MAX_GRADCAM", "ReportPaths", "build_report"]

DEFAULT_MAX_GRADCAM = 12


@dataclass(frozen=True)
class ReportPaths:
    """Files written by :func:`build_report`."""

    html: Path
    json: Path
    figures: dict[str, Path]
    gradcam: dict[str, list[Path]] = field(default_factory=dict)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def _gradcam(
    sources: list[ModelSource], out: Path, limit: int
) -> tuple[dict[str, list[dict]], dict[str, list[Path]]]:
    """Copy up to ``limit`` Grad-CAM PNGs per run into ``out/gradcam/<model>/`` and describe them."""
    entries: dict[str, list[dict[str, Any]]] = {}
    files: dict[str, list[Path]] = {}
    for s in sources:
        if s.gradcam_dir is None or limit <= 0:
            continue
        info: dict[str, dict[str, Any]] = {}
        index = s.gradcam_dir / "index.json"
        if index.is_file():
            try:
                info = {e["file"]: e for e in json.loads(index.read_text(encoding="utf-8")) if "file" in e}
            except (json.JSONDecodeError, TypeError, KeyError):
                info = {}
        pngs = sorted(s.gradcam_dir.glob("*.png"))[:limit]
        dest = out / "gradcam" / _safe(s.name)
        dest.mkdir(parents=True, exist_ok=True)
        entries[s.name], files[s.name] = [], []
        for png in pngs:
            copied = dest / png.name
            shutil.copyfile(png, copied)
            meta = info.get(png.name, {})
            entries[s.name].append(
                {
                    "file": png.name,
                    "pid": meta.get("pid"),
                    "slice_idx": meta.get("slice_idx"),
                    "label": meta.get("label"),
                    "prob": meta.get("prob"),
                }
            )
            files[s.name].append(copied)
    return entries, files


def _validation_sections(
    report: dict[str, Any],
    models: list[ModelSource],
    groups: list[list[int]],
    names: list[str],
    out: Path,
    *,
    threshold: str | float,
    n_boot: int,
    seed: int,
    conf_level: float,
    clinical: str | Path | None,
    features: str | Path | None,
    age_col: str,
    age_bands: tuple[float, ...],
    subgroups: tuple[str, ...],
    site_probe_warn: float,
) -> None:
    """Add the cohort, recalibration, Table 1, subgroup and site-probe sections to ``report`` (in place)."""
    clin = read_clinical_csv(clinical) if clinical is not None else None
    feats = read_clinical_csv(features) if features is not None else None
    if len(groups) > 1:
        report["cohorts"] = cohort_section(
            models, groups, names, threshold=threshold, n_boot=n_boot, seed=seed, conf_level=conf_level
        )
        labelled = {f"{names[c]}: {models[i].name}": models[i] for c, g in enumerate(groups) for i in g}
        cohort_of = {f"{names[c]}: {models[i].name}": names[c] for c, g in enumerate(groups) for i in g}
        thresholds = {k: v["metrics"]["threshold"] for k, v in report["cohorts"]["sources"].items()}
        report["warnings"].append(
            f"{len(groups)} cohorts on disjoint patients ({', '.join(names)}): the paired sections above "
            f"use the {names[0]} cohort; all cohorts are side by side under 'Internal vs external "
            f"validation'."
        )
    else:
        labelled = {s.name: s for s in models}
        cohort_of = {s.name: names[0] for s in models}
        thresholds = {k: v["metrics"]["threshold"] for k, v in report["models"].items()}
    recal = recalibration_section(labelled, conf_level)
    if recal:
        report["recalibration"] = recal
    report["table1"] = table1_section(models, groups, names, clin)
    pd.DataFrame(report["table1"]["rows"]).to_csv(out / "table1.csv", index=False)
    sub = subgroup_section(
        labelled,
        thresholds,
        clin,
        age_col=age_col,
        age_edges=age_bands,
        columns=subgroups,
        conf_level=conf_level,
        cohort_of=cohort_of,
    )
    if any(sub["sources"].values()):
        report["subgroups"] = sub
        flat = [
            {"source": k, **{c: v for c, v in r.items() if c != "notes"}}
            for k, rows in sub["sources"].items()
            for r in rows
        ]
        pd.DataFrame(flat).to_csv(out / "subgroups.csv", index=False)
    probe = site_probe_section(labelled, feats, site_probe_warn, seed)
    if probe["sources"]:
        report["site_probe"] = probe
        report["site_probe_warn_at"] = float(site_probe_warn)
        for label, r in probe["sources"].items():
            if r["warn"]:
                report["warnings"].append(
                    f"{label}: the site is predicted from the model's outputs with AUC "
                    f"{r['auc_outputs']:.3f} (label alone: {r['auc_label_only']:.3f}): possible site "
                    f"shortcut (see Site-shortcut probe)."
                )


def build_report(
    sources: list[str | Path],
    out_dir: str | Path,
    *,
    split: str = "test",
    val_split: str | None = "val",
    threshold: str | float = "locked",
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    conf_level: float = 0.95,
    title: str = "HER2 evaluation report",
    max_gradcam: int = DEFAULT_MAX_GRADCAM,
    clinical: str | Path | None = None,
    features: str | Path | None = None,
    age_col: str = "age",
    age_bands: tuple[float, ...] = DEFAULT_AGE_BANDS,
    subgroups: tuple[str, ...] = (),
    cohort_names: tuple[str, ...] | None = None,
    cohorts: tuple[str, ...] | None = None,
    site_probe_warn: float = DEFAULT_SITE_PROBE_WARN,
) -> ReportPaths:
    """Write ``report.json``, ``report.html`` and the figure PNGs for one or more models.

    Args:
        sources: run directories or predictions CSVs, each optionally ``NAME=PATH``.
        out_dir: output folder (created).
        split: evaluated split of run directories (``predictions/{split}_patients.csv``).
        val_split: split whose predictions choose the Youden threshold (``None``: never).
        threshold: ``"locked"`` (default: the threshold stored in each run's ``metrics.json``, 0.5 with a
            warning when none is), ``"youden"`` (chosen on ``val_split``) or a fixed probability in [0, 1].
        n_boot: bootstrap replicates (AUC CI, ROC band).
        seed: bootstrap seed.
        conf_level: confidence level of every interval.
        title: report title.
        max_gradcam: at most this many Grad-CAM PNGs per run in the gallery (0: no gallery).
        clinical: CSV of clinical variables (``pid`` + columns) for Table 1 and subgroups, optional.
        features: CSV of per-patient numeric features (``pid`` + columns) added to the site-shortcut probe.
        age_col: the clinical column of age in years (subgroups by age band).
        age_bands: age band edges in years.
        subgroups: further clinical columns whose levels are subgroups.
        cohort_names: one name per cohort (sources on disjoint patients), in order of first appearance;
            default ``internal``, ``external``, ``external 2``...
        cohorts: one cohort label per source, in order (default: cohorts found from shared patient ids);
            the labels are also the cohort names.
        site_probe_warn: site-probe AUC at which the report warns of a site shortcut.

    Returns:
        The :class:`ReportPaths`.
    """
    from her2mri import __version__

    if isinstance(max_gradcam, bool) or int(max_gradcam) != max_gradcam or max_gradcam < 0:
        raise ValueError(f"max_gradcam must be an integer >= 0; got {max_gradcam!r}.")
    models, groups = load_cohort_sources(list(sources), split=split, val_split=val_split, cohort_of=cohorts)
    if cohorts is not None and cohort_names is None:
        cohort_names = tuple(dict.fromkeys(cohorts))
    names = validation_cohort_names(len(groups), cohort_names)
    first = [models[i] for i in groups[0]]
    report = compute_report(
        first,
        threshold=threshold,
        n_boot=n_boot,
        seed=seed,
        conf_level=conf_level,
        split=split,
        val_split=val_split,
        title=title,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _validation_sections(
        report, models, groups, names, out,
        threshold=threshold, n_boot=n_boot, seed=seed, conf_level=conf_level, clinical=clinical,
        features=features, age_col=age_col, age_bands=age_bands, subgroups=subgroups,
        site_probe_warn=site_probe_warn,
    )  # fmt: skip
    gradcam, gradcam_files = _gradcam(models, out, int(max_gradcam))
    if gradcam:
        report["gradcam"] = json_safe(gradcam)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report["generated"] = generated
    report["her2mri_version"] = __version__
    report["checklist"] = build_checklist(report)
    json_path = out / "report.json"
    json_path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    figures = save_figures(report, out)
    figures.update(save_validation_figures(report, out))
    html_path = out / "report.html"
    html_path.write_text(
        render_html(
            report,
            figures,
            gradcam_files,
            generated,
            __version__,
            validation=render_validation(report, figures),
        ),
        encoding="utf-8",
    )
    return ReportPaths(html_path, json_path, figures, gradcam_files)
