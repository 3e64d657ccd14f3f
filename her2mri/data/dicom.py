"""DICOM studies -> a cohort every her2mri command reads (``her2mri-import``; see ``docs/dicom.md``).

:func:`import_study` turns one study folder into one NIfTI per DCE acquisition (time order) plus the tumour
mask when one is found, and returns its manifest row; :func:`import_cohort` does it for every patient folder
of a source folder and writes ``manifest.csv``, readable by ``data=manifest``.

Output layout (``OUT``)::

    manifest.csv                 one row per case (columns: see MANIFEST_COLUMNS / docs/dicom.md)
    import_report.json           per case: layout, acquisitions, times, chosen phases (no identifying value)
    {case_id}/acq_{k:02d}.nii.gz acquisition k in time order (k = 0 is the first), RAS affine from the DICOM
    {case_id}/mask.nii.gz        tumour mask on the grid of acquisition 0 (when a mask file was found)

**Phase rule** (:class:`PhaseRule`): pre = the first acquisition in time; early = the post-contrast
acquisition whose start is nearest to ``early_s`` (default 120 s) after the start of the first post-contrast
acquisition (index 1; ties go to the earlier one) and before the late one; late = the last acquisition, or
the one nearest to ``late_s`` when given. Without acquisition times, (0, 1, last). Explicit indices override
the rule.

**No protected health information** reaches an output: the NIfTI headers are written from scratch (no
description, no DICOM attribute), the manifest and report hold the case id, relative paths, times in seconds
after the first acquisition, spacing, site, manufacturer and field strength only. The case id is the Patient
ID, or with ``pseudonymize`` ``"anon-"`` + the first 16 hex digits of HMAC-SHA256(salt, Patient ID); the
mapping goes to a separate key file (:func:`import_cohort`).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2mri.data.dicom_series import build_volume, find_dce, order_in_time, read_headers, split_acquisitions
from her2mri.data.errors import DataError
from her2mri.data.geometry import canonical_spacing, lps_to_ras, mask_on_grid, to_canonical
from her2mri.data.io import compact_dtype
from her2mri.data.phases import PhaseRule, parse_phases
from her2mri.data.pseudonym import default_key_file, load_key, pseudonym
from her2mri.io_utils import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)
__all__ = [
    "MANIFEST_COLUMNS",
    "PhaseRule",
    "default_key_file",
    "find_mask",
    "import_cohort",
    "import_study",
    "parse_phases",
    "pseudonym",
]

MANIFEST_COLUMNS: tuple[str, ...] = (
    "case_id",
    "label",
    "split",
    "site",
    "pre",
    "early",
    "late",
    "mask",
    "phase_indices",
    "n_phases",
    "phase_files",
    "acq_times_s",
    "spacing_z",
    "spacing_y",
    "spacing_x",
    "layout",
    "manufacturer",
    "field_strength",
)
DEFAULT_MASK_PATTERN: str = "{study}/**/*mask*"
MASK_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
MARKER: str = ".her2mri-import"
CASE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _atomic_nifti(arr_ijk: np.ndarray, affine_ras: np.ndarray, path: Path) -> None:
    """Write a NIfTI with a fresh header (no description, no DICOM value) through a temporary file."""
    import nibabel as nib

    img = nib.Nifti1Image(arr_ijk, affine_ras)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine_ras, code=1)
    img.set_sform(affine_ras, code=1)
    atomic_write_bytes(path, gzip.compress(img.to_bytes()) if path.name.endswith(".gz") else img.to_bytes())


def _load_with_affine(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(array in file index order, RAS affine) of a NIfTI or ITK image (for masks)."""
    from her2mri.data.io import read_with_affine

    return read_with_affine(path)


def find_mask(
    study_dir: Path, patient_id: str, *, masks_root: Path | None = None, pattern: str = DEFAULT_MASK_PATTERN
) -> Path | None:
    """The mask file of a study, found by ``pattern``.

    ``pattern`` is a glob relative to ``masks_root`` (default: the folder holding the study folders) in which
    ``{study}`` is the study folder's name and ``{patient_id}`` the Patient ID (both glob-escaped). Only
    NIfTI/NRRD/MHA files count. Default ``{study}/**/*mask*``: a file with "mask" in its name anywhere inside
    the study folder.

    Raises:
        DataError: more than one file matches.
    """
    root = study_dir.parent if masks_root is None else Path(masks_root)
    glob = pattern.format(study=glob_escape(study_dir.name), patient_id=glob_escape(patient_id))
    hits = sorted(p for p in root.glob(glob) if p.is_file() and p.name.lower().endswith(MASK_SUFFIXES))
    if len(hits) > 1:
        raise DataError(
            f"{study_dir}: {len(hits)} mask files match {pattern!r}: {[str(h) for h in hits[:5]]}"
        )
    return hits[0] if hits else None


