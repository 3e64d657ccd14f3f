"""Classification losses: cross-entropy with class weights and label smoothing, and focal loss.

``build_loss`` is the one factory the LightningModule uses: ``ce`` is torch's ``nn.CrossEntropyLoss(weight,
label_smoothing)``, ``focal`` the focal loss (no torch equivalent with class weights and label smoothing).
Class weights may be given explicitly or computed from the training labels with :func:`balanced_class_weights`
(scikit-learn's ``compute_class_weight("balanced")``, ``n / (k * n_c)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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
    from sklearn.utils.class_weight import compute_class_weight

    y = np.asarray([int(v) for v in labels], dtype=np.int64)
    if y.size == 0:
        raise ValueError("labels=[] is empty: cannot compute balanced class weights.")
    bad = sorted({int(v) for v in y if not 0 <= v < num_classes})
    if bad:
        raise ValueError(f"labels holds values {bad} outside [0, {num_classes}).")
    present = np.unique(y)
    # scikit-learn's "balanced" rule n / (k * n_c) over the present classes, rescaled to k = num_classes
    balanced = compute_class_weight("balanced", classes=present, y=y) * (present.size / num_classes)
    weights = dict(zip(present.tolist(), balanced.tolist(), strict=True))
    return [float(weights.get(c, 1.0)) for c in range(num_classes)]


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


def cross_entropy(weight: Tensor | None = None, label_smoothing: float = 0.0) -> nn.CrossEntropyLoss:
    """``nn.CrossEntropyLoss(weight, label_smoothing)`` whose weights move with the module but are not saved.

    The class weights live in the hyper-parameters (``class_weights``), so they are kept out of the state
    dict: checkpoints load with or without them.

    Raises:
        ValueError: ``label_smoothing`` outside [0, 1).
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing!r} must be in [0, 1).")
    loss = nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))
    loss.register_buffer("weight", weight, persistent=False)
    return loss


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
        return cross_entropy(weight=weight, label_smoothing=label_smoothing)
    if name == "focal":
        return FocalLoss(gamma=focal_gamma, weight=weight, label_smoothing=label_smoothing)
    raise ValueError(f"loss name={name!r} is not valid. Valid values: {', '.join(LOSSES)}.")
