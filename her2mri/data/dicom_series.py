"""Finding the DCE acquisitions of a DICOM study and building each one as a 3-D volume (pydicom).

A study folder may hold its files under any names, in any order and in nested folders. Its image files are
read with pydicom (headers first, pixels only for the chosen acquisitions) and split into **acquisitions**:

* layout ``series``: one series per acquisition (each position occurs once in the series);
* layout ``temporal``: one series holding all acquisitions, told apart by Temporal Position Identifier;
* layout ``times``: one series without Temporal Position Identifiers in which every slice position occurs
  T times; at each position the T files are ordered by Trigger Time, else Acquisition Time, else Content
  Time, and the k-th of each position forms acquisition k.
* enhanced (multi-frame) MR objects: every frame is a slice, with its position, orientation, spacing,
  Temporal Position Index and Frame Acquisition DateTime taken from the functional groups; the frames are then
  split as above (layout ``enhanced`` when the Temporal Position Index tells the acquisitions apart).

The **DCE acquisitions** are the largest set of at least ``min_phases`` acquisitions that share matrix size,
slice count and Image Orientation (Patient); subtraction, MIP and projection images (Image Type containing
``SUB``, ``SUBTRACTION``, ``MIP`` or ``PROJECTION IMAGE``) are never part of it. They are ordered by time
(Acquisition Date/Time, else Trigger Time, else Content Time; Temporal Position Identifier then Series Number
break ties and order them when no time is recorded).

A **volume** is built from Image Position / Image Orientation (Patient): slices are sorted by their position
along the slice normal (row direction x column direction), never by file name or Instance Number. Every
inconsistency is a :class:`~her2mri.data.errors.DataError` naming the study folder and a file.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from her2mri.data.dicom_files import DicomSlice, read_headers, slice_pixels
from her2mri.data.errors import DataError
from her2mri.data.geometry import dicom_affine_lps

log = logging.getLogger(__name__)
__all__ = [
    "Acquisition",
    "DicomSlice",
    "Volume",
    "build_volume",
    "find_dce",
    "order_in_time",
    "read_headers",
    "split_acquisitions",
]

EXCLUDED_IMAGE_TYPES: frozenset[str] = frozenset({"SUB", "SUBTRACTION", "MIP", "PROJECTION IMAGE"})
ORIENTATION_ATOL: float = 1e-4
POSITION_DECIMALS: int = 2  # slice positions equal to 0.01 mm are the same position


@dataclass
class Acquisition:
    """One 3-D acquisition: its files (unsorted), where it came from and when it was acquired."""

    slices: list[DicomSlice]
    layout: str
    series_number: int
    tpi: int | None = None
    time_s: float | None = None
    meta: dict = field(default_factory=dict)

    @property
    def signature(self) -> tuple:
        """(rows, cols, n_slices, orientation): the most common matrix and orientation of its files."""
        (rows, cols), _ = Counter((s.rows, s.cols) for s in self.slices).most_common(1)[0]
        rounded = (tuple(float(v) for v in np.round(s.orientation, 3) + 0.0) for s in self.slices)
        orient, _ = Counter(rounded).most_common(1)[0]
        return (rows, cols, len(self.slices), orient)

    @property
    def first_file(self) -> Path:
        """The acquisition's first file by path (named in errors)."""
        return min(s.path for s in self.slices)


@dataclass
class Volume:
    """An acquisition built as a (slice, row, column) array with its LPS affine of (column, row, slice)."""

    array: np.ndarray
    affine_lps: np.ndarray
    files: list[Path]


def _pos_key(s: DicomSlice) -> tuple[float, ...]:
    return tuple(np.round(s.position, POSITION_DECIMALS) + 0.0)


def _time_of(s: DicomSlice) -> tuple[float, ...]:
    return tuple(v for v in (s.trigger_time, s.acq_time, s.content_time) if v is not None)


