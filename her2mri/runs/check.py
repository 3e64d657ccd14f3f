"""``check(cfg)``: the body of ``her2mri-check`` (the data options of ``her2mri-train``, no training).

The config is ``her2mri-train``'s (``conf/check.yaml`` includes ``train.yaml``), so ``data=``, ``data.*`` and
``preprocess.*`` mean exactly what they mean for training. The datamodule and the preprocessing of the run are
built as :func:`her2mri.runs.train.train` builds them, then :func:`her2mri.data.check.check_cohort` reads and
validates every case. Writes ``check_report.json`` and ``problems.csv`` into the run directory.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from her2mri.data.build import build_datamodule, preprocess_from_cfg
from her2mri.data.check import CheckReport, check_cohort, format_report
from her2mri.io_utils import atomic_write_text

log = logging.getLogger(__name__)


def _num_views(model_cfg: DictConfig) -> tuple[int, str]:
    """The model's number of views (for ``preprocess.views: auto``), built without weights."""
    from her2mri.models import create_model

    spec = OmegaConf.to_container(model_cfg, resolve=True)
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"model config must be a mapping with a 'name' key, got {spec!r}.")
    kwargs = {k: v for k, v in spec.items() if k not in ("name", "pretrained", "weights_path")}
    model = create_model(spec["name"], pretrained=False, **kwargs)
    return int(getattr(model, "num_views", 1)), str(spec["name"])


def check(cfg: DictConfig) -> tuple[CheckReport, int]:
    """Validate the cohort of a composed ``check`` (= ``train``) config.

    Args:
        cfg: the composed config (``data``, ``preprocess``, ``model``, ``paths``; ``strict``).

    Returns:
        ``(report, exit_code)``: 0 when no error (and, with ``strict=true``, no warning), else 1.
    """
    num_views, model_name = _num_views(cfg.model)
    pre = preprocess_from_cfg(OmegaConf.to_container(cfg.preprocess, resolve=True), num_views, model_name)
    cache_dir = cfg.paths.get("cache_dir") if cfg.get("paths") else None
    dm = build_datamodule(cfg.data, pre.to_dict(), cache_dir)
    report = check_cohort(
        dm,
        pre,
        require_label=bool(cfg.data.get("require_label", True)),
        progress=bool(cfg.data.get("progress")),
    )
    text = format_report(report)
    print(text, flush=True)  # noqa: T201 - the report is the command's output
    out = cfg.paths.get("output_dir") if cfg.get("paths") else None
    if out:
        out_dir = Path(str(out))
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "check_report.json", json.dumps(report.to_dict(), indent=2) + "\n")
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=["case", "file", "problem", "severity"])
        writer.writeheader()
        for p in report.problems:
            writer.writerow(asdict(p))
        atomic_write_text(out_dir / "problems.csv", buf.getvalue())
        print(f"wrote {out_dir / 'check_report.json'} and {out_dir / 'problems.csv'}")  # noqa: T201
    failing = report.n_errors + (report.n_warnings if cfg.get("strict", False) else 0)
    return report, int(failing > 0)


def summary_line(report: CheckReport) -> str:
    """One line for the end of the output."""
    status = "clean" if not report.problems else f"{report.n_errors} error(s), {report.n_warnings} warning(s)"
    return f"her2mri-check: {report.n_cases} case(s): {status}"


def as_dict(report: CheckReport) -> dict[str, Any]:
    """JSON-ready report (alias of ``report.to_dict()``)."""
    return report.to_dict()
