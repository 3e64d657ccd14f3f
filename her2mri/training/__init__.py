"""Training of her2mri image models: the HER2Classifier LightningModule and its parts.

Losses, slice -> patient aggregation, metrics and learning-rate schedules. Running a training from a Hydra
config (``train``, ``evaluate``) is :mod:`her2mri.runs`.

Heavy imports are deferred: ``from her2mri.training import HER2Classifier`` imports Lightning on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "HER2Classifier": "her2mri.training.module",
    "aggregate_patients": "her2mri.training.aggregation",
    "collect_slices": "her2mri.training.aggregation",
    "binary_metrics": "her2mri.training.metrics",
    "build_loss": "her2mri.training.losses",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'her2mri.training' has no attribute {name!r}")
