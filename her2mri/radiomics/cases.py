"""Radiomics case records: image(s), mask, spacing, label, pid, clinical data; and how to read their pixels.

A :class:`RadiomicsCase` is what the radiomics pipelines consume. It is built from a her2mri
:class:`~her2mri.data.records.CaseRecord` by :func:`from_case_record`: DCE-MRI phases (BreastDCEDL, synthetic
cohort) or the named images of a manifest CSV read by the one manifest reader,
:func:`her2mri.data.manifest.read_manifest` with ``image_columns`` (which also covers 2-D ultrasound images:
PNG/JPG with the pixel spacing in the CSV).

Spacing is always taken from the metadata, in the array axis order: (z, y, x) for volumes, (y, x) for 2-D
images. The BreastDCEDL NIfTI headers are wrong (1 mm), so headers are used only when a record has no spacing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2mri.data.errors import DataError
from her2mri.data.manifest import IMAGE_2D_SUFFIXES
from her2mri.data.records import CaseRecord

PHASE_INDEX = {"pre": 0, "early": 1, "late": 2}
#: derived kinetic images: name -> (minuend phase, subtrahend phase); the image is ``minuend - subtrahend``
DERIVED_IMAGES: dict[str, tuple[str, str]] = {"wash_in": ("early", "pre"), "wash_out": ("late", "early")}
_NOT_CLINICAL = {
    "axis_order", "mask_start", "mask_end", "n_xy", "n_z", "n_times", "pix_type",
    "mask2_path", "breast_mask_path",
}  # fmt: skip


@dataclass
class RadiomicsCase:
    """One patient for radiomics.

    Args:
        pid: patient id.
        images: image name -> file, e.g. ``{"early": Path(...)}`` or ``{"pre":..., "early":..., "late":...}``
            (features of each image are prefixed by its name), or ``{"us": Path("x.png")}`` for a 2-D image.
            A pair of files ``(a, b)`` stands for the subtraction image ``a - b`` (e.g. ``wash_out`` =
            late - early, see :data:`DERIVED_IMAGES`).
        mask_path: tumour mask on the same grid (label > 0 is tumour).
        spacing: voxel size in mm in array order, (z, y, x) or (y, x); None: read from the header (3-D only).
        label: 0/1 target, None when unknown.
        split: ``train`` / ``val`` / ``test`` or None.
        clinical: clinical variables (age, ER, PR, IHC, ...), used by the clinical model and label rules.
        axis_order: index order of the volume files (``zyx`` for BreastDCEDL, ``xyz`` for most NRRD/NIfTI).
        mask2_path: a second reader's mask for the ICC filter (optional).
        breast_mask_path: breast / tissue region the peritumoral rings are clipped to (optional).
    """

    pid: str
    images: dict[str, Path | tuple[Path, Path]]
    mask_path: Path
    spacing: tuple[float, ...] | None = None
    label: int | None = None
    split: str | None = None
    clinical: dict[str, Any] = field(default_factory=dict)
    axis_order: str = "zyx"
    mask2_path: Path | None = None
    breast_mask_path: Path | None = None

    @property
    def is_2d(self) -> bool:
        """True when the images are 2-D pictures (PNG/JPG...)."""
        return any(str(p).lower().endswith(IMAGE_2D_SUFFIXES) for p in self._image_files())

    def _image_files(self) -> list[Path]:
        files: list[Path] = []
        for k in sorted(self.images):
            v = self.images[k]
            if isinstance(v, tuple):
                files.extend(Path(f) for f in v)
            else:
                files.append(Path(v))
        return files

    def source_files(self) -> list[Path]:
        """Every file read for this case, in a fixed order (used by the feature-table cache key)."""
        files = [*self._image_files(), Path(self.mask_path)]
        for p in (self.mask2_path, self.breast_mask_path):
            if p is not None:
                files.append(Path(p))
        return files


def _phase_images(phase_paths: Sequence[Path], phases: Sequence[str]) -> dict[str, Path | tuple[Path, Path]]:
    """The named images (phases and subtraction pairs) of ``phases`` from the pre/early/late files."""
    images: dict[str, Path | tuple[Path, Path]] = {}
    for ph in phases:
        if ph in PHASE_INDEX:
            images[ph] = Path(phase_paths[PHASE_INDEX[ph]])
        elif ph in DERIVED_IMAGES:
            a, b = DERIVED_IMAGES[ph]
            images[ph] = (Path(phase_paths[PHASE_INDEX[a]]), Path(phase_paths[PHASE_INDEX[b]]))
        else:
            raise ValueError(
                f"phases contains {ph!r}: expected names among {sorted(PHASE_INDEX) + sorted(DERIVED_IMAGES)}"
            )
    return images


def from_case_record(record: CaseRecord, phases: Sequence[str] = ("early",)) -> RadiomicsCase:
    """Turn a :class:`CaseRecord` (DCE phases or named images, and a mask) into a :class:`RadiomicsCase`.

    Args:
        record: a record with a ``mask_path`` and either named ``images`` (a manifest read with
            ``image_columns``: these are the images, ``phases`` is not used) or ``phase_paths``.
        phases: the images to extract features from a record with phases: phases among ``pre``, ``early``,
            ``late`` and derived subtraction images ``wash_in`` (early - pre) and ``wash_out`` (late - early).

    Raises:
        DataError: the record has no mask, or neither images nor phases.
    """
    if record.mask_path is None:
        raise DataError(
            f"case {record.pid}: radiomics needs a tumour mask file (column 'mask' of a manifest) and "
            "the record has none"
        )
    if record.images is not None:
        images: dict[str, Path | tuple[Path, Path]] = {k: Path(v) for k, v in record.images.items()}
    elif record.phase_paths is not None:
        images = _phase_images(record.phase_paths, phases)
    else:
        raise DataError(f"case {record.pid}: radiomics needs image or phase files (record has none)")
    clinical = {k: v for k, v in record.extra.items() if k not in _NOT_CLINICAL}
    if record.dataset == "manifest" and record.site is not None:
        clinical.setdefault("site", record.site)  # a clinical column of radiomics manifests before one schema
    extra = record.extra
    return RadiomicsCase(
        pid=record.pid,
        images=images,
        mask_path=Path(record.mask_path),
        spacing=tuple(float(s) for s in record.spacing) if record.spacing is not None else None,
        label=record.label,
        split=record.split,
        clinical=clinical,
        axis_order=str(extra.get("axis_order", "zyx")),
        mask2_path=Path(extra["mask2_path"]) if extra.get("mask2_path") else None,
        breast_mask_path=Path(extra["breast_mask_path"]) if extra.get("breast_mask_path") else None,
    )


def read_image_2d(path: str | Path) -> np.ndarray:
    """A 2-D grey image (PNG/JPG...) as float32 (H, W); RGB is converted to luminance."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("F") if im.mode not in ("I;16", "I") else im, dtype=np.float32)
    except Exception as exc:
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a 2-D image, got shape {arr.shape}")
    return arr


