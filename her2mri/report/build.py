"""Assemble a report folder: ``report.json``, ``report.html`` and the PNGs beside them."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from her2mri.report.collect import ModelSource, load_sources
from her2mri.report.compute import DEFAULT_N_BOOT, compute_report, json_safe
from her2mri.report.figures import save_figures
from her2mri.report.html import render_html

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

    Returns:
        The :class:`ReportPaths`.
    """
    from her2mri import __version__

    if isinstance(max_gradcam, bool) or int(max_gradcam) != max_gradcam or max_gradcam < 0:
        raise ValueError(f"max_gradcam must be an integer >= 0; got {max_gradcam!r}.")
    models = load_sources(list(sources), split=split, val_split=val_split)
    report = compute_report(
        models,
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
    gradcam, gradcam_files = _gradcam(models, out, int(max_gradcam))
    if gradcam:
        report["gradcam"] = json_safe(gradcam)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report["generated"] = generated
    report["her2mri_version"] = __version__
    json_path = out / "report.json"
    json_path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    figures = save_figures(report, out)
    html_path = out / "report.html"
    html_path.write_text(
        render_html(report, figures, gradcam_files, generated, __version__), encoding="utf-8"
    )
    return ReportPaths(html_path, json_path, figures, gradcam_files)