def _case_id(
    patient_ids: set[str], study_dir: Path, case_id: str | None, pseudonymize: bool, salt: str | None
) -> tuple[str, str]:
    if len(patient_ids) > 1:
        raise DataError(
            f"{study_dir}: DCE files of {len(patient_ids)} different Patient IDs in one study folder"
        )
    pid = next(iter(patient_ids), "")
    if case_id is not None:
        cid = str(case_id)
    elif not pid:
        raise DataError(f"{study_dir}: the DCE files have no Patient ID; pass case_id")
    elif pseudonymize:
        if not salt:
            raise ValueError("salt=None: pseudonymize=True needs a non-empty salt")
        cid = pseudonym(pid, salt)
    else:
        cid = pid
    if not CASE_ID_RE.match(cid) or cid in (".", ".."):
        raise DataError(
            f"{study_dir}: case id {cid!r} is not usable as a folder name; pass case_id or pseudonymize"
        )
    return cid, pid


def _import(
    study_dir: Path,
    out_dir: Path,
    *,
    case_id: str | None,
    pseudonymize: bool,
    salt: str | None,
    phases: PhaseRule | Sequence[int] | str | None,
    site: str | None,
    masks_root: Path | None,
    mask_pattern: str | None,
    min_phases: int,
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    rule = parse_phases(phases)
    study_dir, out_dir = Path(study_dir), Path(out_dir)
    if not study_dir.is_dir():
        raise DataError(f"{study_dir}: study folder not found")
    t0 = time.perf_counter()
    slices, skipped = read_headers(study_dir)
    if not slices:
        raise DataError(
            f"{study_dir}: no DCE series found: no DICOM image file in the folder ({skipped} other files)"
        )
    acqs = find_dce(split_acquisitions(slices, study_dir), study_dir, min_phases=min_phases)
    acqs, time_attr = order_in_time(acqs, study_dir)
    cid, pid = _case_id(
        {s.patient_id for a in acqs for s in a.slices}, study_dir, case_id, pseudonymize, salt
    )
    times = [a.time_s for a in acqs]
    pre, early, late = rule.choose(times, case=str(study_dir))
    mask_src = (
        None
        if mask_pattern == ""
        else find_mask(study_dir, pid, masks_root=masks_root, pattern=mask_pattern or DEFAULT_MASK_PATTERN)
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / cid
    if final.exists() and not (final / MARKER).is_file():
        raise DataError(f"{final}: exists and was not written by her2mri-import; choose another OUT")
    work = Path(tempfile.mkdtemp(prefix=f".{cid}.", dir=out_dir))
    try:
        (work / MARKER).write_text("written by her2mri-import\n")
        files, ref = [], None
        pixel_cache: dict[Path, np.ndarray] = {}  # decoded enhanced (multi-frame) files of this study
        for k, acq in enumerate(acqs):
            vol = build_volume(acq, study_dir, pixel_cache=pixel_cache)
            if ref is None:
                ref = vol
            elif vol.array.shape != ref.array.shape or not np.allclose(
                vol.affine_lps, ref.affine_lps, atol=1e-3
            ):
                raise DataError(
                    f"{study_dir}: {vol.files[0]}: acquisition {k} (series {acq.series_number}) is on "
                    "another grid "
                    f"than acquisition 0 ({ref.files[0]}): origin/axes differ by "
                    f"{np.abs(vol.affine_lps - ref.affine_lps).max():.3f} mm"
                )
            name = f"acq_{k:02d}.nii.gz"
            _atomic_nifti(
                compact_dtype(vol.array).transpose(2, 1, 0), lps_to_ras(vol.affine_lps), work / name
            )
            files.append(f"{cid}/{name}")
        if ref is None:  # unreachable: the DCE set holds at least 3 acquisitions
            raise DataError(f"{study_dir}: no acquisition was built")
        ref_affine = lps_to_ras(ref.affine_lps)
        ref_shape = ref.array.shape[::-1]
        mask_rel = ""
        if mask_src is not None:
            m_arr, m_aff = _load_with_affine(mask_src)
            mask = mask_on_grid(m_arr, m_aff, ref_shape, ref_affine, path=mask_src, ref_name=f"{cid}/acq_00")
            if not mask.any():
                raise DataError(f"{mask_src}: mask is empty (no voxel > 0)")
            _atomic_nifti(mask, ref_affine, work / "mask.nii.gz")
            mask_rel = f"{cid}/mask.nii.gz"
        if final.exists():
            shutil.rmtree(final)  # only a folder carrying her2mri-import's marker (checked above)
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _, canon_affine = to_canonical(np.empty(ref_shape, dtype=np.uint8), ref_affine)
    sz, sy, sx = canonical_spacing(canon_affine)
    first = acqs[0].slices[0]
    row = {
        "case_id": cid,
        "label": "",
        "split": "",
        "site": site or "",
        "pre": files[pre],
        "early": files[early],
        "late": files[late],
        "mask": mask_rel,
        "phase_indices": f"{pre},{early},{late}",
        "n_phases": len(files),
        "phase_files": ";".join(files),
        "acq_times_s": ";".join("" if t is None else f"{t:g}" for t in times),
        "spacing_z": round(sz, 6),
        "spacing_y": round(sy, 6),
        "spacing_x": round(sx, 6),
        "layout": acqs[0].layout,
        "manufacturer": first.manufacturer,
        "field_strength": "" if first.field_strength is None else first.field_strength,
    }
    report = {
        "case_id": cid,
        "layout": acqs[0].layout,
        "n_acquisitions": len(acqs),
        "series_numbers": [a.series_number for a in acqs],
        "time_attribute": time_attr,
        "acq_times_s": times,
        "phase_indices": [pre, early, late],
        "shape_zyx": list(ref.array.shape),
        "mask": bool(mask_rel),
        "files_skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    log.info(
        "imported %s: %d acquisitions (%s), phases %s", cid, len(acqs), acqs[0].layout, (pre, early, late)
    )
    return row, pid, report


def import_study(
    study_dir: Path,
    out_dir: Path,
    *,
    case_id: str | None = None,
    pseudonymize: bool = False,
    salt: str | None = None,
    phases: PhaseRule | Sequence[int] | str | None = None,
    site: str | None = None,
    masks_root: Path | None = None,
    mask_pattern: str | None = None,
    min_phases: int = 3,
) -> dict[str, Any]:
    """Import one DICOM study folder: one NIfTI per DCE acquisition (time order) and the mask, if found.

    Args:
        study_dir: the study folder (any file names, nested folders allowed).
        out_dir: the cohort folder; the case goes to ``out_dir/{case_id}/`` (written atomically; a folder of
            that name not written by her2mri-import is never replaced).
        case_id: the case id; default the Patient ID, or its pseudonym with ``pseudonymize``.
        pseudonymize: case id = :func:`pseudonym` of the Patient ID (needs ``salt``).
        salt: secret salt of the pseudonym.
        phases: the phase choice: None (default rule), three indices, a :class:`PhaseRule` or a string
            (see :func:`parse_phases`).
        site: value of the ``site`` column.
        masks_root: folder the mask pattern is relative to (default: the parent of ``study_dir``).
        mask_pattern: glob for the mask (see :func:`find_mask`); ``""`` looks for no mask.
        min_phases: fewest acquisitions a DCE set may have.

    Returns:
        The manifest row (see ``MANIFEST_COLUMNS``), paths relative to ``out_dir``.

    Raises:
        DataError: naming the study and a file (no DCE series, slice positions, spacing, orientations, grids,
            masks).
        ValueError: a bad argument (``phases``, ``salt``).
    """
    row, _, _ = _import(
        study_dir,
        out_dir,
        case_id=case_id,
        pseudonymize=pseudonymize,
        salt=salt,
        phases=phases,
        site=site,
        masks_root=masks_root,
        mask_pattern=mask_pattern,
        min_phases=min_phases,
    )
    return row


def _read_labels(labels_csv: Path) -> dict[str, dict[str, Any]]:
    from her2mri.data.records import read_csv_checked

    df = read_csv_checked(Path(labels_csv), "labels CSV", {"patient_id": str})
    if "patient_id" not in df.columns:
        raise DataError(f"{labels_csv}: needs a 'patient_id' column (and any of label, split, site)")
    keep = [c for c in ("label", "split", "site") if c in df.columns]
    out: dict[str, dict[str, Any]] = {}
    for _, r in df.iterrows():
        out[str(r["patient_id"]).strip()] = {c: ("" if pd.isna(r[c]) else r[c]) for c in keep}
    return out


def _write_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def import_cohort(
    src: Path,
    out: Path,
    *,
    pseudonymize: bool = False,
    salt: str | None = None,
    key_file: Path | None = None,
    phases: PhaseRule | Sequence[int] | str | None = None,
    site: str | None = None,
    labels_csv: Path | None = None,
    masks_root: Path | None = None,
    mask_pattern: str | None = None,
    min_phases: int = 3,
    on_error: str = "stop",
    show_progress: bool = False,
) -> Path:
    """Import every patient folder of ``src`` and write ``out/manifest.csv`` (readable by ``data=manifest``).

    Args:
        src: folder with one sub-folder per patient (study).
        out: the cohort folder (created).
        pseudonymize: pseudonymous case ids; the salt and the mapping case id -> Patient ID go to
            ``key_file``.
        salt: the secret salt; default: the one stored in an existing ``key_file``, else a new random one.
        key_file: the key file (JSON); default :func:`default_key_file` (beside ``out``, not inside it).
        phases: the phase choice (see :func:`parse_phases`).
        site: value of the ``site`` column (a labels CSV ``site`` column wins).
        labels_csv: CSV with ``patient_id`` and any of ``label``, ``split``, ``site``, joined on the Patient
            ID.
        masks_root: folder the mask pattern is relative to (default ``src``).
        mask_pattern: glob for each case's mask (see :func:`find_mask`).
        min_phases: fewest acquisitions a DCE set may have.
        on_error: ``stop`` (default: the first bad study raises) or ``skip`` (bad studies are reported on
            stderr through logging and left out).
        show_progress: tqdm progress bar.

    Returns:
        The path of ``manifest.csv``.

    Raises:
        DataError: a bad study (``on_error="stop"``), no importable study, two studies with one case id.
        ValueError: a bad argument.
    """
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error={on_error!r} must be 'stop' or 'skip'")
    rule = parse_phases(phases)
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise ValueError(f"out={str(out)!r} must not be inside src={str(src)!r}")
    studies = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not studies:
        raise DataError(f"{src}: no study folders (expected one sub-folder per patient)")
    labels = _read_labels(labels_csv) if labels_csv is not None else {}
    key_path = Path(key_file) if key_file is not None else default_key_file(out)
    if pseudonymize and out.resolve() in key_path.resolve().parents:
        raise ValueError(f"key_file={str(key_path)!r} must not be inside out={str(out)!r}")
    use_salt, mapping = load_key(key_path, salt) if pseudonymize else (None, {})
    rows: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    seen: dict[str, Path] = {}
    unlabelled: list[str] = []
    n_failed = 0
    iterator: Any = studies
    if show_progress:
        from tqdm import tqdm

        iterator = tqdm(studies, desc="importing", unit="study")
    for study in iterator:
        try:
            row, pid, report = _import(
                study,
                out,
                case_id=None,
                pseudonymize=pseudonymize,
                salt=use_salt,
                phases=rule,
                site=site,
                masks_root=masks_root if masks_root is not None else src,
                mask_pattern=mask_pattern,
                min_phases=min_phases,
            )
        except DataError as exc:
            if on_error == "stop":
                raise
            n_failed += 1
            log.error("skipped: %s", exc)
            continue
        if row["case_id"] in seen:
            raise DataError(f"{study}: case id {row['case_id']} already imported from {seen[row['case_id']]}")
        seen[row["case_id"]] = study
        if labels and pid not in labels:
            unlabelled.append(row["case_id"])
        for col, val in labels.get(pid, {}).items():
            row[col] = val
        if pseudonymize:
            mapping[row["case_id"]] = pid
        rows.append(row)
        reports.append(report)
    if not rows:
        raise DataError(f"{src}: no study could be imported ({n_failed} failed)")
    if unlabelled:
        log.warning(
            "%d case(s) have no row in %s (label left empty): %s",
            len(unlabelled),
            labels_csv,
            ", ".join(unlabelled[:10]),
        )  # case ids only: pseudonyms when pseudonymizing
    manifest = out / "manifest.csv"
    atomic_write_text(manifest, pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(index=False))
    _write_atomic(out / "import_report.json", json.dumps({"cases": reports, "failed": n_failed}, indent=1))
    if pseudonymize:
        key_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(key_path, json.dumps({"salt": use_salt, "cases": mapping}, indent=1, sort_keys=True))
        os.chmod(key_path, 0o600)
    return manifest
