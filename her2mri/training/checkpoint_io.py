"""Safe and atomic checkpoints: write, read, resume, export.

Reading never runs code from a file: every load is ``torch.load(..., weights_only=True)`` with a short
allow-list (:data:`SAFE_GLOBALS`), never a fallback to full unpickling. The model spec stored in a checkpoint
is stripped of ``pretrained`` and ``weights_path`` before the model is rebuilt (its weights are in the
checkpoint), so loading neither reaches for the model hub nor opens another file.

Writing is atomic on any filesystem: :class:`AtomicCheckpointIO` (a Lightning ``CheckpointIO`` plugin)
writes to a temporary file *in the destination folder*, flushes and syncs it (``fsync``), then renames it
over the target (``os.replace``) and syncs the folder. A kill or a full disk during a save leaves the
previous checkpoint intact; the temporary file of a dead process is removed by :func:`clean_stale_temps`
at the next start.

:func:`read_classifier` reads what a classifier is rebuilt from, from a Lightning ``.ckpt`` written by
``her2mri-train`` or a folder written by ``her2mri-export`` (``model.safetensors`` + ``spec.json``);
:func:`her2mri.training.module.load_classifier` builds the ready model from it. This module never imports
:mod:`her2mri.training.module` (that one imports this one), so there is no import cycle between them.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.data import AttributeDict

from her2mri.data.errors import DataError
from her2mri.io_utils import atomic_write
from her2mri.models.weights import SAFE_PLAIN_TYPES

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_SPEC",
    "EXPORT_WEIGHTS",
    "SAFE_GLOBALS",
    "AtomicCheckpointIO",
    "her2mri_metadata",
    "is_readable_checkpoint",
    "classifier_hparams",
    "load_weights",
    "move_to",
    "read_classifier",
    "read_checkpoint",
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


def classifier_hparams(
    hparams: Mapping[str, Any], source: Path, known: set[str], **overrides: Any
) -> dict[str, Any]:
    """The constructor arguments of a classifier from stored hyper-parameters (copied, never changed).

    ``overrides`` replace stored values; the model spec loses ``pretrained``/``weights_path``
    (:func:`strip_model_spec`); stored keys this version does not know (not in ``known``) are dropped with a
    warning naming them.

    Raises:
        DataError: the hyper-parameters have no model spec (the message names ``source``).
    """
    hp = {k: copy.deepcopy(v) for k, v in hparams.items()}
    if not isinstance(hp.get("model"), Mapping) and not isinstance(hp.get("model"), str):
        raise DataError(f"{source}: the stored hyper-parameters have no model spec (keys: {sorted(hp)})")
    hp.update(overrides)
    spec = hp.get("model")
    hp["model"] = strip_model_spec(spec if isinstance(spec, Mapping) else {"name": spec})
    unknown = sorted(k for k in hp if k not in known)
    if unknown:
        log.warning("%s: ignoring stored hyper-parameters this version does not know: %s", source, unknown)
        hp = {k: v for k, v in hp.items() if k in known}
    return hp


def load_weights(
    module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: Path, strict: bool
) -> None:
    """Load ``state`` into ``module``; a mismatch is a DataError naming ``source`` (warning if not strict)."""
    try:
        result = module.load_state_dict(dict(state), strict=strict)
    except RuntimeError as err:
        name = getattr(module, "hparams", {}).get("model", {}).get("name")
        raise DataError(f"{source}: weights do not fit model {name!r}: {err}") from err
    if not strict and (result.missing_keys or result.unexpected_keys):
        log.warning(
            "%s: loaded with %d missing and %d unexpected keys",
            source,
            len(result.missing_keys),
            len(result.unexpected_keys),
        )


def move_to(module: torch.nn.Module, map_location: Any) -> None:
    """Move to ``map_location`` when it names one device (a dict or callable was applied by torch.load)."""
    if isinstance(map_location, (str, torch.device, int)):
        module.to(torch.device(map_location) if not isinstance(map_location, int) else map_location)


def _read_export(folder: Path) -> tuple[dict[str, Any], Mapping[str, torch.Tensor], dict[str, Any]]:
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
    return dict(spec.get("hyper_parameters") or {}), state, dict(spec.get("her2mri") or {})


def read_classifier(
    path: str | Path, map_location: Any = "cpu"
) -> tuple[dict[str, Any], Mapping[str, torch.Tensor], dict[str, Any], Path]:
    """The stored hyper-parameters, weights and ``her2mri`` block of a ``.ckpt`` or export folder, safely.

    What :func:`her2mri.training.module.load_classifier` builds a ready classifier from. Nothing in the file
    is executed (``weights_only=True``, safetensors).

    Args:
        path: a Lightning checkpoint written by ``her2mri-train`` or a folder written by ``her2mri-export``.
        map_location: device for the weights of a checkpoint (an export is read on the CPU).

    Returns:
        ``(hyper_parameters, state_dict, her2mri_metadata, path)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: not a safe, readable her2mri checkpoint or export (the message names the file).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        hparams, state, meta = _read_export(path)
        return hparams, state, meta, path
    ckpt = read_checkpoint(path, map_location=map_location)
    if not _is_lightning_checkpoint(ckpt):
        raise DataError(
            f"{path}: not a her2mri-train checkpoint (keys: {sorted(ckpt)[:6]}); a plain state dict "
            "initialises a model with model.weights_path=..., it cannot be scored on its own"
        )
    return dict(ckpt["hyper_parameters"]), ckpt["state_dict"], her2mri_metadata(ckpt), path
