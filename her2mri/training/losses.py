"""Classification losses: cross-entropy with class weights and label smoothing, and focal loss.

``build_loss`` is the one factory the LightningModule uses; class weights may be given explicitly or computed
from the training labels with :func:`balanced_class_weights` (``n / (k * n_c)``, the scikit-learn rule).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOSSES: tuple[str, ...] = ("ce", "focal")


def balanced_class_weights(labels: Sequence[int], num_classes: int = 2) -> list[float]:
    """Class weights ``n / (num_classes * n_c)`` so that every class carries the same total weight.

    Args:
        labels: integer class labels of the training slices (or patients).
        num_classes: number of classes, at least 2.

    Returns:
        One float per class. A class absent from ``labels`` gets weight 1.0 (nothing to balance).

    Raises:
        ValueError: ``labels`` is empty or holds a value outside ``[0, num_classes)``.

    Example:
        >>> balanced_class_weights([0, 0, 0, 1])
        [0.6666666666666666, 2.0]
    """
    labels = [int(v) for v in labels]
    if not labels:
        raise ValueError("labels=[] is empty: cannot compute balanced class weights.")
    bad = sorted({v for v in labels if not 0 <= v < num_classes})
    if bad:
        raise ValueError(f"labels holds values {bad} outside [0, {num_classes}).")
    n = len(labels)
    counts = [labels.count(c) for c in range(num_classes)]
    return [n / (num_classes * c) if c > 0 else 1.0 for c in counts]


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., ICCV 2017): ``-alpha_y (1 - p_y)^gamma log p_y``, averaged over the batch.

    Args:
        gamma: focusing parameter, >= 0 (0 gives weighted cross-entropy).
        weight: optional per-class weights (``alpha``), shape ``(num_classes,)``.
        label_smoothing: in [0, 1); the target distribution is smoothed as in ``F.cross_entropy``.

    Example:
        >>> loss = FocalLoss(gamma=2.0)
        >>> float(loss(torch.zeros(2, 2), torch.tensor([0, 1]))) > 0
        True
    """

    def __init__(
        self, gamma: float = 2.0, weight: Tensor | None = None, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma={gamma!r} must be >= 0.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing!r} must be in [0, 1).")
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Mean focal loss of ``logits`` (B, C) against integer ``target`` (B,)."""
        num_classes = logits.shape[-1]
        log_p = F.log_softmax(logits.float(), dim=-1)
        onehot = F.one_hot(target, num_classes).to(log_p.dtype)
        if self.label_smoothing > 0:
            onehot = onehot * (1 - self.label_smoothing) + self.label_smoothing / num_classes
        focal = (1 - log_p.exp()).pow(self.gamma)
        per_class = -onehot * focal * log_p
        if self.weight is not None:
            per_class = per_class * self.weight.to(per_class.dtype)
        per_sample = per_class.sum(dim=-1)
        if self.weight is not None:
            # normalise like F.cross_entropy with weights: divide by the summed weight of the targets
            return per_sample.sum() / self.weight.to(per_sample.dtype)[target].sum().clamp_min(1e-12)
        return per_sample.mean()


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with optional class weights and label smoothing (weights move with the module).

    Args:
        weight: optional per-class weights, shape ``(num_classes,)``.
        label_smoothing: in [0, 1).
    """

    def __init__(self, weight: Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing!r} must be in [0, 1).")
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Mean (weighted) cross-entropy of ``logits`` (B, C) against integer ``target`` (B,)."""
        weight = self.weight.to(logits.dtype) if self.weight is not None else None
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=self.label_smoothing)


def build_loss(
    name: str = "ce",
    class_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 2.0,
) -> nn.Module:
    """Build the training loss.

    Args:
        name: ``ce`` (cross-entropy, the paper's loss) or ``focal``.
        class_weights: per-class weights, or None for unweighted.
        label_smoothing: in [0, 1).
        focal_gamma: focusing parameter of the focal loss (ignored for ``ce``).

    Returns:
        A module ``loss(logits, target) -> scalar``.

    Raises:
        ValueError: unknown ``name`` or bad ``class_weights`` / ``label_smoothing``.
    """
    weight = None
    if class_weights is not None:
        values = [float(w) for w in class_weights]
        if not values or any(not w > 0 for w in values):
            raise ValueError(f"class_weights={list(class_weights)!r} must be positive numbers.")
        weight = torch.tensor(values, dtype=torch.float32)
    if name == "ce":
        return WeightedCrossEntropy(weight=weight, label_smoothing=label_smoothing)
    if name == "focal":
        return FocalLoss(gamma=focal_gamma, weight=weight, label_smoothing=label_smoothing)
    raise ValueError(f"loss name={name!r} is not valid. Valid values: {', '.join(LOSSES)}.")
