"""Learning-rate schedules (stepped every optimizer step).

``cosine_with_warmup`` is the default of the ``module/`` config group, passed as a Hydra ``_partial_`` and
bound in ``HER2Classifier.configure_optimizers`` with the optimizer and the total number of steps.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then half-cosine decay.

    Args:
        step: current optimizer step (0-based).
        total_steps: total optimizer steps of the run.
        warmup_steps: steps of linear warm-up from ``1 / (warmup_steps + 1)`` to 1.
        min_lr_ratio: final multiplier at ``total_steps``.

    Returns:
        The multiplier, in ``[min_lr_ratio, 1]``.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_with_warmup(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    warmup_steps: int | None = None,
    min_lr_ratio: float = 0.01,
) -> LambdaLR:
    """Cosine annealing with linear warm-up, as a ``LambdaLR`` stepped per optimizer step.

    Args:
        optimizer: the optimizer.
        total_steps: total optimizer steps (``trainer.estimated_stepping_batches``), >= 1.
        warmup_fraction: warm-up length as a fraction of ``total_steps`` in [0, 1) (used when
            ``warmup_steps`` is None).
        warmup_steps: explicit warm-up length in steps, >= 0; overrides ``warmup_fraction``.
        min_lr_ratio: final learning rate as a fraction of the initial one, in [0, 1].

    Returns:
        The scheduler.

    Raises:
        ValueError: an argument is out of range.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = cosine_with_warmup(opt, total_steps=10, warmup_steps=0)
        >>> opt.param_groups[0]["lr"]
        1.0
    """
    if int(total_steps) < 1:
        raise ValueError(f"total_steps={total_steps!r} must be >= 1.")
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction={warmup_fraction!r} must be in [0, 1).")
    if warmup_steps is not None and int(warmup_steps) < 0:
        raise ValueError(f"warmup_steps={warmup_steps!r} must be >= 0.")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio={min_lr_ratio!r} must be in [0, 1].")
    total = int(total_steps)
    warm = int(warmup_steps) if warmup_steps is not None else int(round(warmup_fraction * total))
    warm = min(warm, max(0, total - 1))
    return LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, total, warm, min_lr_ratio))
