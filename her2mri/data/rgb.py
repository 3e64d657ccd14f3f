"""Reader for pre-fused RGB PNG slices (R = pre, G = early, B = late) with a slice index CSV.

Layout of ``../shared/data/real/fedsubtype_ispy_rgb``: ``subset_index.csv`` has one row per slice with
``filename`` (relative to the image folder, e.g. ``<PID>/slice_007.png``), ``pid``, ``her2``, ``split``,
``slice_index``, ``cohort``, the tumour box ``bbox_x/y/w/h`` (224-px coordinates) and spacing columns.
One :class:`CaseRecord` per patient holds its slice files in slice order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from her2mri.data.errors import DataError
from her2mri.data.records import CaseRecord, parse_binary_label, read_csv_checked

DEFAULT_SPLIT_MAP: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "0": "train",
    "1": "test",
    "2": "val",
}
IMAGE_DIR_CANDIDATES: tuple[str, ...] = (".", "images", "deployment/data/global/images")
BBOX_COLS: tuple[str, str, str, str] = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v.strip() == "")


def find_image_dir(index_csv: Path, first: str) -> Path:
    """Folder the ``filename`` column is relative to: next to the CSV, ``images/`` or the deployment path.

    Raises:
        DataError: none of the candidates holds ``first``.
    """
    for cand in IMAGE_DIR_CANDIDATES:
        d = (index_csv.parent / cand).resolve()
        if (d / first).is_file():
            return d
    tried = ", ".join(str(index_csv.parent / c / first) for c in IMAGE_DIR_CANDIDATES)
    raise DataError(f"{index_csv}: slice image {first!r} not found (tried {tried}); pass image_dir")


def read_rgb_slices(
    index_csv: str | Path,
    *,
    image_dir: str | Path | None = None,
    label_col: str = "her2",
    pid_col: str = "pid",
    file_col: str = "filename",
    slice_col: str = "slice_index",
    split_col: str | None = "split",
    split_map: Mapping[str, str] | None = None,
    site_col: str | None = "cohort",
    require_label: bool = True,
    check_files: bool = True,
) -> list[CaseRecord]:
    """Read a slice index CSV of pre-fused RGB slices into one record per patient.

    Args:
        index_csv: the CSV (e.g. ``subset_index.csv``).
        image_dir: folder the file column is relative to; None looks next to the CSV, in ``images/`` and in
            ``deployment/data/global/images/``.
        label_col: binary label column (``her2``).
        pid_col: patient id column.
        file_col: image path column.
        slice_col: slice index column.
        split_col: split column, or None for no split.
        split_map: raw split value -> ``train``/``val``/``test``; default :data:`DEFAULT_SPLIT_MAP`
            (``validation``/``valid`` -> val, 0/1/2 as BreastDCEDL). Unmapped values are a DataError.
        site_col: column used as ``site`` (default ``cohort``: spy1/spy2), or None.
        require_label: empty labels are a DataError (default) or ``None``.
        check_files: check that every image file exists (cheap ``stat``).

    Returns:
        One :class:`CaseRecord` per patient (``dataset="rgb"``), in order of first appearance; per-slice boxes
        ``(x, y, w, h)`` are in ``extra["rgb_bboxes"]`` when the CSV has them.

    Raises:
        DataError: naming the CSV or file: missing column, missing image, a pid with two labels or in two
            splits, a bad label or split value, a duplicate slice.
    """
    csv = Path(index_csv)
    df = read_csv_checked(csv, "slice index CSV", {pid_col: str, file_col: str})
    required = [pid_col, file_col, slice_col] + ([label_col] if require_label else [])
    if split_col is not None:
        required.append(split_col)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{csv}: missing column(s) {missing}; columns present: {list(df.columns)}")
    if df.empty:
        raise DataError(f"{csv}: no rows")
    smap = {str(k).lower(): v for k, v in (split_map or DEFAULT_SPLIT_MAP).items()}
    bad_targets = sorted({v for v in smap.values() if v not in ("train", "val", "test")})
    if bad_targets:
        raise ValueError(f"split_map values {bad_targets} must be 'train', 'val' or 'test'")
    root = Path(image_dir) if image_dir is not None else find_image_dir(csv, str(df[file_col].iloc[0]))
    has_bbox = all(c in df.columns for c in BBOX_COLS)
    has_spacing = all(c in df.columns for c in ("slice_thick", "mm_per_px"))

    records: dict[str, CaseRecord] = {}
    slices: dict[str, list[tuple[int, Path, tuple[int, ...] | None]]] = {}
    for _, row in df.iterrows():
        pid = str(row[pid_col]).strip()
        label = parse_binary_label(
            row[label_col] if label_col in df.columns else None, pid, csv, required=require_label
        )
        split = None
        if split_col is not None and not _empty(row[split_col]):
            raw = str(row[split_col]).strip().lower()
            raw = raw[:-2] if raw.endswith(".0") else raw
            if raw not in smap:
                raise DataError(
                    f"{csv}: pid {pid}: split {row[split_col]!r} is not in split_map {sorted(smap)}"
                )
            split = smap[raw]
        path = root / str(row[file_col])
        if check_files and not path.is_file():
            raise DataError(f"{path}: slice image not found (row of pid {pid} in {csv})")
        try:
            sidx = int(row[slice_col])
        except (TypeError, ValueError):
            raise DataError(f"{csv}: pid {pid}: slice index {row[slice_col]!r} is not an integer") from None
        box = (
            tuple(int(row[c]) for c in BBOX_COLS)
            if has_bbox and not any(_empty(row[c]) for c in BBOX_COLS)
            else None
        )
        rec = records.get(pid)
        if rec is None:
            site = (
                None
                if site_col is None or site_col not in df.columns or _empty(row[site_col])
                else str(row[site_col])
            )
            spacing = None
            if has_spacing and not _empty(row["slice_thick"]) and not _empty(row["mm_per_px"]):
                spacing = (float(row["slice_thick"]), float(row["mm_per_px"]), float(row["mm_per_px"]))
            extra = {"index_csv": str(csv)}
            for c in (
                "cohort",
                "label_name",
                "tum_vol",
                "xy_spacing",
                "phase_pre",
                "phase_early",
                "phase_late",
            ):
                if c in df.columns and not _empty(row[c]):
                    extra[c] = row[c].item() if hasattr(row[c], "item") else row[c]
            records[pid] = CaseRecord(
                pid=pid, label=label, split=split, spacing=spacing, site=site, dataset="rgb", extra=extra
            )
            slices[pid] = []
        else:
            if rec.split != split:
                raise DataError(f"{csv}: pid {pid} is in two splits ({rec.split} and {split})")
            if rec.label != label:
                raise DataError(f"{csv}: pid {pid} has two labels ({rec.label} and {label})")
        slices[pid].append((sidx, path, box))
    for pid, rec in records.items():
        items = sorted(slices[pid], key=lambda t: t[0])
        idx = [t[0] for t in items]
        if len(set(idx)) != len(idx):
            raise DataError(f"{csv}: pid {pid} has duplicate slice index values {idx}")
        rec.rgb_paths = tuple(t[1] for t in items)
        rec.rgb_slice_index = tuple(idx)
        if has_bbox:
            rec.extra["rgb_bboxes"] = tuple(t[2] for t in items)
    return list(records.values())
