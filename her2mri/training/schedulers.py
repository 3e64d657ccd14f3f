"""Learning-rate schedules (stepped every optimizer step), built from torch's own schedulers.

``cosine_with_warmup`` is the default of the ``module/`` config group, passed as a Hydra ``_partial_`` and
bound in ``HER2Classifier.configure_optimizers`` with the optimizer and the total number of steps. It chains
torch's ``LinearLR`` (warm-up) and ``CosineAnnealingLR`` (decay) with ``SequentialLR``.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR


def cosine_with_warmup(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    warmup_steps: int | None = None,
    min_lr_ratio: float = 0.01,
) -> LRScheduler:
    """Cosine annealing with linear warm-up, stepped per optimizer step (torch ``SequentialLR``).

    The learning rate is ``lr * (step + 1) / (warmup + 1)`` during the ``warmup`` steps (``LinearLR``), then
    decays from ``lr`` to ``min_lr_ratio * lr`` along a half cosine over the remaining steps
    (``CosineAnnealingLR`` with ``T_max = total_steps - warmup``).

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
    base = [float(g["lr"]) for g in optimizer.param_groups]
    if len(set(base)) > 1:
        raise ValueError(f"param groups with different learning rates {base} are not supported.")
    decay = CosineAnnealingLR(optimizer, T_max=max(1, total - warm), eta_min=base[0] * float(min_lr_ratio))
    if warm == 0:
        return decay
    for group, lr in zip(optimizer.param_groups, base, strict=True):  # CosineAnnealingLR's init stepped it
        group["lr"] = lr
    ramp = LinearLR(optimizer, start_factor=1.0 / (warm + 1), end_factor=1.0, total_iters=warm)
    return SequentialLR(optimizer, [ramp, decay], milestones=[warm])
