"""``her2mri-predict``: score new cases with one or more trained checkpoints (see ``docs/predict.md``).

Input (``input=``), turned into a manifest CSV first (``<out>/input_manifest.csv``; no labels needed):

* a **manifest CSV** (``data=manifest`` columns; ``mask``/``bbox_*`` columns locate the tumours);
* a **folder of per-phase NIfTI/NRRD/MHA files** of one case: the files in natural name order are the
  acquisitions in time order; pre/early/late = ``phases`` (default: 3 files -> 0, 1, 2; more -> 0, 1 and the
  last, the rule of ``her2mri-import`` without acquisition times); a file whose name contains ``mask`` is the
  mask unless ``mask=`` or ``bbox=`` is given;
* a **DICOM study folder** of one case, imported with :func:`her2mri.data.dicom.import_study` into
  ``<out>/imported/`` (its phase rule, its mask search).

Every checkpoint is applied with the preprocessing stored in it (the same code path as ``her2mri-eval``:
:func:`her2mri.data.prepare.prepare_cohort`, :class:`~her2mri.data.dataset.SliceDataset`, the model's
slice probabilities aggregated per patient with its ``aggregation``), with test-time augmentation ``tta``
(:mod:`her2mri.training.tta`). Per case:

* ``prob``: the mean over the checkpoints of each checkpoint's patient probability;
* ``threshold``: the locked threshold of the checkpoint (several: their mean), or ``threshold=`` if given,
  0.5 with a warning when none is stored; ``call``: ``positive`` when ``prob >= threshold`` (the one rule
  of :mod:`her2mri.stats.thresholds`);
* ``uncertainty``: the standard deviation of the patient probability over the checkpoints (several), else
  over the TTA transforms (each aggregated per patient); ``uncertainty_source`` says which;
* ``n_slices``, ``model_card_id`` (``;``-joined for several checkpoints).

Outputs in ``out``: ``predictions.csv``, ``predictions.json`` (also per-checkpoint and per-transform values),
``gradcam/<case>.png`` (Grad-CAM of the first checkpoint on the case's middle slice, written by
:func:`her2mri.viz.case_gradcam.save_case_gradcams`) and the log.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from her2mri.data.errors import DataError
from her2mri.io_utils import atomic_write_text

log = logging.getLogger(__name__)

VOLUME_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
PREDICTION_COLUMNS: tuple[str, ...] = (
    "case_id",
    "prob",
    "threshold",
    "call",
    "uncertainty",
    "uncertainty_source",
    "n_slices",
    "model_card_id",
)
INPUT_MANIFEST = "input_manifest.csv"
#: ``(module, items by case, prediction rows, out_dir, imagenet_norm) -> {case: PNG path relative to out}``
GradcamWriter = Callable[[Any, Mapping[str, Mapping[str, Any]], Sequence[Mapping[str, Any]], Path, bool],
                         dict[str, str]]  # fmt: skip


# ------------------------------------------------------------------------------------------------ input
def _is_volume(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(VOLUME_SUFFIXES)


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def parse_bbox(bbox: str | Sequence[float] | None) -> list[float] | None:
    """``"z0,z1,y0,y1,x0,x1"`` (or a list of six numbers) -> six floats; None stays None.

    Raises:
        ValueError: not six numbers.
    """
    if bbox is None:
        return None
    values = [v for v in re.split(r"[,\s]+", bbox.strip("[]() ")) if v] if isinstance(bbox, str) else bbox
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"bbox={bbox!r} must be six numbers z0,z1,y0,y1,x0,x1.") from None
    if len(out) != 6:
        raise ValueError(f"bbox={bbox!r} must be six numbers z0,z1,y0,y1,x0,x1; got {len(out)}.")
    return out


def _phase_choice(n: int, phases: Sequence[int] | None, folder: Path) -> tuple[int, int, int]:
    if phases is not None:
        idx = tuple(int(p) for p in phases)
        if len(idx) != 3 or not all(0 <= i < n for i in idx) or not idx[0] < idx[1] < idx[2]:
            raise ValueError(
                f"phases={list(phases)!r} must be three increasing indices in [0, {n - 1}] "
                f"({n} phase files in {folder})."
            )
        return idx  # type: ignore[return-value]
    if n < 3:
        raise DataError(f"{folder}: {n} phase file(s); a case needs at least 3 (pre, early, late).")
    return (0, 1, n - 1)


def _case_row(
    case_id: str,
    phase_files: Sequence[Path],
    mask: Path | None,
    bbox: list[float] | None,
    bbox_unit: str,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "case_id": case_id,
        "pre": str(phase_files[0]),
        "early": str(phase_files[1]),
        "late": str(phase_files[2]),
    }
    if bbox is not None:
        for name, value in zip(("z0", "z1", "y0", "y1", "x0", "x1"), bbox, strict=True):
            row[f"bbox_{name}"] = int(value) if bbox_unit == "voxel" else value
        row["bbox_unit"] = bbox_unit
    elif mask is not None:
        row["mask"] = str(mask)
    return row


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=cols)
    writer.writeheader()
    for r in rows:
        writer.writerow({c: r.get(c, "") for c in cols})
    return atomic_write_text(path, buf.getvalue())


def build_input_manifest(
    source: str | Path,
    out: Path,
    *,
    mask: str | Path | None = None,
    bbox: str | Sequence[float] | None = None,
    bbox_unit: str = "voxel",
    phases: Sequence[int] | None = None,
    case_id: str | None = None,
) -> tuple[Path, str]:
    """Turn ``source`` into a manifest CSV her2mri reads; returns ``(csv_path, kind)``.

    ``kind`` is ``manifest``, ``nifti_folder`` or ``dicom``. A manifest CSV is used as it is (``mask``,
    ``bbox`` and ``phases`` must then be columns of it); the other two are written to
    ``out/input_manifest.csv``.

    Raises:
        FileNotFoundError: ``source`` or ``mask`` does not exist.
        ValueError: ``mask``/``bbox``/``phases`` with a manifest input, both ``mask`` and ``bbox``, a bad box.
        DataError: a folder with neither volume files nor a DICOM study, fewer than 3 phases.
    """
    src = Path(source).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"input={str(source)!r} does not exist.")
    box = parse_bbox(bbox)
    if mask is not None and box is not None:
        raise ValueError(f"mask={str(mask)!r} and bbox={bbox!r}: give one of them.")
    mask_path = Path(mask).expanduser().resolve() if mask is not None else None
    if mask_path is not None and not mask_path.is_file():
        raise FileNotFoundError(f"mask={str(mask)!r} does not exist.")
    if src.is_file():
        if src.suffix.lower() != ".csv":
            raise ValueError(
                f"input={str(source)!r} is a file but not a manifest CSV: give a manifest .csv, a folder of "
                "per-phase volume files, or a DICOM study folder."
            )
        if mask_path is not None or box is not None or phases is not None:
            raise ValueError(
                "mask=, bbox= and phases= apply to a single-case folder input; with a manifest CSV put them "
                "in its mask / bbox_* / pre,early,late columns."
            )
        return src.resolve(), "manifest"
    out.mkdir(parents=True, exist_ok=True)
    volumes = sorted((p for p in src.iterdir() if _is_volume(p)), key=_natural_key)
    phase_files = [p for p in volumes if "mask" not in p.name.lower()]
    if phase_files:  # a folder of phase volumes (a DICOM study may hold a mask volume only)
        found_masks = [p for p in volumes if "mask" in p.name.lower()]
        if mask_path is None and box is None and found_masks:
            if len(found_masks) > 1:
                raise DataError(f"{src}: several mask files {[p.name for p in found_masks]}; pass mask=")
            mask_path = found_masks[0].resolve()
        idx = _phase_choice(len(phase_files), phases, src)
        chosen = [phase_files[i].resolve() for i in idx]
        log.info("NIfTI folder %s: phases %s = %s", src, idx, [p.name for p in chosen])
        row = _case_row(case_id or src.name, chosen, mask_path, box, bbox_unit)
        return _write_csv(out / INPUT_MANIFEST, [row]), "nifti_folder"
    from her2mri.data.dicom import import_study

    if not any(p.is_file() for p in src.rglob("*")):
        raise DataError(f"{src}: empty folder (no volume files, no DICOM study).")
    kwargs: dict[str, Any] = {"case_id": case_id}
    if phases is not None:
        kwargs["phases"] = [int(p) for p in phases]
    imported = out / "imported"
    imported.mkdir(parents=True, exist_ok=True)
    row = import_study(src, imported, **kwargs)
    files = [(imported / str(row[c])).resolve() for c in ("pre", "early", "late")]
    m = row.get("mask")
    found = (imported / m).resolve() if isinstance(m, str) and m else None
    use_mask = mask_path if mask_path is not None else (found if box is None else None)
    out_row = _case_row(str(row["case_id"]), files, use_mask, box, bbox_unit)
    for c in ("spacing_z", "spacing_y", "spacing_x", "site"):
        if row.get(c) not in (None, ""):
            out_row[c] = row[c]
    return _write_csv(out / INPUT_MANIFEST, [out_row]), "dicom"


# ------------------------------------------------------------------------------------------------ scoring
@dataclass
class CheckpointScores:
    """One checkpoint's patient-level results.

    Attributes:
        ckpt_path: the checkpoint.
        model_name: its model.
        card_id: its model-card id.
        locked_threshold: its stored locked threshold (dict) or None.
        pids: patients, in cohort order.
        probs: patient probability (aggregation of the TTA-mean slice probabilities) per patient.
        per_transform: ``(n_transforms, n_patients)`` patient probabilities per TTA transform.
        n_slices: slices per patient.
        gradcam_item: per patient, the middle slice's ``image`` and ``mask`` (for the overlay).
    """

    ckpt_path: str
    model_name: str
    card_id: str
    locked_threshold: Mapping[str, Any] | None
    pids: tuple[str, ...]
    probs: np.ndarray
    per_transform: np.ndarray
    n_slices: np.ndarray
    imagenet_norm: bool = True
    gradcam_item: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_checkpoint(path: str | Path) -> Any:
    """A ``HER2Classifier`` from a checkpoint, loaded safely (no pickled code) on the CPU, in eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ckpt_path={str(path)!r} does not exist.")
    from her2mri.training.module import load_classifier  # safe: .ckpt or a her2mri-export folder

    return load_classifier(path, map_location="cpu").eval()