def read_case_arrays(
    case: RadiomicsCase, which_mask: str = "mask"
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[float, ...]]:
    """Read a case's images, a mask and its spacing.

    Args:
        case: the case.
        which_mask: ``mask`` (tumour), ``mask2`` (second reader) or ``breast_mask``.

    Returns:
        ``(images, mask, spacing)``: float32 arrays by name, a boolean mask, spacing in array axis order.

    Raises:
        DataError: naming the file, for unreadable files, shape mismatches or an empty mask.
    """
    from her2mri.data.io import read_header_spacing, read_mask

    mpath = {"mask": case.mask_path, "mask2": case.mask2_path, "breast_mask": case.breast_mask_path}[
        which_mask
    ]
    if mpath is None:
        raise DataError(f"case {case.pid}: no {which_mask} file")
    if case.is_2d:
        images = {k: read_image_2d(p) for k, p in case.images.items()}
        mask = read_image_2d(mpath) > 0
        if case.spacing is None or len(case.spacing) != 2:
            raise DataError(f"case {case.pid}: a 2-D image needs a (y, x) pixel spacing, got {case.spacing}")
        spacing = tuple(case.spacing)
    else:
        images = {k: _read_3d(v, case.axis_order) for k, v in case.images.items()}
        mask = read_mask(mpath, axis_order=case.axis_order).astype(bool)
        first = case._image_files()[0]
        spacing = (
            tuple(case.spacing)
            if case.spacing is not None
            else read_header_spacing(first, axis_order=case.axis_order)
        )
        if len(spacing) != 3:
            raise DataError(f"case {case.pid}: a volume needs a (z, y, x) spacing, got {spacing}")
    for name, img in images.items():
        if img.shape != mask.shape:
            raise DataError(
                f"{mpath}: mask has shape {mask.shape} but image {case.images[name]} has {img.shape}"
            )
    if not mask.any():
        raise DataError(f"{mpath}: mask is empty (no voxel > 0)")
    return images, mask, spacing


def _read_3d(source: Path | tuple[Path, Path], axis_order: str) -> np.ndarray:
    """A volume as float32; a pair ``(a, b)`` is the subtraction image ``a - b`` (shapes checked)."""
    from her2mri.data.io import read_volume

    if not isinstance(source, tuple):
        return read_volume(source, axis_order=axis_order)
    a, b = (read_volume(p, axis_order=axis_order) for p in source)
    if a.shape != b.shape:
        raise DataError(f"{source[0]}: shape {a.shape} differs from {source[1]} ({b.shape}); cannot subtract")
    return np.subtract(a, b, dtype=np.float32)


def cases_frame(cases: Iterable[RadiomicsCase]) -> pd.DataFrame:
    """Labels, splits and clinical variables of the cases, indexed by pid."""
    rows = []
    for c in cases:
        rows.append({"pid": c.pid, "label": c.label, "split": c.split, **c.clinical})
    return pd.DataFrame(rows).set_index("pid")
