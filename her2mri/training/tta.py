"""Test-time augmentation (TTA): score each slice under several flips/rotations and average the probabilities.

Modes (``tta=`` of ``her2mri-eval`` and ``her2mri-predict``):

* ``none``: the image as it is (one forward pass);
* ``flip``: the image, its left-right and its up-down mirror (3 passes), the flips the training augmentation
  uses;
* ``flip_rot``: the eight symmetries of the square (rotations by 0/90/180/270 degrees, each with and without a
  left-right mirror; 8 passes).

The transforms act on the last two (H, W) axes, so they apply identically to the three phases and, for
three-view inputs ``(B, V, 3, H, W)``, to every view. The slice probability is the mean of the positive-class
probabilities over the transforms; their spread is a measure of the model's uncertainty
(:func:`tta_probabilities` returns each transform's probabilities).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from her2mri.options import check_choice

TTA_MODES: tuple[str, ...] = ("none", "flip", "flip_rot")

Transform = Callable[[Tensor], Tensor]


def _identity(x: Tensor) -> Tensor:
    return x


def _hflip(x: Tensor) -> Tensor:
    return torch.flip(x, dims=(-1,))


def _vflip(x: Tensor) -> Tensor:
    return torch.flip(x, dims=(-2,))


def _rot(k: int, mirror: bool) -> Transform:
    def fn(x: Tensor) -> Tensor:
        y = torch.flip(x, dims=(-1,)) if mirror else x
        return torch.rot90(y, k, dims=(-2, -1))

    fn.__name__ = f"rot{90 * k}{'_mirror' if mirror else ''}"
    return fn


def check_tta(mode: str) -> str:
    """``mode`` if it is a TTA mode.

    Raises:
        ValueError: another value (the message lists the valid ones).
    """
    return check_choice("tta", mode, TTA_MODES)


def tta_transforms(mode: str) -> list[Transform]:
    """The transforms of ``mode`` (the identity first).

    Rotations by 90 degrees keep square inputs square; every her2mri input is square (``image_size``).
    """
    check_tta(mode)
    if mode == "none":
        return [_identity]
    if mode == "flip":
        return [_identity, _hflip, _vflip]
    return [_rot(k, mirror) for mirror in (False, True) for k in range(4)]


@torch.no_grad()
def tta_probabilities(forward: Callable[[Tensor], Tensor], image: Tensor, mode: str) -> Tensor:
    """Positive-class probabilities of ``image`` under every transform of ``mode``.

    Args:
        forward: the model (returns logits ``(B, 2)``).
        image: ``(B, 3, H, W)`` or ``(B, V, 3, H, W)``.
        mode: ``none``, ``flip`` or ``flip_rot``.

    Returns:
        ``(n_transforms, B)`` float32 probabilities; ``.mean(0)`` is the TTA probability.

    Raises:
        ValueError: unknown ``mode``, or rotations of a non-square image.
    """
    transforms = tta_transforms(mode)
    if mode == "flip_rot" and image.shape[-1] != image.shape[-2]:
        raise ValueError(f"tta='flip_rot' needs square images; got H x W = {tuple(image.shape[-2:])}.")
    out = []
    for transform in transforms:
        logits = forward(transform(image).contiguous())
        out.append(torch.softmax(logits.float(), dim=-1)[:, 1])
    return torch.stack(out)