def score_checkpoint(
    module: Any,
    ckpt_path: str,
    records: Sequence[Any],
    *,
    tta: str = "flip",
    batch_size: int = 32,
    preprocess_overrides: Mapping[str, Any] | None = None,
    arrays_cache: dict[str, list[dict[str, np.ndarray]]] | None = None,
    progress: bool = True,
) -> CheckpointScores:
    """Score every record with one checkpoint (its stored preprocessing; TTA ``tta``).

    Args:
        module: the loaded ``HER2Classifier``.
        ckpt_path: its path (for the card id).
        records: the cases (:class:`~her2mri.data.records.CaseRecord`).
        tta: ``none``, ``flip`` or ``flip_rot``.
        batch_size: slices per forward pass.
        preprocess_overrides: ``PreprocessConfig`` fields that replace the checkpoint's (rarely wanted).
        arrays_cache: preprocessed arrays keyed by ``PreprocessConfig.key()``, shared between checkpoints.
        progress: progress bars.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from her2mri.data.dataset import SliceDataset
    from her2mri.data.prepare import prepare_cohort
    from her2mri.runs.model_card import card_id_for
    from her2mri.runs.scoring import checkpoint_preprocess
    from her2mri.training.aggregation import aggregate_patients, collect_slices
    from her2mri.training.tta import tta_probabilities

    spec = module.hparams.model
    data_spec = module.hparams.get("data_spec") or {}
    pre = checkpoint_preprocess(module, ckpt_path, preprocess_overrides)  # the same as her2mri-eval
    imagenet_norm = bool((data_spec.get("data") or {}).get("imagenet_norm", True))
    key = pre.key()
    if arrays_cache is not None and key in arrays_cache:
        arrays = arrays_cache[key]
    else:
        arrays = prepare_cohort(list(records), pre, None, 0, progress)
        if arrays_cache is not None:
            arrays_cache[key] = arrays
    with_mask = bool(arrays) and all("masks" in a for a in arrays)
    norm_dim = -4 if pre.views == "volume" else -3  # RGB axis of the ImageNet statistics (as DCEDataModule)
    ds = SliceDataset(list(records), arrays, None, imagenet_norm, with_mask, channel_dim=norm_dim)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    pids: list[str] = []
    sidx: list[int] = []
    probs: list[np.ndarray] = []
    items: dict[str, list[dict[str, Any]]] = {}
    with torch.no_grad():
        for batch in tqdm(loader, desc=f"scoring {Path(ckpt_path).name}", disable=not progress, leave=False):
            p = tta_probabilities(module, batch["image"], tta)  # (T, B)
            probs.append(p.double().cpu().numpy())
            batch_pids = [str(x) for x in batch["pid"]]
            batch_sidx = torch.as_tensor(batch["slice_idx"]).long().reshape(-1).tolist()
            pids += batch_pids
            sidx += batch_sidx
            for j, pid in enumerate(batch_pids):
                mask = batch["mask"][j] if "mask" in batch else None
                items.setdefault(pid, []).append(
                    {"image": batch["image"][j], "mask": mask, "slice_idx": batch_sidx[j]}
                )
    if not pids:
        raise DataError("no slice was produced for the input cases (empty masks or boxes?).")
    all_probs = np.concatenate(probs, axis=1)  # (T, n_slices)
    labels = np.full(len(pids), -1, dtype=np.int64)
    method = str(module.hparams.aggregation)
    mean_pat = aggregate_patients(collect_slices(pids, sidx, labels, all_probs.mean(0)), method)
    per_t = []
    for t in range(all_probs.shape[0]):
        pt = aggregate_patients(collect_slices(pids, sidx, labels, all_probs[t]), method)
        per_t.append(np.asarray([dict(zip(pt.pids, pt.probs, strict=True))[p] for p in mean_pat.pids]))
    gradcam_item = {}
    for pid, its in items.items():
        its = sorted(its, key=lambda d: d["slice_idx"])
        gradcam_item[pid] = its[len(its) // 2]
    return CheckpointScores(
        ckpt_path=str(ckpt_path),
        model_name=str(spec["name"]),
        card_id=card_id_for(ckpt_path, str(spec["name"])),
        locked_threshold=module.hparams.get("locked_threshold"),
        pids=tuple(mean_pat.pids),
        probs=np.asarray(mean_pat.probs, dtype=np.float64),
        per_transform=np.stack(per_t),
        n_slices=np.asarray(mean_pat.n_slices),
        imagenet_norm=imagenet_norm,
        gradcam_item=gradcam_item,
    )


def combine(
    scores: Sequence[CheckpointScores], tta: str, threshold: float | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-case prediction rows (``PREDICTION_COLUMNS`` plus detail) and the threshold info.

    Raises:
        ValueError: the checkpoints scored different cases.
    """
    from her2mri.stats.thresholds import called_positive
    from her2mri.training.threshold import resolve_threshold

    first = scores[0]
    for s in scores[1:]:
        if s.pids != first.pids:
            raise ValueError(f"{s.ckpt_path} scored cases {s.pids}, {first.ckpt_path} scored {first.pids}.")
    resolved = [resolve_threshold(s.locked_threshold, threshold) for s in scores]
    thr = float(np.mean([v for v, _ in resolved]))
    sources = sorted({src for _, src in resolved})
    info = {
        "value": thr,
        "sources": sources,
        "rule": "given" if threshold is not None else ("locked" if len(scores) == 1 else "mean of locked"),
        "per_checkpoint": [v for v, _ in resolved],
    }
    probs = np.stack([s.probs for s in scores])  # (K, n)
    rows = []
    for i, pid in enumerate(first.pids):
        prob = float(probs[:, i].mean())
        if len(scores) > 1:
            unc, unc_src = float(probs[:, i].std()), f"sd over {len(scores)} checkpoints"
        elif first.per_transform.shape[0] > 1:
            unc, unc_src = (
                float(first.per_transform[:, i].std()),
                f"sd over {tta} TTA ({first.per_transform.shape[0]})",
            )
        else:
            unc, unc_src = float("nan"), "none (one checkpoint, tta=none)"
        rows.append(
            {
                "case_id": pid,
                "prob": prob,
                "threshold": thr,
                "call": "positive" if bool(called_positive(prob, thr)) else "negative",
                "uncertainty": unc,
                "uncertainty_source": unc_src,
                "n_slices": int(first.n_slices[i]),
                "model_card_id": ";".join(s.card_id for s in scores),
                "per_checkpoint": [
                    {
                        "ckpt_path": s.ckpt_path,
                        "model_card_id": s.card_id,
                        "prob": float(s.probs[i]),
                        "per_transform": [float(v) for v in s.per_transform[:, i]],
                    }
                    for s in scores
                ],
            }
        )
    return rows, info


