"""Loading local weights files into her2mri models.

:func:`load_weights` accepts

- a plain ``state_dict`` saved with ``torch.save(model.state_dict(), path)``;
- a Lightning checkpoint of her2mri (``{"state_dict": {"model.<key>": ...}, ...}``): the ``model.`` prefix of
  the LightningModule attribute is stripped and its other entries (loss weights, metrics) are ignored;
- dicts with a ``model_state_dict`` or ``model`` entry, DDP (``module.``) and ``torch.compile``
  (``_orig_mod.``) prefixes;
- ``.safetensors`` files (e.g. timm weights downloaded by hand);
- a bare backbone (timm or torchvision ResNet34, timm ViT): each model's ``remap_state_dict`` adds its
  backbone prefix, so ImageNet weights can be used offline.

Classifier weights whose shape differs from the model's (another number of classes) are skipped with a
warning; any other shape mismatch is an error. Missing and unexpected keys are reported in a warning.
"""

from __future__ import annotations

import logging
import os
import pathlib
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["LoadReport", "build_model", "load_weights", "read_state_dict"]

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_STRIP_PREFIXES = ("module.", "_orig_mod.", "model.")
_MAX_LISTED = 8

_M = TypeVar("_M", bound=nn.Module)
#: plain-data types allowed in weights files besides tensors (checkpoint hyper-parameters may hold paths)
SAFE_PLAIN_TYPES: list[Any] = [pathlib.PosixPath, pathlib.PurePosixPath]


