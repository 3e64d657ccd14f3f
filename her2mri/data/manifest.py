"""Generic manifest CSV: any external cohort without code.

Columns (one row per case; for RGB images one row per slice):

* ``case_id`` (required), ``label`` (0/1; required unless ``require_label=False``)
* either ``pre``, ``early``, ``late`` (paths of the three phase volumes, NIfTI or NRRD) or ``rgb`` (path of a
  fused RGB image, R = pre, G = early, B = late); rows sharing a ``case_id`` are the slices of one case, with
  an optional ``slice_idx`` column (default: row order)
* or named image columns (``image_columns=("image",)``, what ``her2mri-radiomics`` reads): each a path of a
  volume or of a 2-D picture (PNG/JPG/BMP/TIFF, e.g. ultrasound), stored in ``CaseRecord.images``
* optional: ``mask`` (tumour mask volume), ``split`` (train/val/test or 0/1/2 as in BreastDCEDL), ``site``,
  ``spacing_z``, ``spacing_y``, ``spacing_x`` (mm; without them the header spacing is used; a 2-D picture
  takes ``spacing_y``, ``spacing_x`` only), ``axis_order`` (this row's axis order, overriding the reader's),
  ``mask2`` (a second reader's mask, for the ICC filter of radiomics) and ``breast_mask`` (the region
  peritumoral rings are clipped to), stored as ``extra["mask2_path"]`` / ``extra["breast_mask_path"]``
* optional tumour box instead of a mask (a case with neither cannot be located): ``bbox_z0``, ``bbox_z1``,
  ``bbox_y0``, ``bbox_y1``, ``bbox_x0``, ``bbox_x1`` and ``bbox_unit``:

  - ``voxel`` (default when ``bbox_unit`` is absent or empty): inclusive indices of the (z, y, x) array
    her2mri reads (after the canonical orientation with ``axis_order="affine"``; z = slice, y = row,
    x = column);
  - ``mm`` (or ``mm_lps``): world coordinates of two opposite corners in DICOM patient coordinates (LPS,
    what a DICOM viewer shows), x/y/z = the ``bbox_x*``/``bbox_y*``/``bbox_z*`` columns;
  - ``mm_ras``: the same in RAS (NIfTI, 3D Slicer).

  Millimetre boxes are converted with the affine of the pre-contrast file (``axis_order="affine"`` only) to
  the voxels they cover. When a case has a mask too, the mask is used.

Volumes: with ``axis_order="affine"`` (the default of ``data=manifest``) each file is brought to the canonical
orientation of :mod:`her2mri.data.geometry` from its header, and the mask is matched to the images by world
coordinates (resampled when its grid differs). Files whose headers are wrong (BreastDCEDL) need
``axis_order="zyx"``.

Relative paths are resolved against the folder of the CSV. Other columns go to ``CaseRecord.extra``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2mri.data.errors import DataError
from her2mri.data.io import AFFINE, check_axis_order, read_header_geometry
from her2mri.data.records import CaseRecord, parse_binary_label, read_csv_checked

PHASE_COLS: tuple[str, str, str] = ("pre", "early", "late")
#: optional path columns besides the images: column -> key of ``CaseRecord.extra``
EXTRA_PATH_COLS: dict[str, str] = {"mask2": "mask2_path", "breast_mask": "breast_mask_path"}
#: suffixes of 2-D pictures (an image column holding one is read as a 2-D image with a (y, x) spacing)
IMAGE_2D_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SPACING_COLS: tuple[str, str, str] = ("spacing_z", "spacing_y", "spacing_x")
BBOX_COLS: tuple[str, ...] = ("bbox_z0", "bbox_z1", "bbox_y0", "bbox_y1", "bbox_x0", "bbox_x1")
BBOX_UNITS: dict[str, str] = {
    "voxel": "voxel",
    "voxels": "voxel",
    "mm": "lps",
    "mm_lps": "lps",
    "mm_ras": "ras",
}
SPLIT_VALUES: dict[str, str] = {
    "train": "train",
    "val": "val",
    "test": "test",
    "0": "train",
    "1": "test",
    "2": "val",
}
KNOWN_COLS: frozenset[str] = frozenset(
    {
        "case_id",
        "label",
        "rgb",
        "mask",
        "split",
        "site",
        "slice_idx",
        "bbox_unit",
        "axis_order",
        *EXTRA_PATH_COLS,
        *PHASE_COLS,
        *SPACING_COLS,
        *BBOX_COLS,
    }
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


def _spacing(row: pd.Series, csv: Path, case_id: str, is_2d: bool = False) -> tuple[float, ...] | None:
    """(z, y, x) spacing of a row in mm, (y, x) for a 2-D picture, or None when the columns are empty."""
    cols = SPACING_COLS[1:] if is_2d else SPACING_COLS
    present = [c for c in SPACING_COLS if c in row.index and not _empty(row[c])]
    if not present:
        return None
    if is_2d and "spacing_z" in present:
        raise DataError(
            f"{csv}: case {case_id}: spacing_z given for a 2-D picture; leave spacing_z empty "
            "(a 2-D image has a (y, x) pixel spacing only)"
        )
    missing = [c for c in cols if c not in present]
    if missing:
        raise DataError(
            f"{csv}: case {case_id}: spacing column(s) {missing} are missing or empty; "
            f"give all of {list(cols)} or none (none: the header spacing is used)"
        )
    vals = [row[c] for c in cols]
    try:
        out = tuple(float(v) for v in vals)
    except (TypeError, ValueError):
        out = (float("nan"),) * len(cols)
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise DataError(
            f"{csv}: case {case_id}: invalid spacing {vals} (need {len(cols)} positive numbers in mm)"
        )
    return out


def _axis_order(row: pd.Series, default: str, csv: Path, case_id: str) -> str:
    """The row's ``axis_order`` column when it is set, else the reader's ``default``."""
    if "axis_order" not in row.index or _empty(row["axis_order"]):
        return default
    value = str(row["axis_order"]).strip()
    try:
        return check_axis_order(value)
    except ValueError:
        raise DataError(
            f"{csv}: case {case_id}: column 'axis_order' is {value!r}; expected 'affine' or a permutation of "
            "'zyx' (e.g. zyx, xyz), or an empty cell for the reader's default"
        ) from None


def _bbox(
    row: pd.Series, csv: Path, case_id: str, pre: Path, axis_order: str
) -> tuple[int, int, int, int, int, int] | None:
    """The (z0, z1, y0, y1, x0, x1) voxel box of a row, or None when its bbox columns are empty."""
    present = [c for c in BBOX_COLS if c in row.index]
    if not present or all(_empty(row[c]) for c in present):
        return None
    if len(present) < len(BBOX_COLS) or any(_empty(row[c]) for c in BBOX_COLS):
        raise DataError(f"{csv}: case {case_id}: a tumour box needs all of {list(BBOX_COLS)}")
    unit_raw = row["bbox_unit"] if "bbox_unit" in row.index and not _empty(row["bbox_unit"]) else "voxel"
    unit = BBOX_UNITS.get(str(unit_raw).strip().lower())
    if unit is None:
        raise DataError(f"{csv}: case {case_id}: bbox_unit {unit_raw!r} is not one of {sorted(BBOX_UNITS)}")
    try:
        vals = [float(row[c]) for c in BBOX_COLS]
    except (TypeError, ValueError):
        vals = [float("nan")]
    if not all(math.isfinite(v) for v in vals):
        raise DataError(f"{csv}: case {case_id}: bbox values {[row[c] for c in BBOX_COLS]} are not numbers")
    if unit == "voxel":
        if (
            not all(v.is_integer() and v >= 0 for v in vals)
            or vals[0] > vals[1]
            or vals[2] > vals[3]
            or (vals[4] > vals[5])
        ):
            raise DataError(
                f"{csv}: case {case_id}: voxel bbox {vals} must be non-negative integers with z0 <= z1, "
                "y0 <= y1, x0 <= x1"
            )
        return tuple(int(v) for v in vals)  # type: ignore[return-value]
    if axis_order != AFFINE:
        raise DataError(
            f"{csv}: case {case_id}: a bbox in millimetres needs axis_order='affine' (got {axis_order!r}): "
            "world coordinates mean nothing without a trusted header"
        )
    from her2mri.data.geometry import box_mm_to_voxels, to_canonical

    shape, _, affine = read_header_geometry(pre)
    canon, canon_affine = to_canonical(np.empty(shape, dtype=np.uint8), affine)
    z0, z1, y0, y1, x0, x1 = vals
    return box_mm_to_voxels(
        (x0, y0, z0), (x1, y1, z1), canon_affine, canon.shape, frame=unit, name=f"{csv}: case {case_id}: bbox"
    )


def read_manifest(
    csv: str | Path,
    *,
    require_label: bool = True,
    axis_order: str = AFFINE,
    dataset: str = "manifest",
    image_columns: Sequence[str] | None = None,
) -> list[CaseRecord]:
    """Read a manifest CSV into :class:`CaseRecord` objects (the one manifest reader of her2mri).

    Args:
        csv: the manifest file.
        require_label: an empty label is a DataError (default); else ``label=None`` (unlabelled cohorts).
        axis_order: ``"affine"`` (default: canonical orientation from each file's header, masks matched by
            world coordinates), or the axes of the stored volumes when the headers are not to be trusted
            (``"zyx"`` as BreastDCEDL, ``"xyz"``). A row's ``axis_order`` column overrides it.
        dataset: value of ``CaseRecord.dataset``.
        image_columns: named image columns to read into ``CaseRecord.images`` (``her2mri-radiomics``:
            ``cohort.image_columns``); the rows then need neither phase nor ``rgb`` columns. None: phase or
            RGB manifest.

    Returns:
        One record per case, in order of first appearance.

    Raises:
        DataError: naming the file: unreadable CSV, missing column, missing file, bad label or split,
            duplicate case (phase manifests), a case in two splits or with two labels (RGB manifests).
    """
    check_axis_order(axis_order)
    image_cols = tuple(image_columns or ())
    if image_columns is not None and not image_cols:
        raise ValueError("image_columns is empty: give at least one column name, or None")
    csv = Path(csv)
    df = read_csv_checked(csv, "manifest CSV", {"case_id": str})
    cols = set(df.columns)
    if "case_id" not in cols and "pid" in cols:
        raise DataError(
            f"{csv}: column 'pid' is the old name of 'case_id' (radiomics manifests before the one manifest "
            "schema): rename the column 'pid' to 'case_id' (schema: docs/data.md, section 1.2)"
        )
    has_phases, has_rgb = set(PHASE_COLS) <= cols, "rgb" in cols
    required = ["case_id"] + (["label"] if require_label else [])
    missing = [c for c in required if c not in cols]
    if image_cols:
        missing += [c for c in image_cols if c not in cols]
    elif not has_phases and not has_rgb:
        missing.append("pre, early, late (or rgb)")
    if missing:
        raise DataError(f"{csv}: missing manifest column(s) {missing}; columns present: {list(df.columns)}")
    if has_phases and has_rgb:
        raise DataError(
            f"{csv}: has both phase columns (pre, early, late) and 'rgb'; use one kind per manifest"
        )
    base = csv.parent
    df["case_id"] = df["case_id"].astype(str).str.strip()
    if has_phases or image_cols:
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
        extra = {c: (None if _empty(row[c]) else row[c]) for c in cols - KNOWN_COLS - set(image_cols)}
        for col, key in EXTRA_PATH_COLS.items():
            if col in cols and not _empty(row[col]):
                extra[key] = _resolve(row[col], base, csv, cid, col)
        if has_phases or image_cols:
            row_axes = _axis_order(row, axis_order, csv, cid)
            phases = tuple(_resolve(row[c], base, csv, cid, c) for c in PHASE_COLS) if has_phases else None
            images = {c: _resolve(row[c], base, csv, cid, c) for c in image_cols} or None
            is_2d = any(p.name.lower().endswith(IMAGE_2D_SUFFIXES) for p in (images or {}).values())
            mask = None
            if "mask" in cols and not _empty(row["mask"]):
                mask = _resolve(row["mask"], base, csv, cid, "mask")
            extra["axis_order"] = row_axes
            box = _bbox(row, csv, cid, phases[0], row_axes) if phases is not None else None
            if box is not None:
                extra["mask_start"], extra["mask_end"] = box[0], box[1]
            records[cid] = CaseRecord(
                pid=cid,
                label=label,
                split=split,
                phase_paths=phases,  # type: ignore[arg-type]
                mask_path=mask,
                spacing=_spacing(row, csv, cid, is_2d),
                bbox=None if box is None else box[2:],  # type: ignore[arg-type]
                site=site,
                dataset=dataset,
                extra=extra,
                images=images,
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