def split_acquisitions(slices: Sequence[DicomSlice], study_dir: Path) -> list[Acquisition]:
    """Split image files into acquisitions (layouts ``series``, ``temporal``, ``times``: see module doc)."""
    by_series: dict[str, list[DicomSlice]] = defaultdict(list)
    for s in slices:
        by_series[s.series_uid].append(s)
    acqs: list[Acquisition] = []
    for series in by_series.values():
        number = series[0].series_number
        tpis = {s.tpi for s in series if s.tpi is not None}
        if len(tpis) > 1:
            if any(s.tpi is None for s in series):
                bad = next(s for s in series if s.tpi is None)
                raise DataError(
                    f"{study_dir}: {bad.name}: file without Temporal Position Identifier in a "
                    f"series whose other files have one"
                )
            for t in sorted(tpis):
                layout = "enhanced" if series[0].frame is not None else "temporal"
                acqs.append(Acquisition([s for s in series if s.tpi == t], layout, number, tpi=t))
            continue
        per_pos: dict[tuple[float, ...], list[DicomSlice]] = defaultdict(list)
        for s in series:
            per_pos[_pos_key(s)].append(s)
        counts = Counter(len(v) for v in per_pos.values())
        if len(counts) == 1 and 1 in counts:
            acqs.append(Acquisition(list(series), "series", number, tpi=next(iter(tpis), None)))
            continue
        n_times = counts.most_common(1)[0][0]
        if len(counts) > 1 or n_times == 1:
            odd = next(v for v in per_pos.values() if len(v) != n_times)
            names = ", ".join(s.name for s in sorted(odd, key=lambda s: s.sort_key))
            raise DataError(
                f"{study_dir}: missing or duplicated slice positions in series {number}: position "
                f"{np.round(odd[0].position, 2).tolist()} has {len(odd)} file(s) ({names}) where the other "
                f"positions have {n_times}"
            )
        ordered = {}
        for key, files in per_pos.items():
            files = sorted(files, key=lambda s: (_time_of(s), s.sort_key))
            times = [_time_of(s) for s in files]
            if not times[0] or len(set(times)) != len(times):
                raise DataError(
                    f"{study_dir}: {files[0].name}: {len(files)} files share slice position "
                    f"{np.round(files[0].position, 2).tolist()} in series {number} and no Temporal Position "
                    f"Identifier, Trigger Time or Acquisition Time tells them apart (duplicated slices?)"
                )
            ordered[key] = files
        for k in range(n_times):
            acqs.append(Acquisition([files[k] for files in ordered.values()], "times", number))
    return acqs


def _pick_time(acqs: Sequence[Acquisition]) -> str | None:
    """The first time attribute that is present in every acquisition and distinct between them."""
    for attr in ("acq_time", "trigger_time", "content_time"):
        vals = [
            min((getattr(s, attr) for s in a.slices if getattr(s, attr) is not None), default=None)
            for a in acqs
        ]
        if all(v is not None for v in vals) and len(set(vals)) == len(vals):
            return attr
    return None


def order_in_time(acqs: list[Acquisition], study_dir: Path) -> tuple[list[Acquisition], str | None]:
    """Sort acquisitions by time and set ``time_s`` (seconds after the first one).

    Returns:
        ``(acquisitions, attribute)``: the attribute used (``acq_time``, ``trigger_time``, ``content_time``),
        or None when no time tells them apart (then Temporal Position Identifier, then Series Number, with a
        warning; ``time_s`` stays None).
    """
    attr = _pick_time(acqs)
    if attr is None:
        log.warning(
            "%s acquisitions have no distinct acquisition times: ordered by Temporal Position "
            "Identifier, then Series Number",
            len(acqs),
        )
        return sorted(acqs, key=lambda a: (a.tpi if a.tpi is not None else 0, a.series_number)), None
    for a in acqs:
        a.time_s = min(getattr(s, attr) for s in a.slices if getattr(s, attr) is not None)
    acqs = sorted(acqs, key=lambda a: (a.time_s, a.tpi if a.tpi is not None else 0, a.series_number))
    t0 = acqs[0].time_s
    for a in acqs:
        a.time_s = round(float(a.time_s) - float(t0), 3)  # type: ignore[arg-type]
    return acqs, attr


def find_dce(acqs: Sequence[Acquisition], study_dir: Path, min_phases: int = 3) -> list[Acquisition]:
    """The DCE acquisitions of a study (unordered): see the module docstring for the rule.

    Raises:
        DataError: no set of ``min_phases`` acquisitions on one grid; a DCE acquisition (same series, or same
            series description) with another matrix size, slice count or orientation.
    """
    usable = [a for a in acqs if not (set(a.slices[0].image_type) & EXCLUDED_IMAGE_TYPES)]
    groups: dict[tuple, list[Acquisition]] = defaultdict(list)
    for a in usable:
        groups[a.signature].append(a)
    best = max(
        groups.values(),
        key=lambda g: (len(g), g[0].signature[0] * g[0].signature[1] * g[0].signature[2]),
        default=[],
    )
    if len(best) < min_phases:
        raise DataError(
            f"{study_dir}: no DCE series found: {len(acqs)} acquisition(s) in "
            f"{len({a.slices[0].series_uid for a in acqs})} "
            f"image series, the largest set on one grid (same matrix, slice count and orientation) has "
            f"{len(best)}, need at least {min_phases}" + (f" (e.g. {best[0].first_file})" if best else "")
        )
    uids = {a.slices[0].series_uid for a in best}
    descs = {a.slices[0].series_description for a in best if a.slices[0].series_description}
    for a in usable:
        if a in best:
            continue
        if a.slices[0].series_uid in uids or (a.slices[0].series_description in descs and len(descs) == 1):
            if a.signature[:2] + a.signature[3:] == best[0].signature[:2] + best[0].signature[3:]:
                raise DataError(
                    f"{study_dir}: {a.first_file}: missing or duplicated slice positions: this acquisition "
                    f"of series {a.series_number} has {a.signature[2]} slices, the other {len(best)} DCE "
                    f"acquisitions have {best[0].signature[2]}"
                )
            raise DataError(
                f"{study_dir}: {a.first_file}: DCE acquisition on another grid: {a.signature[0]}x"
                f"{a.signature[1]} pixels, {a.signature[2]} slices, orientation {list(a.signature[3])}; the "
                f"other {len(best)} acquisitions have {best[0].signature[0]}x{best[0].signature[1]}, "
                f"{best[0].signature[2]} slices, {list(best[0].signature[3])}"
            )
    return list(best)


