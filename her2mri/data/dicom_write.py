"""Writing DCE-MRI studies as DICOM files (pydicom): the synthetic cohort (``her2mri-synth --format dicom``).

Each acquisition is written as 2-D MR Image Storage files (one per slice) in one of the three layouts
:mod:`her2mri.data.dicom_series` reads: ``series`` (one series per acquisition), ``temporal`` (one series,
Temporal Position Identifier per acquisition) or ``times`` (one series, only Acquisition / Trigger Time tell
the acquisitions apart); or ``enhanced``: one Enhanced MR (multi-frame) file holding every slice of every
acquisition as frames in random order, with per-frame functional groups. File names are random and files may
be spread over nested folders, as in a PACS export.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

LAYOUTS: tuple[str, ...] = ("series", "temporal", "times", "enhanced")
MR_IMAGE_STORAGE: str = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE: str = "1.2.840.10008.5.1.4.1.1.4.1"


def write_dicom_study(
    volumes: Sequence[np.ndarray],
    out_dir: str | Path,
    *,
    times_s: Sequence[float],
    spacing_zyx: Sequence[float],
    origin_lps: Sequence[float] = (0.0, 0.0, 0.0),
    row_dir: Sequence[float] = (1.0, 0.0, 0.0),
    col_dir: Sequence[float] = (0.0, 1.0, 0.0),
    layout: str = "series",
    patient: Mapping[str, str] | None = None,
    start: dt.datetime = dt.datetime(2020, 1, 1, 10, 0, 0),
    seed: int = 0,
    nested: bool = False,
    extra: Mapping[str, object] | None = None,
    series_description: str = "DCE dynamic",
) -> list[Path]:
    """Write the acquisitions of one study as DICOM files.

    Slice ``k`` of every volume lies at ``origin + k * spacing_z * normal`` (normal = row_dir x col_dir);
    pixel ``[k, r, c]`` is at ``position_k + c * spacing_x * row_dir + r * spacing_y * col_dir`` (LPS, mm).

    Args:
        volumes: acquisitions in time order, each a (slices, rows, columns) integer array (uint16 values).
        out_dir: the study folder (created).
        times_s: start of each acquisition in seconds after ``start``.
        spacing_zyx: (slice step, row spacing, column spacing) in mm.
        origin_lps: Image Position (Patient) of the first slice.
        row_dir: direction cosines of the rows (the direction of increasing column index).
        col_dir: direction cosines of the columns (the direction of increasing row index).
        layout: ``series``, ``temporal``, ``times`` or ``enhanced``.
        patient: header values such as PatientID, PatientName, PatientBirthDate, InstitutionName.
        start: date and time of the first acquisition.
        seed: seed of the random file names and the order the files are written in.
        nested: spread the files over two levels of sub-folders.
        extra: more header attributes set on every file (keyword -> value).
        series_description: Series Description of every series written.

    Returns:
        The files written.

    Raises:
        ValueError: bad ``layout``, volumes of different shapes, or a wrong number of times.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} must be one of {LAYOUTS}")
    if len(times_s) != len(volumes):
        raise ValueError(f"times_s has {len(times_s)} values for {len(volumes)} volumes")
    shapes = {np.shape(v) for v in volumes}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"volumes must be 3-D arrays of one shape, got {sorted(shapes)}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    rdir, cdir = np.asarray(row_dir, float), np.asarray(col_dir, float)
    normal = np.cross(rdir, cdir)
    dz, dy, dx = (float(v) for v in spacing_zyx)
    study_uid, frame_uid = generate_uid(), generate_uid()
    series_uids = [generate_uid() for _ in volumes] if layout == "series" else [generate_uid()] * len(volumes)
    if layout == "enhanced":
        return [
            _write_enhanced(
                volumes,
                out,
                times_s,
                (dz, dy, dx),
                origin_lps,
                rdir,
                cdir,
                patient or {},
                start,
                rng,
                extra or {},
                series_description,
            )
        ]
    jobs = [(t, k) for t in range(len(volumes)) for k in range(volumes[0].shape[0])]
    written: list[Path] = []
    for j in rng.permutation(len(jobs)):
        t, k = jobs[int(j)]
        when = start + dt.timedelta(seconds=float(times_s[t]))
        ds = _slice_dataset(np.asarray(volumes[t][k]), patient or {})
        ds.StudyInstanceUID, ds.FrameOfReferenceUID = study_uid, frame_uid
        ds.SeriesInstanceUID = series_uids[t]
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesNumber = 100 + t if layout == "series" else 100
        ds.SeriesDescription = series_description
        ds.InstanceNumber = int(rng.integers(1, 10_000))  # deliberately meaningless: never used for order
        ds.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(origin_lps, float) + k * dz * normal]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*rdir, *cdir)]
        ds.PixelSpacing = [f"{dy:.6f}", f"{dx:.6f}"]
        ds.SliceThickness = f"{dz:.6f}"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = start.strftime("%Y%m%d")
        ds.AcquisitionDate = when.strftime("%Y%m%d")
        ds.StudyTime = start.strftime("%H%M%S")
        ds.AcquisitionTime = ds.ContentTime = when.strftime("%H%M%S.%f")
        if layout == "series":
            ds.SeriesTime = when.strftime("%H%M%S")
        if layout == "temporal":
            ds.TemporalPositionIdentifier = t + 1
            ds.NumberOfTemporalPositions = len(volumes)
        if layout == "times":
            ds.TriggerTime = f"{1000.0 * float(times_s[t] - times_s[0]):.1f}"
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        folder = out / f"d{int(rng.integers(0, 3))}" / f"s{int(rng.integers(0, 3))}" if nested else out
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"IM{int(rng.integers(0, 16**10)):010x}"
        while path.exists():
            path = folder / f"IM{int(rng.integers(0, 16**10)):010x}"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def _slice_dataset(pixels: np.ndarray, patient: Mapping[str, str]) -> object:
    """An MR image dataset holding one uint16 slice and the patient attributes."""
    from pydicom.dataset import Dataset

    if pixels.min() < 0 or pixels.max() > 65535:
        raise ValueError(f"pixel values [{pixels.min()}, {pixels.max()}] do not fit uint16")
    ds = Dataset()
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.Modality = "MR"
    ds.Manufacturer = "her2mri-synth"
    ds.MagneticFieldStrength = "1.5"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    for key, value in patient.items():
        setattr(ds, key, value)
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return ds


