"""BreastDCEDL cohort reader: find phase files and masks by name anywhere under a root, join the metadata CSV.

File names (``k`` is the 0-based acquisition index; acquisitions are sorted by the integer, 10 after 9):

* I-SPY2: ``{pid}_spy2_vis1_dce_aqc_{k}.nii.gz``, mask ``{pid}_spy2_vis1_mask.nii.gz``
* I-SPY1: ``{pid}_spy1_vis1_acq{k}.nii.gz``, mask ``{pid}_spy1_vis1_mask.nii.gz``
* Duke: ``{pid}_duke_aqc_{k}.nii.gz`` (no voxel mask; the tumour box comes from the metadata)

The metadata CSV may be the combined 29-column file or the older 25-column I-SPY2 file. Rules (docs/data.md):

* label: column ``label_col`` (default ``HER2pos``), 0/1; missing or other values raise DataError.
* split: column ``test``: 0 train, 1 test, 2 val. Rows with an empty ``test`` cell are excluded with a warning
  (``nan_split="exclude"``, default) or kept with ``split=None`` (``nan_split="keep"``).
* phases: acquisition indices from ``pre``/``post_early``/``post_late``; an empty cell falls back to
  pre = 0, early = 2 (1 when only two or three acquisitions exist), late = last acquisition, with a warning.
* spacing: (``slice_thick``, ``xy_spacing``, ``xy_spacing``), never the NIfTI header.
* bbox: (``sraw``, ``eraw``, ``scol``, ``ecol``) when those columns exist (combined CSV; needed for Duke).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from her2mri.data.errors import DataError
from her2mri.data.io import check_axis_order
from her2mri.data.records import CaseRecord, check_unique_pids, parse_binary_label, read_csv_checked

PHASE_PATTERNS: dict[str, re.Pattern[str]] = {
    "spy2": re.compile(r"^(?P<pid>.+)_spy2_vis1_dce_aqc_(?P<k>\d+)\.nii(?:\.gz)?$"),
    "spy1": re.compile(r"^(?P<pid>.+)_spy1_vis1_acq(?P<k>\d+)\.nii(?:\.gz)?$"),
    "duke": re.compile(r"^(?P<pid>.+)_duke_aqc_(?P<k>\d+)\.nii(?:\.gz)?$"),
}
MASK_PATTERN: re.Pattern[str] = re.compile(r"^(?P<pid>.+)_(?P<ds>spy1|spy2)_vis1_mask\.nii(?:\.gz)?$")
PHASE_FILE_TEMPLATES: dict[str, str] = {
    "spy2": "{pid}_spy2_vis1_dce_aqc_{k}.nii.gz",
    "spy1": "{pid}_spy1_vis1_acq{k}.nii.gz",
    "duke": "{pid}_duke_aqc_{k}.nii.gz",
}
SPLIT_CODES: dict[int, str] = {0: "train", 1: "test", 2: "val"}
PHASE_COLUMNS: tuple[str, str, str] = ("pre", "post_early", "post_late")
SPACING_COLUMNS: tuple[str, str] = ("slice_thick", "xy_spacing")
BBOX_COLUMNS: tuple[str, str, str, str] = ("sraw", "eraw", "scol", "ecol")
MISSING_MODES: tuple[str, ...] = ("skip", "error")
NAN_SPLIT_MODES: tuple[str, ...] = ("exclude", "keep")


@dataclass
class DiscoveredCase:
    """Files found on disk for one pid.

    Args:
        pid: patient id (file name prefix).
        dataset: ``spy1``, ``spy2`` or ``duke``.
        acquisitions: acquisition index -> file.
        mask: mask file, or None.
    """

    pid: str
    dataset: str
    acquisitions: dict[int, Path] = field(default_factory=dict)
    mask: Path | None = None


def discover_breastdcedl(root: str | Path) -> dict[str, DiscoveredCase]:
    """Find BreastDCEDL phase and mask files by name anywhere under ``root`` (any folder layout).

    Returns:
        pid -> :class:`DiscoveredCase`, acquisitions keyed by their integer index.

    Raises:
        ValueError: ``root`` is not a folder.
        DataError: the same acquisition or mask of a pid is found twice (naming both files), or a pid has
            files of two datasets.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root={str(root)!r} is not a folder")
    cases: dict[str, DiscoveredCase] = {}
    masks: dict[str, tuple[str, Path]] = {}
    for path in sorted(root.rglob("*.nii*")):
        name = path.name
        m = MASK_PATTERN.match(name)
        if m:
            pid = m.group("pid")
            if pid in masks:
                raise DataError(f"{path}: second mask file for pid {pid} (first: {masks[pid][1]})")
            masks[pid] = (m.group("ds"), path)
            continue
        for ds, pattern in PHASE_PATTERNS.items():
            m = pattern.match(name)
            if not m:
                continue
            pid, k = m.group("pid"), int(m.group("k"))
            case = cases.setdefault(pid, DiscoveredCase(pid=pid, dataset=ds))
            if case.dataset != ds:
                raise DataError(f"{path}: pid {pid} has files of two datasets ({case.dataset} and {ds})")
            if k in case.acquisitions:
                raise DataError(
                    f"{path}: acquisition {k} of pid {pid} found twice (first: {case.acquisitions[k]})"
                )
            case.acquisitions[k] = path
            break
    for pid, (ds, path) in masks.items():
        case = cases.setdefault(pid, DiscoveredCase(pid=pid, dataset=ds))
        case.mask = path
    for case in cases.values():
        case.acquisitions = dict(sorted(case.acquisitions.items()))
    return cases


