"""Slice dataset over preprocessed cases: one item per selected slice, batches as in ARCHITECTURE.md §4.

Cached arrays stay in memory in their compact dtype (uint8 or float16) per case; each item is converted to
float32 on access, augmented (training only), then ImageNet-normalised (optional).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from her2mri.data.errors import DataError, apply_transform
from her2mri.data.records import CaseRecord

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
UNKNOWN_LABEL: int = -1


class SliceDataset(Dataset):
    """Items are single slices (or 3-view stacks) of the given cases.

    Each item is a dict:

    * ``image``: float32 ``(3, H, W)`` or ``(3, 3, H, W)`` (views, RGB, H, W), R = pre, G = early, B = late;
      ImageNet-normalised when ``imagenet_norm`` else in [0, 1].
    * ``label``: int64 scalar (``-1`` when the case label is unknown).
    * ``pid``: str; ``slice_idx``: int64 scalar.
    * ``mask``: float32 ``(1, H, W)`` tumour mask of the (centre) slice, only when ``with_mask``.

    Args:
        records: the cases.
        arrays: per case, the preprocessed arrays (``images``, ``slice_idx``, optional ``masks``).
        augment: a callable on ``{"image", "mask"}`` dicts with values in [0, 1] (e.g. the MONAI ``Compose``
            of :func:`~her2mri.data.augment.dce_augmentation`), or None.
        imagenet_norm: subtract the ImageNet mean and divide by its std per RGB channel.
        with_mask: include ``mask`` in items (every case must then have masks).
        channel_dim: axis of the RGB channels in an item's image for the ImageNet statistics: -3 (default:
            ``(3, H, W)``, views ``(V, 3, H, W)``, phase views ``(3, 3, H, W)``) or -4 (``views='volume'``:
            ``(3, D, H, W)``). One-channel phase views ``(3, 1, H, W)`` get the grey statistics (the mean of
            the three).
    """

    def __init__(
        self,
        records: Sequence[CaseRecord],
        arrays: Sequence[dict[str, np.ndarray]],
        augment: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        imagenet_norm: bool = True,
        with_mask: bool = True,
        channel_dim: int = -3,
    ) -> None:
        if channel_dim not in (-3, -4):
            raise ValueError(f"channel_dim={channel_dim!r} must be -3 or -4.")
        self.channel_dim = int(channel_dim)
        if len(records) != len(arrays):
            raise ValueError(f"records ({len(records)}) and arrays ({len(arrays)}) differ in length")
        self.records = list(records)
        self.images = [a["images"] for a in arrays]
        self.slice_idx = [np.asarray(a["slice_idx"]) for a in arrays]
        self.with_mask = bool(with_mask)
        self.masks = [a.get("masks") for a in arrays] if self.with_mask else [None] * len(arrays)
        for rec, img, sidx, m in zip(self.records, self.images, self.slice_idx, self.masks, strict=True):
            if img.dtype not in (np.uint8, np.float16, np.float32) or img.ndim not in (4, 5):
                raise DataError(f"case {rec.pid}: cached images have dtype {img.dtype} and shape {img.shape}")
            if len(sidx) != len(img) or (m is not None and len(m) != len(img)):
                raise DataError(f"case {rec.pid}: cached images, masks and slice_idx differ in length")
            if self.with_mask and m is None:
                raise DataError(f"case {rec.pid}: with_mask=True but the case has no mask")
        self.index: list[tuple[int, int]] = [
            (c, s) for c, img in enumerate(self.images) for s in range(len(img))
        ]
        self.augment = augment
        self.imagenet_norm = bool(imagenet_norm)
        shape = (3, 1, 1) if self.channel_dim == -3 else (3, 1, 1, 1)
        self._mean = torch.tensor(IMAGENET_MEAN).view(shape)
        self._std = torch.tensor(IMAGENET_STD).view(shape)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labels(self) -> list[int]:
        """Label of every item (slice), ``-1`` when unknown."""
        return [self._label(c) for c, _ in self.index]

    @property
    def pids(self) -> list[str]:
        """Patient id of every item (slice)."""
        return [self.records[c].pid for c, _ in self.index]

    def _label(self, c: int) -> int:
        y = self.records[c].label
        return UNKNOWN_LABEL if y is None else int(y)

    def reseed(self, seed: int) -> None:
        """Re-seed the augmentation's random transforms (MONAI's ``set_rnd``; per-epoch reseeding uses it).

        DataLoader workers are seeded by MONAI's ``worker_init_fn`` (``monai.data.DataLoader``), which calls
        ``set_rnd`` on the whole dataset with the worker's own seed.
        """
        if self.augment is not None:
            from monai.data.utils import set_rnd

            set_rnd(self.augment, int(seed))

    def __getitem__(self, i: int) -> dict[str, Any]:
        c, s = self.index[i]
        raw = torch.from_numpy(np.ascontiguousarray(self.images[c][s]))
        image = raw.float() / 255.0 if raw.dtype == torch.uint8 else raw.float()
        item: dict[str, Any] = {"image": image}
        if self.with_mask:
            item["mask"] = torch.from_numpy(np.ascontiguousarray(self.masks[c][s])).float().unsqueeze(0)
        if self.augment is not None:
            item = dict(apply_transform(self.augment, item))
            item["image"] = torch.as_tensor(item["image"]).float()
            if "mask" in item:
                item["mask"] = torch.as_tensor(item["mask"]).float()
        if self.imagenet_norm:
            x = item["image"]
            if self.channel_dim == -3 and x.ndim >= 4 and x.shape[-3] == 1:  # one-channel phase views
                item["image"] = (x - self._mean.mean()) / self._std.mean()
            else:
                item["image"] = (x - self._mean) / self._std
        item["label"] = torch.tensor(self._label(c), dtype=torch.int64)
        item["pid"] = self.records[c].pid
        item["slice_idx"] = torch.tensor(int(self.slice_idx[c][s]), dtype=torch.int64)
        return item
