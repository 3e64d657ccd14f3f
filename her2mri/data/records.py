"""Case records: one :class:`CaseRecord` per patient, whatever the source (BreastDCEDL, manifest, RGB slices).

A record holds paths and metadata only (no pixel data), so a whole cohort of records is cheap to build,
inspect and split. Readers in :mod:`her2mri.data.readers`, :mod:`her2mri.data.manifest` and
:mod:`her2mri.data.rgb` produce them; :mod:`her2mri.data.cache` turns each one into preprocessed slices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from her2mri.data.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class CaseRecord:
    """One patient (case) of a cohort.

    Args:
        pid: patient / case id, unique within a cohort.
        label: 0/1 (HER2pos), None when unknown.
        split: ``"train"``, ``"val"``, ``"test"`` or None.
        phase_paths: pre, early and late phase files (NIfTI or NRRD), already selected from the acquisitions.
        mask_path: binary tumour mask file on the same grid, or None.
        spacing: voxel spacing (z, y, x) in mm, from the metadata (never the NIfTI header); (y, x) for a
            2-D picture of ``images``.
        rgb_paths: pre-fused RGB slice images (PNG), one per slice, for the ``rgb_slices`` source.
        rgb_slice_index: slice index of each RGB file.
        bbox: tumour box (row0, row1, col0, col1), inclusive, in voxel coordinates; optional.
        site: acquisition site / scanner group, if known.
        dataset: ``spy1``, ``spy2``, ``duke``, ``manifest``, ``rgb`` or another source name.
        extra: any other metadata (age, HR, mask_start, axis_order, mask2_path, breast_mask_path, ...).
        images: named image files of a manifest read with ``image_columns`` (radiomics: a volume or a 2-D
            picture per name), or None.
    """

    pid: str
    label: int | None = None
    split: str | None = None
    phase_paths: tuple[Path, Path, Path] | None = None
    mask_path: Path | None = None
    spacing: tuple[float, ...] | None = None
    rgb_paths: tuple[Path, ...] | None = None
    rgb_slice_index: tuple[int, ...] | None = None
    bbox: tuple[int, int, int, int] | None = None
    site: str | None = None
    dataset: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    images: dict[str, Path] | None = None

    def source_files(self) -> list[Path]:
        """All files this record reads (phases, images, mask, RGB slices), in a fixed order (cache key)."""
        files: list[Path] = []
        if self.phase_paths is not None:
            files.extend(self.phase_paths)
        if self.images is not None:
            files.extend(self.images[k] for k in sorted(self.images))
        if self.mask_path is not None:
            files.append(self.mask_path)
        if self.rgb_paths is not None:
            files.extend(self.rgb_paths)
        return files


def check_unique_pids(records: Iterable[CaseRecord], source: str | Path) -> None:
    """Raise :class:`DataError` naming ``source`` and the pid when a pid occurs twice.

    Args:
        records: the cohort.
        source: file (CSV) or folder the records come from, quoted in the message.
    """
    seen: set[str] = set()
    dups: list[str] = []
    for r in records:
        if r.pid in seen:
            dups.append(r.pid)
        seen.add(r.pid)
    if dups:
        raise DataError(f"{source}: duplicate pid(s) {sorted(set(dups))[:10]}: every pid must occur once")


def parse_binary_label(value: Any, pid: str, source: str | Path, *, required: bool = True) -> int | None:
    """Turn a CSV label cell into 0/1 (or None when missing and not ``required``).

    Accepts 0/1, 0.0/1.0, "0"/"1", True/False. Anything else is a :class:`DataError` naming the file and pid.

    Args:
        value: the cell value.
        pid: the patient id, quoted in messages.
        source: the CSV file, quoted in messages.
        required: raise on a missing (empty/NaN) value instead of returning None.
    """
    missing = value is None or (isinstance(value, float) and value != value) or str(value).strip() == ""
    if missing:
        if required:
            raise DataError(f"{source}: pid {pid}: label is missing")
        return None
    if isinstance(value, bool):
        return int(value)
    text = str(value).strip().lower()
    if text in {"true", "false"}:
        return int(text == "true")
    try:
        num = float(text)
    except ValueError:
        raise DataError(f"{source}: pid {pid}: label {value!r} is not binary (expected 0 or 1)") from None
    if num not in (0.0, 1.0):
        raise DataError(f"{source}: pid {pid}: label {value!r} is not binary (expected 0 or 1)")
    return int(num)


def split_counts(records: Sequence[CaseRecord]) -> dict[str, dict[str, int]]:
    """Patients per split and label: ``{split: {"patients": n, "pos": n, "neg": n, "unknown": n}}``."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        key = r.split if r.split is not None else "none"
        d = out.setdefault(key, {"patients": 0, "pos": 0, "neg": 0, "unknown": 0})
        d["patients"] += 1
        d["pos" if r.label == 1 else "neg" if r.label == 0 else "unknown"] += 1
    return out


def read_csv_checked(path: str | Path, what: str, dtype: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Read a CSV, turning a missing or unreadable file into a :class:`DataError` that names it.

    Args:
        path: the CSV file.
        what: what the file is, for the message (e.g. ``"metadata CSV"``).
        dtype: column dtypes passed to :func:`pandas.read_csv` (ids as ``str`` keep leading zeros).

    Raises:
        DataError: ``"<path>: <what> not found"`` or ``"<path>: cannot read CSV (<error>)"``.
    """
    import pandas as pd  # local: records.py is imported by light modules too

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        return pd.read_csv(path, dtype=dict(dtype) if dtype else None)
    except Exception as exc:
        raise DataError(f"{path}: cannot read CSV ({type(exc).__name__}: {exc})") from exc