def _write_enhanced(
    volumes: Sequence[np.ndarray],
    out: Path,
    times_s: Sequence[float],
    spacing: tuple[float, float, float],
    origin_lps: Sequence[float],
    rdir: np.ndarray,
    cdir: np.ndarray,
    patient: Mapping[str, str],
    start: dt.datetime,
    rng: np.random.Generator,
    extra: Mapping[str, object],
    series_description: str,
) -> Path:
    """One Enhanced MR Image Storage file: every slice of every acquisition as a frame, in random order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    dz, dy, dx = spacing
    normal = np.cross(rdir, cdir)
    jobs = [(t, k) for t in range(len(volumes)) for k in range(volumes[0].shape[0])]
    order = [jobs[int(j)] for j in rng.permutation(len(jobs))]
    frames = np.stack([np.asarray(volumes[t][k]) for t, k in order])
    ds = _slice_dataset(frames[0], patient)
    ds.SOPClassUID = ENHANCED_MR_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (
        generate_uid(),
        generate_uid(),
        generate_uid(),
    )
    ds.SeriesNumber, ds.InstanceNumber = 100, 1
    ds.SeriesDescription = series_description
    ds.NumberOfFrames = len(order)
    shared = Dataset()
    orient, measures = Dataset(), Dataset()
    orient.ImageOrientationPatient = [f"{v:.6f}" for v in (*rdir, *cdir)]
    measures.PixelSpacing = [f"{dy:.6f}", f"{dx:.6f}"]
    measures.SliceThickness = f"{dz:.6f}"
    shared.PlaneOrientationSequence = DicomSequence([orient])
    shared.PixelMeasuresSequence = DicomSequence([measures])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for t, k in order:
        item, pos, content = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(origin_lps, float) + k * dz * normal]
        when = start + dt.timedelta(seconds=float(times_s[t]))
        content.FrameAcquisitionDateTime = when.strftime("%Y%m%d%H%M%S.%f")
        content.TemporalPositionIndex = t + 1
        item.PlanePositionSequence = DicomSequence([pos])
        item.FrameContentSequence = DicomSequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = np.ascontiguousarray(frames, dtype="<u2").tobytes()
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_MR_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"EMR{int(rng.integers(0, 16**10)):010x}"
    ds.save_as(path, enforce_file_format=True)
    return path