def build_volume(
    acq: Acquisition,
    study_dir: Path,
    spacing_rtol: float = 0.01,
    pixel_cache: dict[Path, np.ndarray] | None = None,
) -> Volume:
    """Build one acquisition as a (slice, row, column) array sorted along the slice normal.

    ``pixel_cache`` keeps the decoded frames of enhanced (multi-frame) files between the acquisitions of a
    study, so a file holding every acquisition is decoded once.

    Raises:
        DataError: naming the study and a file: mixed orientations, pixel spacing or matrix sizes; duplicated
            or missing slice positions; uneven slice spacing; slices not stacked along the normal.
    """
    slices = sorted(acq.slices, key=lambda s: s.sort_key)
    ref = slices[0]
    for s in slices[1:]:
        if not np.allclose(s.orientation, ref.orientation, atol=ORIENTATION_ATOL):
            raise DataError(
                f"{study_dir}: {s.name}: mixed orientations inside series {acq.series_number}: "
                f"{np.round(s.orientation, 4).tolist()} vs {np.round(ref.orientation, 4).tolist()} "
                f"in {ref.name}"
            )
        if (s.rows, s.cols) != (ref.rows, ref.cols) or not np.allclose(
            s.pixel_spacing, ref.pixel_spacing, 1e-4
        ):
            raise DataError(
                f"{study_dir}: {s.name}: matrix {s.rows}x{s.cols} / pixel spacing {s.pixel_spacing} "
                f"differs from {ref.rows}x{ref.cols} / {ref.pixel_spacing} in {ref.name}"
            )
    normal = np.cross(ref.orientation[:3], ref.orientation[3:])
    proj = np.array([float(s.position @ normal) for s in slices])
    order = np.argsort(proj, kind="stable")
    slices = [slices[i] for i in order]
    proj = proj[order]
    if len(slices) > 1:
        steps = np.diff(proj)
        for i, d in enumerate(steps):
            if d < 10**-POSITION_DECIMALS:
                raise DataError(
                    f"{study_dir}: duplicated slice position {np.round(slices[i].position, 2).tolist()}"
                    f" in {slices[i].name} and {slices[i + 1].name}"
                )
        step = float(np.median(steps))
        tol = max(spacing_rtol * step, 10**-POSITION_DECIMALS)
        for i, d in enumerate(steps):
            if abs(d - step) <= tol:
                continue
            ratio = d / step
            kind = (
                "missing slice position(s)"
                if abs(ratio - round(ratio)) * step <= tol
                else "uneven slice spacing"
            )
            raise DataError(
                f"{study_dir}: {kind} in series {acq.series_number}: {d:.3f} mm between "
                f"{slices[i].name} and {slices[i + 1].name}, {step:.3f} mm elsewhere"
            )
        off = np.array(
            [
                s.position - slices[0].position - (p - proj[0]) * normal
                for s, p in zip(slices, proj, strict=True)
            ]
        )
        bad = np.flatnonzero(np.linalg.norm(off, axis=1) > max(tol, 0.05))
        if bad.size:
            raise DataError(
                f"{study_dir}: {slices[bad[0]].name}: slice is not stacked along the slice normal of "
                f"{slices[0].name} (in-plane offset {np.linalg.norm(off[bad[0]]):.2f} mm; gantry tilt?)"
            )
    else:
        step = 1.0
    cache: dict[Path, np.ndarray] = {} if pixel_cache is None else pixel_cache
    arrays = [slice_pixels(s, study_dir, cache) for s in slices]
    for s, a in zip(slices, arrays, strict=True):
        if a.shape != (ref.rows, ref.cols):
            raise DataError(
                f"{study_dir}: {s.name}: pixel data of shape {a.shape}, header says {ref.rows}x{ref.cols}"
            )
    dtype = np.result_type(*arrays)
    vol = np.stack([a.astype(dtype, copy=False) for a in arrays])
    affine = dicom_affine_lps(slices[0].position, ref.orientation, ref.pixel_spacing, step)
    return Volume(array=vol, affine_lps=affine, files=[s.path for s in slices])
