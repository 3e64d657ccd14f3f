"""``her2mri-export``: a self-contained, code-free copy of a checkpoint (safetensors weights + ``spec.json``).

The classifier is rebuilt with :func:`her2mri.training.module.load_classifier` (which checks that the weights
fit the model) and its weights and hyper-parameters are written as safetensors and JSON, absolute paths
redacted by default. :func:`~her2mri.training.module.load_classifier` reads such a folder back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import torch

from her2mri.io_utils import atomic_write, atomic_write_text, clean_stale_temps
from her2mri.training.checkpoint_io import EXPORT_FORMAT, EXPORT_SPEC, EXPORT_WEIGHTS
from her2mri.training.module import load_classifier

log = logging.getLogger(__name__)

REDACTED = "<redacted>"


def _json_plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_plain(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def redact_paths(obj: Any) -> Any:
    """A copy of ``obj`` (plain data) where every absolute path string is replaced by ``"<redacted>"``.

    Used for shared artefacts: data paths can hold site or patient names.
    """
    if isinstance(obj, Mapping):
        return {k: redact_paths(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_paths(v) for v in obj]
    if isinstance(obj, str) and (os.path.isabs(obj) or obj.startswith("~")):
        return REDACTED
    return obj


def _sha256(path: Path) -> str:

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_classifier(
    ckpt_path: str | Path, out_dir: str | Path, redact: bool = True, overwrite: bool = False
) -> Path:
    """Write a self-contained, code-free copy of a checkpoint: ``model.safetensors`` + ``spec.json``.

    The spec holds the model spec (without ``pretrained``/``weights_path``), every hyper-parameter, the
    ``data_spec`` (preprocessing) and the checkpoint's ``her2mri`` block (threshold, model card id...). Both
    files are written atomically, ``spec.json`` last, so a folder with a ``spec.json`` is complete;
    :func:`load_classifier`, ``her2mri-eval`` and ``her2mri-predict`` accept the folder.

    Args:
        ckpt_path: a ``her2mri-train`` checkpoint (or an earlier export folder).
        out_dir: the export folder (created; must be new, empty or an earlier her2mri export).
        redact: replace absolute paths (data root, metadata CSV, cache) by ``"<redacted>"`` (default; the
            export is meant to be shared). The weights and the preprocessing are unaffected.
        overwrite: replace an earlier export in ``out_dir``.

    Returns:
        ``out_dir``.

    Raises:
        ValueError: ``out_dir`` holds other files, or an export and ``overwrite`` is false.
        DataError: the checkpoint is not a safe, readable her2mri checkpoint.
    """
    import her2mri

    src, out = Path(ckpt_path).expanduser(), Path(out_dir).expanduser()
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"out_dir={str(out)!r} is a file, not a folder")
        entries = [p.name for p in out.iterdir()]
        ours = (out / EXPORT_SPEC).is_file() and set(entries) <= {EXPORT_SPEC, EXPORT_WEIGHTS}
        if entries and not ours:
            raise ValueError(
                f"out_dir={str(out)!r} is not empty and not a her2mri export "
                f"({', '.join(sorted(entries)[:5])}); choose a new or empty folder"
            )
        if entries and not overwrite:
            raise ValueError(f"out_dir={str(out)!r} already holds an export; pass --overwrite to replace it")
    module = load_classifier(src, map_location="cpu")
    hparams = _json_plain(dict(module.hparams))
    meta = _json_plain(dict(module.her2mri_metadata))
    if redact:
        hparams, meta = redact_paths(hparams), redact_paths(meta)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out)
    weights = out / EXPORT_WEIGHTS
    atomic_write(weights, lambda fh: fh.write(_safetensors_bytes(state)))
    spec = {
        "format": EXPORT_FORMAT,
        "format_version": 1,
        "her2mri_version": her2mri.__version__,
        "model": hparams.get("model"),
        "data_spec": hparams.get("data_spec"),
        "threshold": _export_threshold(hparams, meta),
        "locked_threshold": hparams.get("locked_threshold"),
        "her2mri": meta,
        "hyper_parameters": hparams,
        "weights": {"file": EXPORT_WEIGHTS, "sha256": _sha256(weights), "n_tensors": len(state)},
        "source": {"checkpoint": REDACTED if redact else str(src.resolve()), "name": src.name},
        "paths_redacted": bool(redact),
    }
    atomic_write_text(out / EXPORT_SPEC, json.dumps(spec, indent=2, allow_nan=False) + "\n")
    log.info("exported %s to %s", src, out)
    return out


def _export_threshold(hparams: Mapping[str, Any], meta: Mapping[str, Any]) -> Any:
    """The decision threshold: ``her2mri.threshold``, else the locked one, else the module's fixed one."""
    if meta.get("threshold") is not None:
        return meta["threshold"]
    locked = hparams.get("locked_threshold")
    if isinstance(locked, Mapping) and locked.get("value") is not None:
        return locked["value"]
    return hparams.get("threshold")


def _safetensors_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(dict(state), metadata={"format": EXPORT_FORMAT})
