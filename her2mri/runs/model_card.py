"""Model card beside the checkpoints of every training run: ``model_card.json`` and ``MODEL_CARD.md``.

The JSON follows the spirit of a MONAI bundle's ``configs/metadata.json`` (name, version, intended use,
input/output specification, data and performance, references) with what a site needs before it applies the
model: the input specification (phases, orientation, spacing, preprocessing), the training cohort (cases per
split, class and site), the metrics with their confidence intervals, the locked threshold and its rule, the
her2mri version, the seed and the date. ``MODEL_CARD.md`` is the same content for people.

The card id, ``her2mri-<model>-<first 12 hex digits of the best checkpoint's SHA-256>``, names the exact
weights; ``her2mri-predict`` writes it beside every prediction (:func:`card_id_for`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from her2mri.io_utils import atomic_write_text
from her2mri.runs.outputs import _json_safe

CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"
SCHEMA = "her2mri-model-card/1"
INTENDED_USE = (
    "Research on the prediction of HER2 status (HER2-positive vs HER2-negative/low) of breast cancer from "
    "pre-treatment DCE-MRI, with the tumour located by a mask or a box. Not for clinical use: not a medical "
    "device, not validated for diagnosis or treatment decisions."
)
REFERENCES: tuple[str, ...] = (
    "Fridman & Goldstein (Ariel University), THDA-ResNet, HER2 status from DCE-MRI, arXiv:2510.13897",
    "BreastDCEDL (the training data release), Scientific Data, doi:10.1038/s41597-026-06589-6",
    "Youden, Index for rating diagnostic tests, Cancer 1950;3:32-35 (threshold rule)",
    "MONAI Bundle specification, metadata.json (https://docs.monai.io/en/stable/mb_specification.html)",
)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (hex)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_id(model_name: str, sha256: str) -> str:
    """``her2mri-<model>-<sha256[:12]>``."""
    return f"her2mri-{model_name}-{sha256[:12]}"


def card_id_for(ckpt_path: str | Path, model_name: str) -> str:
    """The model-card id of a checkpoint: its card's id when the card beside it lists it, else computed.

    Args:
        ckpt_path: a checkpoint file (or a folder, e.g. an exported model, holding ``model_card.json``).
        model_name: the model name (used when no card lists the file).
    """
    path = Path(ckpt_path)
    folder = path if path.is_dir() else path.parent
    card_file = folder / CARD_JSON
    if card_file.is_file():
        try:
            card = json.loads(card_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            card = {}
        if path.is_dir():
            return str(card.get("id") or card_id(model_name, "0" * 12))
        files = {c.get("file"): c for c in card.get("checkpoints", []) if isinstance(c, dict)}
        entry = files.get(path.name)
        if entry and entry.get("sha256") == file_sha256(path):
            return str(entry.get("card_id") or card.get("id"))
    if path.is_dir():
        return card_id(model_name, "0" * 12)
    return card_id(model_name, file_sha256(path))


def cohort_summary(datamodule: Any) -> dict[str, Any]:
    """Cases per split, class and site of a set-up :class:`~her2mri.data.datamodule.DCEDataModule`.

    Returns:
        ``{"source", "splits": {split: {"patients", "pos", "neg", "unknown", "slices"}},
        "sites": {split: {site: {"patients", "pos", "neg"}}}}``; an empty dict when the datamodule has no
        split datasets (not set up).
    """
    by_split = getattr(datamodule, "datasets_by_split", None) or {}
    if not by_split:
        return {}
    splits: dict[str, Any] = {}
    sites: dict[str, Any] = {}
    for split, ds in by_split.items():
        records = list(getattr(ds, "records", []))
        labels = [r.label for r in records]
        splits[split] = {
            "patients": len(records),
            "pos": sum(y == 1 for y in labels),
            "neg": sum(y == 0 for y in labels),
            "unknown": sum(y is None for y in labels),
            "slices": len(ds),
        }
        per_site: dict[str, dict[str, int]] = {}
        for r in records:
            entry = per_site.setdefault(str(r.site or "unknown"), {"patients": 0, "pos": 0, "neg": 0})
            entry["patients"] += 1
            entry["pos"] += int(r.label == 1)
            entry["neg"] += int(r.label == 0)
        sites[split] = dict(sorted(per_site.items()))
    spacings = [r.spacing for ds in by_split.values() for r in getattr(ds, "records", []) if r.spacing]
    out: dict[str, Any] = {"source": getattr(datamodule, "source", None), "splits": splits, "sites": sites}
    if spacings:
        import numpy as np

        arr = np.asarray(spacings, dtype=float)
        out["spacing_mm_zyx"] = {
            "median": [round(float(v), 4) for v in np.median(arr, axis=0)],
            "min": [round(float(v), 4) for v in arr.min(axis=0)],
            "max": [round(float(v), 4) for v in arr.max(axis=0)],
        }
    return out


def _metrics_with_ci(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Patient-level metrics with their CIs: ``{stage: {name: value}}`` from ``stage/stats/*`` keys."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in sorted(metrics.items()):
        parts = key.split("/")
        if len(parts) == 3 and parts[1] == "stats":
            out.setdefault(parts[0], {})[parts[2]] = value
        elif len(parts) == 2 and parts[1] in ("auroc_patient", "n_patients", "threshold_locked"):
            out.setdefault(parts[0], {})[parts[1]] = value
        elif len(parts) == 2 and parts[1].endswith("_patient_locked"):
            out.setdefault(parts[0], {})[parts[1]] = value
    return out


def build_model_card(
    *,
    model_spec: Mapping[str, Any],
    data_spec: Mapping[str, Any],
    locked_threshold: Mapping[str, Any] | None,
    metrics: Mapping[str, Any],
    cohort: Mapping[str, Any],
    checkpoints: Sequence[tuple[str | Path, str]],
    seed: int | None,
    aggregation: str,
    version: str | None = None,
) -> dict[str, Any]:
    """The model card as a dict (see the module docstring).

    Args:
        model_spec: the model spec (``{"name": ..., ...}``).
        data_spec: ``{"preprocess": {...}, "data": {...}}`` stored in the checkpoint.
        locked_threshold: the best checkpoint's locked threshold (dict) or None.
        metrics: the run's metrics (``stage/name``; ``stage/stats/*`` hold the CIs).
        cohort: :func:`cohort_summary` of the training data.
        checkpoints: ``(path, role)`` pairs, the first the best checkpoint (``best``, ``last``...).
        seed: the run's seed.
        aggregation: slice -> patient aggregation.
        version: her2mri version (default: the installed one).

    Returns:
        The JSON-ready card.
    """
    from her2mri import __version__

    if not checkpoints:
        raise ValueError("checkpoints=[] : a model card describes at least one checkpoint.")
    name = str(model_spec.get("name"))
    entries = []
    for path, role in checkpoints:
        sha = file_sha256(path)
        entries.append({"file": Path(path).name, "role": role, "sha256": sha, "card_id": card_id(name, sha)})
    pre = dict(data_spec.get("preprocess") or {})
    data = dict(data_spec.get("data") or {})
    lt = dict(locked_threshold) if locked_threshold else None
    rule = None
    if lt:
        rule = (
            "Youden index (max sensitivity + specificity - 1) on the validation patients"
            if lt.get("rule") == "youden"
            else f"highest threshold with validation sensitivity >= {lt.get('target_sensitivity')}"
        )
    return {
        "schema": SCHEMA,
        "id": entries[0]["card_id"],
        "name": f"her2mri HER2 classifier ({name})",
        "version": f"{version or __version__}+{entries[0]['sha256'][:12]}",
        "her2mri_version": version or __version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": seed,
        "intended_use": INTENDED_USE,
        "not_for_clinical_use": True,
        "task": "binary classification: HER2-positive (1) vs HER2-negative (0), per patient",
        "model": dict(model_spec),
        "input": {
            "modality": "MR, dynamic contrast-enhanced (DCE) T1-weighted",
            "phases": ["pre-contrast", "early post-contrast", "late post-contrast"],
            "channels": "RGB fusion: R = pre, G = early, B = late (8-bit per channel)",
            "orientation": (
                "canonical orientation from each file's affine (axis_order=affine)"
                if data.get("axis_order") == "affine"
                else f"stored voxel order, axis_order={data.get('axis_order', 'zyx')} (header unused)"
            ),
            "spacing_mm_zyx": cohort.get("spacing_mm_zyx"),
            "tumour_location": "a tumour mask (0/1) or a tumour box is required to crop the slices",
            "preprocessing": pre,
            "imagenet_norm": data.get("imagenet_norm", True),
        },
        "output": {
            "probability": f"{aggregation} over the selected slices of the softmax HER2-positive probability",
            "call": "positive when probability >= threshold",
        },
        "threshold": {"value": lt.get("value") if lt else None, "rule": rule, "chosen_on": lt},
        "training_cohort": dict(cohort),
        "metrics": _metrics_with_ci(metrics),
        "checkpoints": entries,
        "references": list(REFERENCES),
    }


#: bookkeeping entries of the metrics block left out of the markdown table (they stay in the JSON)
_NOT_SHOWN = frozenset({"n_boot", "seed", "conf_level", "threshold_from_val", "auroc_var_delong", "tp", "fp",
                        "tn", "fn"})  # fmt: skip


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return "n/a" if v is None else str(v)


def model_card_markdown(card: Mapping[str, Any]) -> str:
    """``MODEL_CARD.md`` text of a card built by :func:`build_model_card`."""
    inp, thr = card["input"], card["threshold"]
    lines = [
        f"# {card['name']}",
        "",
        f"- **Model card id:** `{card['id']}` (version {card['version']}, her2mri {card['her2mri_version']})",
        f"- **Date:** {card['date']}; **seed:** {card['seed']}",
        "",
        "> **Not for clinical use.** " + card["intended_use"],
        "",
        "## Input",
        f"- {inp['modality']}; phases: {', '.join(inp['phases'])}",
        f"- {inp['channels']}",
        f"- Orientation: {inp['orientation']}",
        f"- Spacing (mm, z/y/x) in training: {inp['spacing_mm_zyx'] or 'not recorded'}",
        f"- {inp['tumour_location']}",
        "- Preprocessing: " + ", ".join(f"`{k}={v}`" for k, v in inp["preprocessing"].items()),
        "",
        "## Output and threshold",
        f"- Probability: {card['output']['probability']}; call: {card['output']['call']}",
        f"- Locked threshold: **{_fmt(thr['value'], 4)}** ({thr['rule'] or 'none stored: 0.5 is used'})",
        "",
        "## Training cohort",
        "",
        "| split | patients | HER2+ | HER2- | slices |",
        "|---|---|---|---|---|",
    ]
    cohort = card["training_cohort"]
    for split, c in (cohort.get("splits") or {}).items():
        lines.append(f"| {split} | {c['patients']} | {c['pos']} | {c['neg']} | {c['slices']} |")
    sites = cohort.get("sites") or {}
    if sites:
        lines += ["", "| split | site | patients | HER2+ | HER2- |", "|---|---|---|---|---|"]
        for split, per in sites.items():
            for site, c in per.items():
                lines.append(f"| {split} | {site} | {c['patients']} | {c['pos']} | {c['neg']} |")
    lines += [
        "",
        "## Metrics (patient level, 95 % CIs)",
        "",
        "| split | metric | value | CI |",
        "|---|---|---|---|",
    ]
    for stage, values in card["metrics"].items():
        for name, value in values.items():
            if name.endswith(("_ci_low", "_ci_high")) or name in _NOT_SHOWN:
                continue
            low, high = values.get(f"{name}_ci_low"), values.get(f"{name}_ci_high")
            ci = f"{_fmt(low)} - {_fmt(high)}" if low is not None and high is not None else ""
            lines.append(f"| {stage} | {name} | {_fmt(value)} | {ci} |")
    lines += ["", "## Checkpoints", ""]
    lines += [f"- `{c['file']}` ({c['role']}), sha256 `{c['sha256']}`" for c in card["checkpoints"]]
    lines += ["", "## References", ""] + [f"- {r}" for r in card["references"]]
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | Path, card: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``model_card.json`` and ``MODEL_CARD.md`` into ``folder`` (atomically).

    Returns:
        The two paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jpath, mpath = folder / CARD_JSON, folder / CARD_MD
    atomic_write_text(jpath, json.dumps(_json_safe(dict(card)), indent=2, allow_nan=False) + "\n")
    atomic_write_text(mpath, model_card_markdown(card))
    return jpath, mpath