@dataclass
class LoadReport:
    """What :func:`load_weights` did.

    Attributes:
        path: the weights file.
        loaded: model keys that received a value from the file.
        missing: model keys absent from the file (left at their initial values).
        unexpected: file keys the model does not have (ignored).
        skipped: classifier keys whose shape differs from the model's (ignored).
    """

    path: Path
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _short_list(keys: list[str]) -> str:
    """Comma-separated keys, truncated after a few."""
    head = ", ".join(keys[:_MAX_LISTED])
    return head + (f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain data only; never full unpickling.

    Raises:
        ValueError: the file needs unpickling of other objects (refused: it could run code), or it is
            truncated or corrupt.
    """
    try:
        with torch.serialization.safe_globals(SAFE_PLAIN_TYPES):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"weights_path={str(path)!r}: refused to load: the file holds Python objects besides tensors, "
            "and unpickling them could run code. Save the weights as a plain state dict "
            "(torch.save(model.state_dict(), path)) or as .safetensors."
        ) from err
    except (EOFError, RuntimeError, OSError) as err:
        raise ValueError(f"weights_path={str(path)!r}: not a readable weights file ({err})") from err


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a weights file and return its state dict (unwrapped from a checkpoint when needed).

    Args:
        path: ``.pt``/``.pth``/``.ckpt``/``.bin`` (``torch.save``) or ``.safetensors`` file.

    Returns:
        Mapping from parameter/buffer names to tensors (prefixes not yet stripped).

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when the file holds no state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights_path={str(path)!r}: file does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: Any = load_file(str(path), device="cpu")
    else:
        obj = _torch_load(path)
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(f"weights_path={str(path)!r}: expected a state dict or checkpoint, got {type(obj)}")
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise ValueError(f"weights_path={str(path)!r}: the file contains no tensors (keys: {list(obj)[:8]})")
    return state


def _strip_prefixes(state: dict[str, Tensor], own_keys: set[str]) -> dict[str, Tensor]:
    """Strip wrapper prefixes (``model.``, ``module.``, ``_orig_mod.``) that the model's own keys lack."""
    changed = True
    while changed:
        changed = False
        for prefix in _STRIP_PREFIXES:
            if any(k.startswith(prefix) for k in own_keys):
                continue
            inner = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if inner:
                dropped = len(state) - len(inner)
                if dropped:
                    log.info(
                        "ignoring %d entries outside %r (e.g. loss weights of a checkpoint)", dropped, prefix
                    )
                state, changed = inner, True
    return state


def _classifier_prefix(model: nn.Module) -> str | None:
    """Name prefix (``"head."``) of the model's final classifier, if it has one."""
    get_classifier = getattr(model, "get_classifier", None)
    if get_classifier is None:
        return None
    classifier = get_classifier()
    for name, module in model.named_modules():
        if module is classifier and name:
            return name + "."
    return None


def load_weights(model: nn.Module, path: str | Path, strict: bool = False) -> LoadReport:
    """Load a local weights file into ``model`` (see the module docstring for accepted formats).

    Args:
        model: the model to fill (modified in place).
        path: weights file.
        strict: raise instead of warning when keys are missing, unexpected or skipped.

    Returns:
        A :class:`LoadReport`.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when no key matches the model, a non-classifier tensor has the wrong shape, or
            ``strict`` is true and the keys do not match exactly.
    """
    path = Path(path).expanduser()
    own = model.state_dict()
    state = _strip_prefixes(read_state_dict(path), set(own))
    remap = getattr(model, "remap_state_dict", None)
    if remap is not None:
        state = remap(state)

    report = LoadReport(path=path)
    cls_prefix = _classifier_prefix(model)
    usable: dict[str, Tensor] = {}
    bad_shapes: list[str] = []
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            msg = f"{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}"
            (report.skipped if cls_prefix and key.startswith(cls_prefix) else bad_shapes).append(msg)
        else:
            usable[key] = value
    name = type(model).__name__
    if bad_shapes:
        raise ValueError(
            f"weights_path={str(path)!r} does not fit {name}: shape mismatch for {_short_list(bad_shapes)}"
        )
    if not any(cls_prefix is None or not k.startswith(cls_prefix) for k in usable):
        raise ValueError(
            f"weights_path={str(path)!r}: no key outside the classifier matches {name} "
            f"(file keys: {_short_list(sorted(state))}; "
            f"model keys: {_short_list(sorted(own))})"
        )
    report.loaded = sorted(usable)
    report.missing = sorted(
        k for k in own if k not in usable and not any(s.startswith(k + ":") for s in report.skipped)
    )
    model.load_state_dict(usable, strict=False)

    problems = []
    if report.skipped:
        problems.append(f"classifier weights skipped (shape differs): {_short_list(report.skipped)}")
    if report.missing:
        problems.append(
            f"{len(report.missing)} model keys not in the file, left at their initial values: "
            f"{_short_list(report.missing)}"
        )
    if report.unexpected:
        problems.append(f"{len(report.unexpected)} file keys ignored: {_short_list(report.unexpected)}")
    if problems:
        text = f"weights_path={str(path)!r} loaded into {name} with differences: " + "; ".join(problems)
        if strict:
            raise ValueError(text)
        warnings.warn(text, UserWarning, stacklevel=2)
    log.info("loaded %d tensors from %s into %s", len(usable), path, name)
    return report


def _hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the weights hub opens within ``timeout`` seconds."""
    import socket

    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _force_hub_offline() -> None:
    """Switch the Hugging Face hub to offline mode for this process (cached files still load)."""
    import sys

    os.environ["HF_HUB_OFFLINE"] = "1"  # read when the hub library is first imported
    constants = sys.modules.get("huggingface_hub.constants")  # imported by timm: switch it too
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def _looks_like_download_error(exc: BaseException) -> bool:
    """An error of a failed weight download (offline hub, no network, missing cache entry)."""
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    hub_errors = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "HfHubHTTPError", "ConnectionError",
                  "MaxRetryError", "NewConnectionError", "URLError", "ProxyError", "Timeout"}  # fmt: skip
    if names & hub_errors or isinstance(exc, (OSError, ConnectionError)):
        return True
    return "offline" in str(exc).lower() or "internet" in str(exc).lower()


def build_model(
    cls: type[_M], *, pretrained: bool = False, weights_path: str | Path | None = None, **kwargs: Any
) -> _M:
    """Construct ``cls`` and load ``weights_path`` into it (the body of every registered factory).

    Args:
        cls: model class; receives ``pretrained`` and ``**kwargs``.
        pretrained: download hub weights (timm / Hugging Face); needs network access.
        weights_path: local weights file loaded after construction (wins over ``pretrained``, which is
            then not downloaded).
        **kwargs: other constructor arguments.

    Returns:
        The model.
    """
    if not isinstance(pretrained, bool):
        raise ValueError(f"pretrained must be true or false, got {pretrained!r}")
    if weights_path is not None and pretrained:
        warnings.warn(
            f"weights_path={str(weights_path)!r} is given, so pretrained hub weights are not downloaded",
            UserWarning,
            stacklevel=3,
        )
        pretrained = False
    if not pretrained:
        model = cls(pretrained=False, **kwargs)
    else:
        if not _hub_offline() and not _hub_reachable():
            _force_hub_offline()  # local hub cache only: fails at once instead of retrying for a minute
        try:
            model = cls(pretrained=pretrained, **kwargs)
        except Exception as exc:  # noqa: BLE001 - hub errors differ between timm/huggingface versions
            if not _looks_like_download_error(exc):
                raise
            offline = (
                "the hub is unreachable or HF_HUB_OFFLINE=1 is set"
                if _hub_offline()
                else "the download failed"
            )
            raise ValueError(
                f"pretrained=true needs ImageNet weights from the hub, but {offline} "
                f"({type(exc).__name__}: {str(exc)[:200]}); set model.weights_path=/path/to/weights.pth "
                "(a local timm state dict) or model.pretrained=false with a from-scratch recipe "
                "(e.g. experiment=paper_thda_scratch)"
            ) from exc
    if weights_path is not None:
        load_weights(model, weights_path)
    return model
