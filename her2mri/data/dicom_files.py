"""Reading DICOM files with pydicom: image headers (single- and multi-frame) and pixel data.

:func:`read_headers` reads the header of every image file of a study folder (no pixel data) into
:class:`DicomSlice` records: one per file, or one per frame of an Enhanced MR (multi-frame) file, whose
position, orientation, spacing, Temporal Position Index and Frame Acquisition DateTime come from the per-frame
(else shared) functional groups. :func:`slice_pixels` reads the pixels of one slice with its rescale applied.
Values are parsed by pydicom's value representations (``TM``, ``DA``, ``DT``); nothing is parsed by hand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from her2mri.data.errors import DataError
from her2mri.extras import require

SKIP_SUFFIXES: tuple[str, ...] = (
    ".nii",
    ".nii.gz",
    ".nrrd",
    ".nhdr",
    ".mha",
    ".mhd",
    ".json",
    ".csv",
    ".txt",
    ".png",
    ".jpg",
    ".md",
    ".xml",
    ".zip",
)


@dataclass
class DicomSlice:
    """Header values of one image file (no pixel data, no identifying values except the Patient ID)."""

    path: Path
    patient_id: str
    series_uid: str
    series_number: int
    series_description: str
    tpi: int | None
    acq_time: float | None  # seconds, from Acquisition Date/Time (date included when present)
    trigger_time: float | None  # seconds
    content_time: float | None  # seconds
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    cols: int
    image_type: tuple[str, ...]
    manufacturer: str
    field_strength: float | None
    frame: int | None = None  # 0-based frame of an enhanced (multi-frame) file
    rescale: tuple[float, float] | None = None  # per-frame (slope, intercept) of an enhanced file

    @property
    def name(self) -> str:
        """The file (and frame) named in errors."""
        return str(self.path) if self.frame is None else f"{self.path} (frame {self.frame + 1})"

    @property
    def sort_key(self) -> tuple[str, int]:
        """Deterministic order of files and frames (for reproducible errors only, never for geometry)."""
        return (str(self.path), -1 if self.frame is None else self.frame)


def _seconds(value: object, date: object = None) -> float | None:
    """Seconds of a DICOM TM value (plus days of a DA value), via pydicom's value representations."""
    from pydicom.valuerep import DA, TM

    if value in (None, ""):
        return None
    try:
        t = value if isinstance(value, dt.time) else TM(str(value))
    except ValueError:
        return None
    secs = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
    if date not in (None, ""):
        try:
            d = date if isinstance(date, dt.date) else DA(str(date))
            secs += d.toordinal() * 86400.0
        except ValueError:
            pass
    return float(secs)


def _acq_seconds(ds: object) -> float | None:
    from pydicom.valuerep import DT

    adt = getattr(ds, "AcquisitionDateTime", None)
    if adt not in (None, ""):
        try:
            v = adt if isinstance(adt, dt.datetime) else DT(str(adt))
            return _seconds(v.time(), v.date())
        except ValueError:
            pass
    return _seconds(getattr(ds, "AcquisitionTime", None), getattr(ds, "AcquisitionDate", None))


def _opt_float(v: object) -> float | None:
    try:
        return None if v in (None, "") else float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def read_headers(study_dir: Path) -> tuple[list[DicomSlice], int]:
    """Read the header of every image file under ``study_dir`` (recursively).

    Files that are not DICOM, or DICOM without an image plane (DICOMDIR, reports, presentation states), are
    skipped.

    Returns:
        ``(slices, n_skipped)``.
    """
    pydicom = require("pydicom", "reading DICOM")
    from pydicom.errors import InvalidDicomError

    out: list[DicomSlice] = []
    skipped = 0
    for path in sorted(p for p in study_dir.rglob("*") if p.is_file()):
        if path.name.lower().endswith(SKIP_SUFFIXES) or path.name.startswith("."):
            skipped += 1
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError, KeyError):
            skipped += 1
            continue
        if "PerFrameFunctionalGroupsSequence" in ds and "Rows" in ds:
            out.extend(_enhanced_frames(ds, path, study_dir))
            continue
        ipp, iop, ps = (
            getattr(ds, k, None) for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
        )
        if ipp is None or iop is None or ps is None or "Rows" not in ds:
            skipped += 1
            continue
        try:
            position = np.array([float(v) for v in ipp], dtype=np.float64)
            orientation = np.array([float(v) for v in iop], dtype=np.float64)
            spacing = (float(ps[0]), float(ps[1]))
        except (TypeError, ValueError, IndexError) as exc:
            raise DataError(f"{study_dir}: {path}: unreadable image plane attributes ({exc})") from exc
        if position.shape != (3,) or orientation.shape != (6,):
            raise DataError(f"{study_dir}: {path}: Image Position/Orientation (Patient) has the wrong length")
        tpi = getattr(ds, "TemporalPositionIdentifier", None)
        trig = _opt_float(getattr(ds, "TriggerTime", None))
        out.append(
            DicomSlice(
                **_common(ds, path),
                tpi=None if tpi in (None, "") else int(tpi),
                acq_time=_acq_seconds(ds),
                trigger_time=None if trig is None else trig / 1000.0,
                content_time=_seconds(getattr(ds, "ContentTime", None), getattr(ds, "ContentDate", None)),
                position=position,
                orientation=orientation,
                pixel_spacing=spacing,
            )
        )
    return out, skipped