def read_metadata_csv(path: str | Path, required: tuple[str, ...] = ("pid",)) -> pd.DataFrame:
    """Read a metadata CSV (pid as string), checking that ``required`` columns exist and pids are unique.

    Raises:
        DataError: unreadable CSV, a missing column (naming it and the file) or a duplicate pid.
    """
    path = Path(path)
    df = read_csv_checked(path, "metadata CSV", {"pid": str})
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing metadata column(s) {missing}; columns present: {list(df.columns)}")
    if "pid" in df.columns:
        df["pid"] = df["pid"].astype(str).str.strip()
        dup = df["pid"][df["pid"].duplicated()].tolist()
        if dup:
            raise DataError(f"{path}: duplicate pid(s) {sorted(set(dup))[:10]}: every pid must occur once")
    return df


def _is_nan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v.strip() == "")


def _py(v: Any) -> Any:
    """Numpy/pandas scalar -> plain Python value (NaN -> None)."""
    if _is_nan(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def _fallback_phases(n_acq: int) -> tuple[int, int, int]:
    if n_acq >= 4:
        return (0, 2, n_acq - 1)
    if n_acq == 3:
        return (0, 1, 2)
    return (0, min(1, n_acq - 1), n_acq - 1)


def _phase_indices(row: pd.Series, case: DiscoveredCase, csv: Path, fallbacks: list[str]) -> tuple[int, ...]:
    acq = case.acquisitions
    n_acq = max(acq) + 1 if acq else 0
    values = [row.get(c) for c in PHASE_COLUMNS]
    if any(_is_nan(v) for v in values):
        fallbacks.append(case.pid)
        return _fallback_phases(n_acq)
    idx = []
    for col, v in zip(PHASE_COLUMNS, values, strict=True):
        try:
            fv = float(v)
        except (TypeError, ValueError):
            raise DataError(
                f"{csv}: pid {case.pid}: column {col}={v!r} is not a number (a phase index: 0, 1, 2, ...)"
            ) from None
        if not math.isfinite(fv) or fv != int(fv) or fv < 0:
            raise DataError(f"{csv}: pid {case.pid}: {col}={v!r} is not a non-negative integer index")
        idx.append(int(fv))
    return tuple(idx)


def _select_phase_files(case: DiscoveredCase, idx: tuple[int, ...], csv: Path) -> tuple[Path, Path, Path]:
    acq = case.acquisitions
    folder = next(iter(acq.values())).parent
    paths = []
    for col, k in zip(PHASE_COLUMNS, idx, strict=True):
        if k in acq:
            paths.append(acq[k])
            continue
        expected = folder / PHASE_FILE_TEMPLATES[case.dataset].format(pid=case.pid, k=k)
        if k > max(acq):
            raise DataError(
                f"{expected}: phase index {col}={k} (from {csv.name}) is beyond the acquisitions of pid "
                f"{case.pid}: only {sorted(acq)} found in {folder}"
            )
        raise DataError(f"{expected}: missing phase file ({col}={k}) for pid {case.pid}; found {sorted(acq)}")
    return (paths[0], paths[1], paths[2])


def _spacing(row: pd.Series, pid: str, csv: Path) -> tuple[float, float, float]:
    thick, xy = (row.get(c) for c in SPACING_COLUMNS)
    if _is_nan(thick) or _is_nan(xy) or float(thick) <= 0 or float(xy) <= 0:
        raise DataError(f"{csv}: pid {pid}: invalid spacing slice_thick={thick!r}, xy_spacing={xy!r}")
    return (float(thick), float(xy), float(xy))


def _split(row: pd.Series, pid: str, csv: Path, split_col: str | None) -> str | None:
    if split_col is None or split_col not in row.index:
        return None
    v = row[split_col]
    if _is_nan(v):
        return None
    try:
        code = float(v)
    except (TypeError, ValueError):
        code = float("nan")
    if code not in SPLIT_CODES:
        raise DataError(f"{csv}: pid {pid}: {split_col}={v!r} is not a split code (0 train, 1 test, 2 val)")
    return SPLIT_CODES[int(code)]


def _bbox(row: pd.Series) -> tuple[int, int, int, int] | None:
    vals = [row.get(c) for c in BBOX_COLUMNS]
    if any(_is_nan(v) for v in vals):
        return None
    return tuple(int(float(v)) for v in vals)  # type: ignore[return-value]


def _summary(pids: list[str], n: int = 5) -> str:
    head = ", ".join(pids[:n])
    return f"{len(pids)} ({head}{', ...' if len(pids) > n else ''})"


def load_breastdcedl(
    root: str | Path,
    metadata_csv: str | Path,
    *,
    label_col: str = "HER2pos",
    split_col: str | None = "test",
    site_col: str | None = "site",
    axis_order: str = "zyx",
    missing: str = "skip",
    nan_split: str = "exclude",
    require_label: bool = True,
    datasets: tuple[str, ...] | None = None,
) -> list[CaseRecord]:
    """Build one :class:`CaseRecord` per patient of a BreastDCEDL cohort.

    Args:
        root: folder searched recursively for phase and mask files (any layout).
        metadata_csv: combined 29-column or older 25-column metadata CSV.
        label_col: binary label column.
        split_col: split code column (0 train, 1 test, 2 val); None to ignore splits.
        site_col: optional site column, used when present.
        axis_order: axes of the stored arrays (``"zyx"`` as released), kept in ``extra["axis_order"]``.
        missing: what to do with CSV pids that have no phase files or no valid spacing: ``"skip"`` (warn
            and drop, default) or ``"error"`` (DataError listing them).
        nan_split: rows whose split cell is empty: ``"exclude"`` (warn and drop, default) or ``"keep"``
            (``split=None``).
        require_label: raise DataError on an empty label cell (default); else keep with ``label=None``.
        datasets: keep only these datasets (``spy1``, ``spy2``, ``duke``); None keeps all.

    Returns:
        Records in CSV row order.

    Raises:
        DataError: naming the file and the problem (see module docstring).
        ValueError: a bad argument.
    """
    check_axis_order(axis_order)
    if missing not in MISSING_MODES:
        raise ValueError(f"missing={missing!r} must be one of {MISSING_MODES}")
    if nan_split not in NAN_SPLIT_MODES:
        raise ValueError(f"nan_split={nan_split!r} must be one of {NAN_SPLIT_MODES}")
    csv = Path(metadata_csv)
    df = read_metadata_csv(csv, required=("pid", label_col, *SPACING_COLUMNS))
    found = discover_breastdcedl(root)
    if datasets is not None:
        found = {p: c for p, c in found.items() if c.dataset in datasets}

    csv_pids = set(df["pid"])
    no_files = [p for p in df["pid"] if p not in found or not found[p].acquisitions]
    if datasets is not None:  # rows of other datasets are not "missing"
        if "dataset" in df.columns:
            keep = df["dataset"].isin(datasets)
            no_files = [p for p in df.loc[keep, "pid"] if p not in found or not found[p].acquisitions]
    if no_files:
        msg = f"{csv}: {_summary(no_files)} pid(s) in the CSV have no phase files under {root}"
        if missing == "error":
            raise DataError(msg)
        warnings.warn(msg + "; they are skipped", stacklevel=2)
    orphans = sorted(p for p in found if p not in csv_pids)
    if orphans:
        warnings.warn(
            f"{root}: {_summary(orphans)} pid(s) have files but no row in {csv.name}; they are ignored",
            stacklevel=2,
        )

    records: list[CaseRecord] = []
    fallbacks: list[str] = []
    nan_splits: list[str] = []
    no_mask: list[str] = []
    bad_spacing: list[str] = []
    known = set(df.columns)
    used = {"pid", label_col, *PHASE_COLUMNS}
    for _, row in df.iterrows():
        pid = row["pid"]
        case = found.get(pid)
        if case is None or not case.acquisitions:
            continue
        split = _split(row, pid, csv, split_col)
        if split is None and split_col is not None and split_col in known:
            nan_splits.append(pid)
            if nan_split == "exclude":
                continue
        label = parse_binary_label(row[label_col], pid, csv, required=require_label)
        try:
            spacing = _spacing(row, pid, csv)
        except DataError:
            if missing == "error":
                raise
            bad_spacing.append(pid)
            continue
        idx = _phase_indices(row, case, csv, fallbacks)
        phase_paths = _select_phase_files(case, idx, csv)
        bbox = _bbox(row)
        extra = {k: _py(row[k]) for k in known - used}
        extra.update(
            axis_order=axis_order,
            phase_indices=idx,
            n_acquisitions=len(case.acquisitions),
            metadata_csv=str(csv),
        )
        if case.mask is None:
            no_mask.append(pid)
            if case.dataset == "duke" and (bbox is None or extra.get("mask_start") is None):
                raise DataError(
                    f"{csv}: pid {pid} (Duke) has no mask file and no tumour box "
                    f"({', '.join(BBOX_COLUMNS)}, mask_start, mask_end)"
                )
        site = None
        if site_col is not None and site_col in known and not _is_nan(row[site_col]):
            site = str(row[site_col])
        records.append(
            CaseRecord(
                pid=pid,
                label=label,
                split=split,
                phase_paths=phase_paths,
                mask_path=case.mask,
                spacing=spacing,
                bbox=bbox,
                site=site,
                dataset=case.dataset,
                extra=extra,
            )
        )
    if fallbacks:
        warnings.warn(
            f"{csv}: {_summary(fallbacks)} pid(s) have empty pre/post_early/post_late; using the fallback "
            "(0, 2, last acquisition)",
            stacklevel=2,
        )
    if nan_splits:
        action = "excluded" if nan_split == "exclude" else "kept with split=None"
        warnings.warn(
            f"{csv}: {_summary(nan_splits)} pid(s) have an empty '{split_col}' cell: {action}", stacklevel=2
        )
    if bad_spacing:
        warnings.warn(
            f"{csv}: {_summary(bad_spacing)} pid(s) have an empty or invalid slice_thick/xy_spacing; skipped",
            stacklevel=2,
        )
    spy_no_mask = [p for p in no_mask if found[p].dataset != "duke"]
    if spy_no_mask:
        warnings.warn(f"{root}: {_summary(spy_no_mask)} I-SPY pid(s) have no mask file", stacklevel=2)
    check_unique_pids(records, csv)
    return records