def _apply_calibration(
    rows: list[dict[str, Any]], ckpts: list[str], calibration: str | Path | None
) -> tuple[dict[str, Any] | None, list[str]]:
    """Add ``prob_recalibrated`` / ``conformal_call`` to ``rows`` from the calibration file, if any.

    Returns:
        ``(info for predictions.json or None, the extra CSV columns)``.
    """
    from her2mri.training.calibrator import load_calibration, resolve_calibration

    path = resolve_calibration(ckpts, calibration)
    if path is None:
        return None, []
    bundle = load_calibration(path)
    if bundle.ckpt_path and Path(bundle.ckpt_path).name != Path(ckpts[0]).name:
        log.warning("%s was fitted for %s, applied to %s", path, bundle.ckpt_path, ckpts[0])
    applied = bundle.apply(np.asarray([r["prob"] for r in rows], dtype=np.float64))
    columns = []
    if bundle.recalibrator is not None:
        columns.append("prob_recalibrated")
        for r, q in zip(rows, applied["prob"], strict=True):
            r["prob_recalibrated"] = float(q)
    if applied["call"] is not None:
        columns.append("conformal_call")
        for r, c in zip(rows, applied["call"], strict=True):
            r["conformal_call"] = c
    info = {
        "file": str(path),
        "recalibration": bundle.recalibrator.method if bundle.recalibrator is not None else None,
        "conformal_alpha": bundle.conformal.alpha if bundle.conformal is not None else None,
        "conformal_mode": bundle.conformal.mode if bundle.conformal is not None else None,
        "calibration_set": bundle.calibration_set,
    }
    log.info("calibration applied: %s", path)
    return info, columns


