"""Safe and atomic checkpoints: write, read, resume, and load a ready classifier.

Reading never runs code from a file: every load is ``torch.load(..., weights_only=True)`` with a short
allow-list (:data:`SAFE_GLOBALS`), never a fallback to full unpickling. The model spec stored in a checkpoint
is stripped of ``pretrained`` and ``weights_path`` before the model is rebuilt (its weights are in the
checkpoint), so loading neither reaches for the model hub nor opens another file.

Writing is atomic on any filesystem: :class:`AtomicCheckpointIO` (a Lightning ``CheckpointIO`` plugin)
writes to a temporary file *in the destination folder*, flushes and syncs it (``fsync``), then renames it
over the target (``os.replace``) and syncs the folder. A kill or a full disk during a save leaves the
previous checkpoint intact; the temporary file of a dead process is removed by :func:`clean_stale_temps`
at the next start.

:func:`load_classifier` is the one way to get a model for inference: it accepts a Lightning ``.ckpt`` written
by ``her2mri-train`` or a folder written by ``her2mri-export`` (``model.safetensors`` + ``spec.json``).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.data import AttributeDict

from her2mri.data.errors import DataError
from her2mri.io_utils import atomic_write, atomic_write_text, clean_stale_temps
from her2mri.models.weights import SAFE_PLAIN_TYPES

if TYPE_CHECKING:
    from her2mri.training.module import HER2Classifier

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_SPEC",
    "EXPORT_WEIGHTS",
    "SAFE_GLOBALS",
    "AtomicCheckpointIO",
    "export_classifier",
    "her2mri_metadata",
    "is_readable_checkpoint",
    "load_classifier",
    "read_checkpoint",
    "redact_paths",
    "resolve_resume_checkpoint",
    "strip_model_spec",
]

log = logging.getLogger(__name__)

#: the only non-primitive types a her2mri checkpoint may hold besides tensors (harmless data containers)
SAFE_GLOBALS: list[Any] = [AttributeDict, *SAFE_PLAIN_TYPES]
#: model-spec keys that point outside the checkpoint; dropped at load (the weights are in the checkpoint)
EXTERNAL_WEIGHT_KEYS: tuple[str, ...] = ("pretrained", "weights_path")
#: ``her2mri-export`` folder layout
EXPORT_FORMAT = "her2mri-export"
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_SPEC = "spec.json"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` that saves atomically in the destination folder and loads safely.

    Saving: ``torch.save`` into ``.<name>.<pid>.<hex>.her2mri-tmp`` beside the target, ``fsync``, rename,
    ``fsync`` of the folder. Loading: :func:`read_checkpoint` (``weights_only=True`` always).

    Example:
        >>> trainer = L.Trainer(plugins=[AtomicCheckpointIO()])  # doctest: +SKIP
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically.

        Raises:
            TypeError: ``storage_options`` is given (not supported).
            OSError: the write failed (a full disk is named); the previous file at ``path`` is intact.
        """
        if storage_options is not None:
            raise TypeError(f"storage_options={storage_options!r} is not supported by {type(self).__name__}")
        atomic_write(Path(path), lambda fh: torch.save(checkpoint, fh))

    def load_checkpoint(
        self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Read a checkpoint safely (``weights_only=True``; ``False`` is refused).

        Raises:
            ValueError: ``weights_only=False``.
            FileNotFoundError: no such file.
            DataError: the file is not a readable, safe checkpoint.
        """
        if weights_only is False:
            raise ValueError(
                "weights_only=False: her2mri never unpickles checkpoints (they could run code); "
                "only weights_only=True is supported"
            )
        return read_checkpoint(path, map_location=map_location)


# ---------------------------------------------------------------------- reading
def read_checkpoint(path: str | Path, map_location: Any | None = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with :data:`SAFE_GLOBALS`; clear errors for bad files.

    Args:
        path: a file written by ``torch.save`` (a Lightning checkpoint or a state dict).
        map_location: as for ``torch.load``.

    Returns:
        The loaded object (a dict).

    Raises:
        FileNotFoundError: no such file.
        DataError: an empty, truncated or corrupt file, a file that needs unsafe unpickling (it is not run),
            or a file that holds no dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: checkpoint file is empty (0 bytes; a save was interrupted)")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DataError(
            f"{path}: refused to load: the file holds Python objects other than tensors and plain data, and "
            f"unpickling them could run code ({first}). her2mri only loads checkpoints with "
            "weights_only=True; re-export it from a trusted environment with her2mri-export."
        ) from err
    except (EOFError, RuntimeError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise DataError(
            f"{path}: not a readable checkpoint (truncated or corrupt: {type(err).__name__}: {err})"
        ) from err
    if not isinstance(obj, Mapping):
        raise DataError(f"{path}: expected a checkpoint dict, the file holds a {type(obj).__name__}")
    return dict(obj)


def is_readable_checkpoint(path: str | Path) -> bool:
    """Cheap check that ``path`` is a complete ``torch.save`` zip archive (not empty, not truncated)."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return False
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            return any(n.endswith("data.pkl") for n in names)
    except (OSError, zipfile.BadZipFile):
        return False


def _is_lightning_checkpoint(obj: Mapping[str, Any]) -> bool:
    return "state_dict" in obj and "hyper_parameters" in obj


def resolve_resume_checkpoint(ckpt_path: str | Path | None, ckpt_dir: str | Path) -> str | None:
    """The checkpoint to resume from: ``last`` resolves to the newest readable checkpoint of ``ckpt_dir``.

    ``last`` prefers ``last*.ckpt`` (newest first), then any other ``*.ckpt`` of the folder (newest first);
    each unreadable file (empty or truncated by a kill or a full disk) is skipped with a warning naming it.
    With no readable checkpoint the run starts from scratch, with a warning. Any other value must be a
    readable Lightning checkpoint of her2mri.

    Args:
        ckpt_path: None, ``last`` or a file path.
        ckpt_dir: the run's checkpoint folder (``<run dir>/checkpoints``).

    Returns:
        The path to resume from, or None (fresh start).

    Raises:
        FileNotFoundError: ``ckpt_path`` is a path that does not exist.
        DataError: ``ckpt_path`` is unreadable or not a Lightning checkpoint (e.g. a plain state dict).
    """
    if ckpt_path is None or str(ckpt_path) == "":
        return None
    if str(ckpt_path) != "last":
        path = Path(str(ckpt_path)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path={str(ckpt_path)!r} does not exist")
        obj = read_checkpoint(path)
        if not _is_lightning_checkpoint(obj):
            raise DataError(
                f"{path}: not a her2mri-train checkpoint (keys: {sorted(obj)[:6]}); a plain state dict "
                "initialises a model with model.weights_path=..., it cannot be resumed with ckpt_path"
            )
        return str(path)
    folder = Path(ckpt_dir)
    files = [p for p in folder.glob("*.ckpt") if p.is_file()] if folder.is_dir() else []
    lasts = sorted((p for p in files if p.name.startswith("last")), key=lambda p: -p.stat().st_mtime)
    others = sorted((p for p in files if not p.name.startswith("last")), key=lambda p: -p.stat().st_mtime)
    bad: list[Path] = []
    for cand in [*lasts, *others]:
        if is_readable_checkpoint(cand):
            if bad:
                warnings.warn(
                    f"ckpt_path=last: {', '.join(str(b) for b in bad)} unreadable (empty or truncated); "
                    f"resuming from {cand}, the newest readable checkpoint",
                    UserWarning,
                    stacklevel=2,
                )
            return str(cand)
        bad.append(cand)
    if bad:
        warnings.warn(
            f"ckpt_path=last: no readable checkpoint in {folder} "
            f"({', '.join(str(b) for b in bad)} are empty or truncated); starting from scratch",
            UserWarning,
            stacklevel=2,
        )
    else:
        warnings.warn(
            f"ckpt_path=last: no checkpoint in {folder}; starting from scratch", UserWarning, stacklevel=2
        )
    return None


# ---------------------------------------------------------------------- model loading
def strip_model_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a stored model spec without ``pretrained``/``weights_path`` (weights come from the file).

    ``pretrained`` is set to False (not removed) so that factories whose default is True do not download.
    """
    out = {k: copy.deepcopy(v) for k, v in spec.items() if k not in EXTERNAL_WEIGHT_KEYS}
    if "pretrained" in spec:
        out["pretrained"] = False
    return out


def her2mri_metadata(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The ``checkpoint["her2mri"]`` block (threshold, model card id... written by her2mri), or ``{}``."""
    meta = checkpoint.get("her2mri")
    return dict(meta) if isinstance(meta, Mapping) else {}


def _build_module(
    hparams: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    source: Path,
    strict: bool,
    **overrides: Any,
) -> HER2Classifier:
    from her2mri.training.module import HER2Classifier

    hp = {k: copy.deepcopy(v) for k, v in hparams.items()}
    if not isinstance(hp.get("model"), Mapping) and not isinstance(hp.get("model"), str):
        raise DataError(f"{source}: the stored hyper-parameters have no model spec (keys: {sorted(hp)})")
    hp.update(overrides)
    spec = hp.get("model")
    hp["model"] = strip_model_spec(spec if isinstance(spec, Mapping) else {"name": spec})
    known = set(inspect.signature(HER2Classifier.__init__).parameters) - {"self"}
    unknown = sorted(k for k in hp if k not in known)
    if unknown:
        log.warning("%s: ignoring stored hyper-parameters this version does not know: %s", source, unknown)
        hp = {k: v for k, v in hp.items() if k in known}
    module = HER2Classifier(**hp)
    try:
        result = module.load_state_dict(dict(state), strict=strict)
    except RuntimeError as err:
        raise DataError(f"{source}: weights do not fit model {hp['model'].get('name')!r}: {err}") from err
    if not strict and (result.missing_keys or result.unexpected_keys):
        log.warning(
            "%s: loaded with %d missing and %d unexpected keys",
            source,
            len(result.missing_keys),
            len(result.unexpected_keys),
        )
    return module


def _move(module: torch.nn.Module, map_location: Any) -> None:
    """Move to ``map_location`` when it names one device (a dict or callable was applied by torch.load)."""
    if isinstance(map_location, (str, torch.device, int)):
        module.to(torch.device(map_location) if not isinstance(map_location, int) else map_location)


def _load_export(folder: Path, map_location: Any, strict: bool, **overrides: Any) -> HER2Classifier:
    from safetensors.torch import load_file

    spec_path, weights = folder / EXPORT_SPEC, folder / EXPORT_WEIGHTS
    if not spec_path.is_file() or not weights.is_file():
        raise DataError(
            f"{folder}: not a her2mri-export folder (needs {EXPORT_SPEC} and {EXPORT_WEIGHTS}), and not a "
            "checkpoint file"
        )
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{spec_path}: unreadable export spec: {err}") from err
    if not isinstance(spec, dict) or spec.get("format") != EXPORT_FORMAT:
        raise DataError(f"{spec_path}: format is {spec.get('format')!r}, expected {EXPORT_FORMAT!r}")
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise DataError(f"{weights}: unreadable safetensors file: {err}") from err
    hparams = dict(spec.get("hyper_parameters") or {})
    module = _build_module(hparams, state, folder, strict, **overrides)
    module.her2mri_metadata = dict(spec.get("her2mri") or {})
    _move(module, map_location)
    return module


def load_classifier(
    path: str | Path, map_location: Any = "cpu", strict: bool = True, **overrides: Any
) -> HER2Classifier:
    """Load a ready ``HER2Classifier`` (eval mode) from a ``.ckpt`` or a ``her2mri-export`` folder, safely.

    Nothing in the file is executed (``weights_only=True``, safetensors), and the stored model spec is
    stripped of ``pretrained``/``weights_path``, so no other file and no model hub is touched.

    Args:
        path: a Lightning checkpoint written by ``her2mri-train`` or a folder written by ``her2mri-export``.
        map_location: device for the weights (``"cpu"`` by default; ``None`` keeps the stored devices).
        strict: require the stored weights to match the model's keys exactly.
        **overrides: hyper-parameters that replace stored ones (e.g. ``compile=False``).

    Returns:
        The module in eval mode. ``module.hparams.data_spec`` is the training preprocessing (None when the
        checkpoint has none) and ``module.her2mri_metadata`` the checkpoint's ``her2mri`` block
        (e.g. ``threshold``), ``{}`` when absent.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: not a safe, readable her2mri checkpoint or export (the message names the file).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        module = _load_export(path, map_location, strict, **overrides)
    else:
        ckpt = read_checkpoint(path, map_location=map_location)
        if not _is_lightning_checkpoint(ckpt):
            raise DataError(
                f"{path}: not a her2mri-train checkpoint (keys: {sorted(ckpt)[:6]}); a plain state dict "
                "initialises a model with model.weights_path=..., it cannot be scored on its own"
            )
        module = _build_module(ckpt["hyper_parameters"], ckpt["state_dict"], path, strict, **overrides)
        module.her2mri_metadata = her2mri_metadata(ckpt)
        _move(module, map_location)
    module.eval()
    return module


# ---------------------------------------------------------------------- export
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
    import hashlib

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