def _common(ds: object, path: Path) -> dict:
    """Attributes shared by every slice of a file (single- or multi-frame)."""
    return {
        "path": path,
        "patient_id": str(getattr(ds, "PatientID", "") or "").strip(),
        "series_uid": str(getattr(ds, "SeriesInstanceUID", "") or path.parent),
        "series_number": int(_opt_float(getattr(ds, "SeriesNumber", None)) or 0),
        "series_description": str(getattr(ds, "SeriesDescription", "") or ""),
        "rows": int(ds.Rows),  # type: ignore[attr-defined]
        "cols": int(ds.Columns),  # type: ignore[attr-defined]
        "image_type": tuple(str(v).upper() for v in (getattr(ds, "ImageType", None) or ())),
        "manufacturer": str(getattr(ds, "Manufacturer", "") or ""),
        "field_strength": _opt_float(getattr(ds, "MagneticFieldStrength", None)),
    }


def _group_value(groups: Sequence[object], seq: str, attr: str) -> object:
    """``attr`` of the first item of functional group sequence ``seq``: per-frame group first, then shared."""
    for group in groups:
        if group is not None and seq in group:  # type: ignore[operator]
            items = getattr(group, seq)
            value = getattr(items[0], attr, None) if len(items) else None
            if value not in (None, ""):
                return value
    return None


def _enhanced_frames(ds: object, path: Path, study_dir: Path) -> list[DicomSlice]:
    """One :class:`DicomSlice` per frame of an enhanced (multi-frame) image, from its functional groups."""
    from pydicom.valuerep import DT

    shared_seq = getattr(ds, "SharedFunctionalGroupsSequence", None)
    shared = shared_seq[0] if shared_seq else None
    common = _common(ds, path)
    out = []
    for f, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):  # type: ignore[attr-defined]
        groups = (frame, shared)
        ipp = _group_value(groups, "PlanePositionSequence", "ImagePositionPatient")
        iop = _group_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient")
        ps = _group_value(groups, "PixelMeasuresSequence", "PixelSpacing")
        if ipp is None or iop is None or ps is None:
            raise DataError(
                f"{study_dir}: {path} (frame {f + 1}): no plane position, orientation or pixel spacing in "
                "the functional groups"
            )
        when = _group_value(groups, "FrameContentSequence", "FrameAcquisitionDateTime")
        acq = None
        if when is not None:
            try:
                v = when if isinstance(when, dt.datetime) else DT(str(when))
                acq = _seconds(v.time(), v.date())
            except ValueError:
                acq = None
        tpi = _group_value(groups, "FrameContentSequence", "TemporalPositionIndex")
        slope = _opt_float(_group_value(groups, "PixelValueTransformationSequence", "RescaleSlope"))
        inter = _opt_float(_group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept"))
        out.append(
            DicomSlice(
                **common,
                tpi=None if tpi is None else int(tpi),
                acq_time=acq,
                trigger_time=None,
                content_time=None,
                position=np.array([float(v) for v in ipp], dtype=np.float64),  # type: ignore[union-attr]
                orientation=np.array([float(v) for v in iop], dtype=np.float64),  # type: ignore[union-attr]
                pixel_spacing=(float(ps[0]), float(ps[1])),  # type: ignore[index]
                frame=f,
                rescale=(1.0 if slope is None else slope, 0.0 if inter is None else inter),
            )
        )
    return out


def _read_pixels(path: Path, study_dir: Path) -> np.ndarray:
    """Pixel data of one file with its Rescale Slope/Intercept applied (pydicom; SimpleITK/GDCM fallback)."""
    pydicom = require("pydicom", "reading DICOM")
    from pydicom.pixels import apply_rescale

    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
        if (
            float(getattr(ds, "RescaleSlope", 1) or 1) != 1
            or float(getattr(ds, "RescaleIntercept", 0) or 0) != 0
        ):
            arr = apply_rescale(arr.astype(np.float32), ds)
        return np.asarray(arr)
    except Exception as exc:  # compressed transfer syntaxes without a pydicom decoder plugin
        try:
            import SimpleITK as sitk

            return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[0]
        except Exception:
            raise DataError(
                f"{study_dir}: {path}: cannot read pixel data ({type(exc).__name__}: {exc})"
            ) from exc


def slice_pixels(s: DicomSlice, study_dir: Path, cache: dict[Path, np.ndarray]) -> np.ndarray:
    """The 2-D pixels of one slice: a single-frame file, or one frame of an enhanced file (decoded once)."""
    if s.frame is None:
        return _read_pixels(s.path, study_dir)
    if s.path not in cache:
        pydicom = require("pydicom", "reading DICOM")

        try:
            cache[s.path] = np.asarray(pydicom.dcmread(s.path).pixel_array)
        except Exception as exc:
            raise DataError(
                f"{study_dir}: {s.path}: cannot read pixel data ({type(exc).__name__}: {exc})"
            ) from exc
    frames = cache[s.path]
    if frames.ndim != 3 or s.frame >= frames.shape[0]:
        raise DataError(f"{study_dir}: {s.name}: frame missing from the pixel data of shape {frames.shape}")
    arr = frames[s.frame]
    if s.rescale is not None and s.rescale != (1.0, 0.0):
        arr = arr.astype(np.float32) * np.float32(s.rescale[0]) + np.float32(s.rescale[1])
    return arr