def _ckpt_list(ckpt_path: str | Sequence[str]) -> list[str]:
    if isinstance(ckpt_path, str | Path):
        items = [str(ckpt_path)]
    else:
        items = [str(c) for c in ckpt_path]
    if not items:
        raise ValueError("ckpt_path=[] : give one checkpoint or a list of them.")
    return items


def predict(
    ckpt_path: str | Sequence[str],
    input: str | Path,  # noqa: A002 - the public option name
    out: str | Path,
    *,
    mask: str | Path | None = None,
    bbox: str | Sequence[float] | None = None,
    bbox_unit: str = "voxel",
    phases: Sequence[int] | None = None,
    case_id: str | None = None,
    axis_order: str = "affine",
    tta: str = "flip",
    threshold: float | None = None,
    gradcam: GradcamWriter | None = None,
    batch_size: int = 32,
    progress: bool = True,
    calibration: str | Path | None = "auto",
) -> dict[str, Any]:
    """Score the input cases with the checkpoint(s) and write ``predictions.csv``/``.json`` and Grad-CAMs.

    Args:
        ckpt_path: one checkpoint or several (an ensemble: mean probability, spread = uncertainty).
        input: manifest CSV, folder of per-phase volumes of one case, or a DICOM study folder.
        out: output folder (created).
        mask: tumour mask file of a single-case folder input.
        bbox: tumour box ``z0,z1,y0,y1,x0,x1`` of a single-case folder input (``bbox_unit``).
        bbox_unit: ``voxel``, ``mm``/``mm_lps`` or ``mm_ras`` (see :mod:`her2mri.data.manifest`).
        phases: pre/early/late indices among a folder's phase files (default rule in the module docstring).
        case_id: case id of a folder input (default: folder name, or the DICOM Patient ID).
        axis_order: how volumes are oriented (``affine``: from the headers; ``zyx``/``xyz`` when wrong).
        tta: ``none``, ``flip`` (default) or ``flip_rot``.
        threshold: a threshold that replaces the locked one(s).
        gradcam: writes ``gradcam/<case>.png`` (``her2mri.viz.case_gradcam.save_case_gradcams``; the CLI
            passes it, ``runs`` may not import ``viz``); None writes none.
        batch_size: slices per forward pass.
        progress: progress bars.
        calibration: ``auto`` (default: apply ``<ckpt>.calibration.json`` written by ``her2mri-eval
            recalibrate=... conformal_alpha=...`` when it is beside a single checkpoint), ``none``, or a
            calibration file. Adds ``prob_recalibrated`` and ``conformal_call`` (HER2-, HER2+, uncertain,
            empty); ``prob``, ``threshold`` and ``call`` stay those of the model's own probability.

    Returns:
        The ``predictions.json`` payload.
    """
    from tqdm.auto import tqdm

    from her2mri.data.manifest import read_manifest
    from her2mri.training.tta import check_tta

    t0 = time.perf_counter()
    check_tta(tta)
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1.")
    ckpts = _ckpt_list(ckpt_path)
    for c in ckpts:
        if not Path(c).exists():
            raise FileNotFoundError(f"ckpt_path={c!r} does not exist.")
    out_dir = Path(out).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest, kind = build_input_manifest(
        input, out_dir, mask=mask, bbox=bbox, bbox_unit=bbox_unit, phases=phases, case_id=case_id
    )
    records = read_manifest(manifest, require_label=False, axis_order=axis_order)
    log.info("%d case(s) from %s (%s)", len(records), input, kind)
    cache: dict[str, list[dict[str, np.ndarray]]] = {}
    scores: list[CheckpointScores] = []
    first_module = None
    for c in tqdm(ckpts, desc="checkpoints", disable=not progress or len(ckpts) == 1):
        module = load_checkpoint(c)
        scores.append(
            score_checkpoint(
                module, c, records, tta=tta, batch_size=int(batch_size), arrays_cache=cache, progress=progress
            )
        )
        if first_module is None:
            first_module = module
    rows, thr_info = combine(scores, tta, threshold)
    cal_info, cal_columns = _apply_calibration(rows, ckpts, calibration)
    if gradcam is not None and first_module is not None:
        files = gradcam(
            first_module, scores[0].gradcam_item, rows, out_dir / "gradcam", scores[0].imagenet_norm
        )
        for r in rows:
            r["gradcam_png"] = files.get(r["case_id"])
    _write_csv(
        out_dir / "predictions.csv",
        rows,
        [*PREDICTION_COLUMNS, *cal_columns, *(["gradcam_png"] if gradcam else [])],
    )
    from her2mri.runs.outputs import _json_safe

    payload = {
        "input": str(input),
        "input_kind": kind,
        "input_manifest": str(manifest),
        "checkpoints": [
            {"ckpt_path": s.ckpt_path, "model": s.model_name, "model_card_id": s.card_id} for s in scores
        ],  # fmt: skip
        "tta": tta,
        "threshold": thr_info,
        "calibration": cal_info,
        "not_for_clinical_use": True,
        "cases": rows,
        "wall_time_s": round(time.perf_counter() - t0, 2),
    }
    atomic_write_text(
        out_dir / "predictions.json", json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n"
    )
    return payload
