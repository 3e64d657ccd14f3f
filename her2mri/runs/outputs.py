"""Run outputs: ``metrics.json`` and ``predictions/{stage}_{patients,slices}.csv`` (ARCHITECTURE.md §6).

Probabilities are written with full float precision (``repr``), so metrics recomputed from the CSV files equal
the logged ones.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from her2mri.io_utils import atomic_write_text, clean_stale_temps
from her2mri.training.aggregation import PatientPredictions, SlicePredictions

PATIENT_COLUMNS: tuple[str, ...] = ("pid", "label", "prob", "n_slices")
SLICE_COLUMNS: tuple[str, ...] = ("pid", "slice_idx", "label", "prob")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # 0-d tensors / arrays
        return _json_safe(obj.item())
    return str(obj)


def write_metrics_json(
    path: str | Path,
    metrics: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    status: str = "ok",
    **extra: Any,
) -> Path:
    """Write ``{"metrics": ..., "config": ..., "status": ..., **extra}`` as JSON.

    Args:
        path: the file to write (parents are created).
        metrics: ``stage/name -> value``; NaN and infinities become ``null``.
        config: the resolved run config (plain data).
        status: ``ok`` or ``failed``.
        **extra: further top-level keys (e.g. ``error``, ``wall_time_s``, ``ckpt_path``).

    Returns:
        The path written (atomically: a temporary sibling, fsync, rename; never half-written).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"metrics": _json_safe(dict(sorted(metrics.items()))), "config": _json_safe(config or {})}
    payload["status"] = status
    payload.update(_json_safe(extra))
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return path


def _csv_text(rows: list[list[Any]]) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def write_predictions(
    out_dir: str | Path,
    stage: str,
    slices: SlicePredictions,
    patients: PatientPredictions,
    sites: Mapping[str, str | None] | None = None,
) -> tuple[Path, Path]:
    """Write ``{out_dir}/predictions/{stage}_patients.csv`` and ``{stage}_slices.csv``.

    Args:
        out_dir: the run directory.
        stage: stage name (``val``, ``test``, ``all``...).
        slices: sorted per-slice predictions.
        patients: per-patient predictions.
        sites: optional ``pid -> site``; adds a ``site`` column to the patient file when any is known.

    Returns:
        The paths of the patient and slice files.
    """
    pred_dir = Path(out_dir) / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    p_path = pred_dir / f"{stage}_patients.csv"
    s_path = pred_dir / f"{stage}_slices.csv"
    with_site = bool(sites) and any(sites.get(p) for p in patients.pids)  # type: ignore[union-attr]
    patient_rows: list[list[Any]] = [[*PATIENT_COLUMNS, *(["site"] if with_site else [])]]
    for i, pid in enumerate(patients.pids):
        row = [pid, int(patients.labels[i]), repr(float(patients.probs[i])), int(patients.n_slices[i])]
        if with_site:
            row.append(sites.get(pid) or "")  # type: ignore[union-attr]
        patient_rows.append(row)
    slice_rows: list[list[Any]] = [list(SLICE_COLUMNS)]
    for i, pid in enumerate(slices.pids):
        prob = repr(float(slices.probs[i]))
        slice_rows.append([pid, int(slices.slice_idx[i]), int(slices.labels[i]), prob])
    # slices first, patients last: a complete patient file means both were written
    clean_stale_temps(pred_dir)
    atomic_write_text(s_path, _csv_text(slice_rows))
    atomic_write_text(p_path, _csv_text(patient_rows))
    return p_path, s_path


def read_patient_predictions(path: str | Path) -> PatientPredictions:
    """Read a ``*_patients.csv`` written by :func:`write_predictions`."""
    pids, labels, probs, counts = [], [], [], []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            pids.append(row["pid"])
            labels.append(int(row["label"]))
            probs.append(float(row["prob"]))
            counts.append(int(row["n_slices"]))
    return PatientPredictions(
        tuple(pids),
        np.asarray(labels, dtype=np.int64),
        np.asarray(probs, dtype=np.float64),
        np.asarray(counts, dtype=np.int64),
    )
