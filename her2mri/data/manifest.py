"""Generic manifest CSV: any external cohort without code.

Columns (one row per case; for RGB images one row per slice):

* ``case_id`` (required), ``label`` (0/1; required unless ``require_label=False``)
* either ``pre``, ``early``, ``late`` (paths of the three phase volumes, NIfTI or NRRD) or ``rgb`` (path of a
  fused RGB image, R = pre, G = early, B = late); rows sharing a ``case_id`` are the slices of one case, with
  an optional ``slice_idx`` column (default: row order)
* optional: ``mask`` (tumour mask volume), ``split`` (train/val/test or 0/1/2 as in BreastDCEDL), ``site``,
  ``spacing_z``, ``spacing_y``, ``spacing_x`` (mm; without them the header spacing is used)

Relative paths are resolved against the folder of the CSV. Other columns go to ``CaseRecord.extra``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from her2mri.data.errors import DataError
from her2mri.data.io import check_axis_order
from her2mri.data.records import CaseRecord, parse_binary_label, read_csv_checked

PHASE_COLS: tuple[str, str, str] = ("pre", "early", "late")
SPACING_COLS: tuple[str, str, str] = ("spacing_z", "spacing_y", "spacing_x")
SPLIT_VALUES: dict[str, str] = {
    "train": "train",
    "val": "val",
    "test": "test",
    "0": "train",
    "1": "test",
    "2": "val",
}
KNOWN_COLS: frozenset[str] = frozenset(
    {"case_id", "label", "rgb", "mask", "split", "site", "slice_idx", *PHASE_COLS, *SPACING_COLS}
)


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v.strip() == "")


def _resolve(value: Any, base: Path, csv: Path, case_id: str, col: str) -> Path:
    if _empty(value):
        raise DataError(f"{csv}: case {case_id}: column '{col}' is empty")
    p = Path(str(value).strip()).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise DataError(f"{p}: file not found (column '{col}' of case {case_id} in {csv})")
    return p


def _split(value: Any, csv: Path, case_id: str) -> str | None:
    if _empty(value):
        return None
    text = str(value).strip().lower()
    if text.endswith(".0"):
        text = text[:-2]
    if text not in SPLIT_VALUES:
        raise DataError(f"{csv}: case {case_id}: split {value!r} is not train/val/test (or 0/1/2)")
    return SPLIT_VALUES[text]


def _spacing(row: pd.Series, csv: Path, case_id: str) -> tuple[float, float, float] | None:
    if not all(c in row.index for c in SPACING_COLS):
        return None
    vals = [row[c] for c in SPACING_COLS]
    if all(_empty(v) for v in vals):
        return None
    try:
        out = tuple(float(v) for v in vals)
    except (TypeError, ValueError):
        out = (float("nan"),) * 3
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise DataError(f"{csv}: case {case_id}: invalid spacing {vals} (need three positive numbers in mm)")
    return out  # type: ignore[return-value]


def read_manifest(
    csv: str | Path, *, require_label: bool = True, axis_order: str = "zyx", dataset: str = "manifest"
) -> list[CaseRecord]:
    """Read a manifest CSV into :class:`CaseRecord` objects.

    Args:
        csv: the manifest file.
        require_label: an empty label is a DataError (default); else ``label=None`` (unlabelled cohorts).
        axis_order: axes of the stored volumes (``"zyx"`` as BreastDCEDL, ``"xyz"`` for most other tools).
        dataset: value of ``CaseRecord.dataset``.

    Returns:
        One record per case, in order of first appearance.

    Raises:
        DataError: naming the file: unreadable CSV, missing column, missing file, bad label or split,
            duplicate case (phase manifests), a case in two splits or with two labels (RGB manifests).
    """
    check_axis_order(axis_order)
    csv = Path(csv)
    df = read_csv_checked(csv, "manifest CSV", {"case_id": str})
    cols = set(df.columns)
    has_phases, has_rgb = set(PHASE_COLS) <= cols, "rgb" in cols
    required = ["case_id"] + (["label"] if require_label else [])
    missing = [c for c in required if c not in cols]
    if not has_phases and not has_rgb:
        missing.append("pre, early, late (or rgb)")
    if missing:
        raise DataError(f"{csv}: missing manifest column(s) {missing}; columns present: {list(df.columns)}")
    if has_phases and has_rgb:
        raise DataError(
            f"{csv}: has both phase columns (pre, early, late) and 'rgb'; use one kind per manifest"
        )
    base = csv.parent
    df["case_id"] = df["case_id"].astype(str).str.strip()
    if has_phases:
        dup = sorted(set(df["case_id"][df["case_id"].duplicated()]))
        if dup:
            raise DataError(f"{csv}: duplicate case_id(s) {dup[:10]}: every case must occur once")
    records: dict[str, CaseRecord] = {}
    for i, row in df.iterrows():
        cid = row["case_id"]
        label = parse_binary_label(
            row["label"] if "label" in cols else None, cid, csv, required=require_label
        )
        split = _split(row["split"], csv, cid) if "split" in cols else None
        site = None if "site" not in cols or _empty(row["site"]) else str(row["site"])
        extra = {c: (None if _empty(row[c]) else row[c]) for c in cols - KNOWN_COLS}
        if has_phases:
            phases = tuple(_resolve(row[c], base, csv, cid, c) for c in PHASE_COLS)
            mask = None
            if "mask" in cols and not _empty(row["mask"]):
                mask = _resolve(row["mask"], base, csv, cid, "mask")
            extra["axis_order"] = axis_order
            records[cid] = CaseRecord(
                pid=cid,
                label=label,
                split=split,
                phase_paths=phases,  # type: ignore[arg-type]
                mask_path=mask,
                spacing=_spacing(row, csv, cid),
                site=site,
                dataset=dataset,
                extra=extra,
            )
            continue
        path = _resolve(row["rgb"], base, csv, cid, "rgb")
        sidx = int(row["slice_idx"]) if "slice_idx" in cols and not _empty(row["slice_idx"]) else int(i)
        rec = records.get(cid)
        if rec is None:
            records[cid] = CaseRecord(
                pid=cid, label=label, split=split, rgb_paths=(path,), rgb_slice_index=(sidx,), site=site,
                dataset=dataset, extra=extra,
            )  # fmt: skip
            continue
        if rec.split != split:
            raise DataError(f"{csv}: case {cid} is in two splits ({rec.split} and {split})")
        if rec.label != label:
            raise DataError(f"{csv}: case {cid} has two labels ({rec.label} and {label})")
        rec.rgb_paths = (*(rec.rgb_paths or ()), path)
        rec.rgb_slice_index = (*(rec.rgb_slice_index or ()), sidx)
    return list(records.values())
