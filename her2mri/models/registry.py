"""timm-style model registry: ``register_model``, ``create_model``, ``list_models``.

Every model of her2mri is built by a small factory function decorated with :func:`register_model`.
:func:`create_model` looks the name up, drops keyword arguments whose value is ``None`` (so that Hydra
``null`` overrides fall back to the model's own defaults), builds the model and, when ``weights_path`` is
given, loads a local weights file into it.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["create_model", "is_model", "list_models", "register_model"]

_ModelFactory = TypeVar("_ModelFactory", bound=Callable[..., nn.Module])

_MODEL_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: _ModelFactory) -> _ModelFactory:
    """Register a model factory under its function name.

    Args:
        fn: factory function returning an ``nn.Module``; its ``__name__`` becomes the model name.

    Returns:
        ``fn`` itself, so the decorator leaves the function usable.

    Raises:
        ValueError: when a model of the same name is already registered.
    """
    name = fn.__name__
    if name in _MODEL_ENTRYPOINTS:
        raise ValueError(f"register_model: a model named {name!r} is already registered")
    _MODEL_ENTRYPOINTS[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered models, sorted.

    Args:
        pattern: optional shell-style wildcard (``"vit_*"``) to filter the names.

    Returns:
        The sorted model names.
    """
    names = sorted(_MODEL_ENTRYPOINTS)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model."""
    return name in _MODEL_ENTRYPOINTS


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Keyword arguments whose value is ``None`` are ignored, so a Hydra config may list every option with
    ``null`` meaning "the model's default". All models accept ``num_classes``, ``pretrained``,
    ``weights_path``, ``in_chans`` and ``drop_rate``; see ``docs/models.md`` for the rest.

    Args:
        name: registered model name, one of :func:`list_models`.
        **kwargs: constructor arguments of the model.

    Returns:
        The model, in training mode.

    Raises:
        ValueError: when ``name`` is not registered (the message lists the valid names and the closest one).

    Example:
        >>> model = create_model("resnet34", num_classes=2, drop_rate=None)
        >>> model.num_classes
        2
    """
    if name not in _MODEL_ENTRYPOINTS:
        valid = list_models()
        close = difflib.get_close_matches(str(name), valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown model name={name!r}.{hint} Valid names: {', '.join(valid)}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return _MODEL_ENTRYPOINTS[name](**kwargs)
