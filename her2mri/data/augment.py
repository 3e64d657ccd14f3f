"""Training augmentation: MONAI random dictionary transforms, one draw per sample for all views, phases, mask.

:func:`dce_augmentation` returns a ``monai.transforms.Compose``:

1. ``SplitPhasesd`` (her2mri): the sample's image, whatever its layout (``(3, H, W)``, views ``(V, 3, H, W)``,
   phase views ``(3, C, H, W)``, volumes ``(3, D, H, W)``), becomes three channel-first 2-D keys
   ``image_pre``, ``image_early``, ``image_late`` of shape ``(K, H, W)``;
2. ``RandFlipd`` left-right (``prob_hflip``) and up-down (``prob_vflip``);
3. ``RandAffined``: rotation in ``[-rotate_deg, rotate_deg]`` and zoom in ``scale_range`` together with
   probability ``prob_affine``, bilinear for images, nearest for the mask, zero padding;
4. ``per_phase`` only: with probability ``prob_intensity``, ``RandAdjustContrastd`` (gamma in ``gamma_range``)
   and ``RandShiftIntensityd`` (shift in ``[-brightness, brightness]``) per phase key, then clipping to [0, 1]
   (``ScaleIntensityRanged``);
5. ``ToTensord`` (plain tensors, no MONAI metadata) and ``MergePhasesd`` (her2mri): back to the layout of 1;
6. ``joint`` only (the default): the jitter of 4 on the merged image, one draw and one [min, max] for every
   phase and view, so equal intensities of different phases stay equal and the enhancement ratios are kept
   (MONAI's contrast transform rescales each key to its own range: per phase key it would distort them).

Each MONAI dictionary transform draws its parameters once per call and applies them to every key it lists, so
the three phases, every view (views are channels of a phase key) and the mask get the same flip and affine.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.transforms import (
    Compose,
    Identityd,
    MapTransform,
    OneOf,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    ToTensord,
)
from monai.utils import TraceKeys

from her2mri.options import check_choice

INTENSITY_MODES: tuple[str, ...] = ("joint", "per_phase")
#: keys of the three phases while the augmentation runs
PHASE_KEYS: tuple[str, str, str] = ("image_pre", "image_early", "image_late")


def _check_range(
    name: str, value: Sequence[float] | None, low: float, high: float
) -> tuple[float, float] | None:
    if value is None:
        return None
    vals = tuple(float(v) for v in value)
    if len(vals) != 2 or not low <= vals[0] <= vals[1] <= high:
        raise ValueError(f"{name}={value!r} must be (min, max) with {low} <= min <= max <= {high}.")
    return vals[0], vals[1]


def _check_prob(name: str, value: float) -> float:
    if isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}={value!r} must be a probability in [0, 1].")
    return float(value)


class SplitPhasesd(MapTransform):
    """Split the image into one channel-first 2-D array ``(K, H, W)`` per phase (keys :data:`PHASE_KEYS`).

    The phase axis is ``channel_dim`` (-3 for ``(..., 3, H, W)``, -4 for ``(3, C, H, W)`` / ``(3, D, H, W)``);
    every other axis before ``(H, W)`` (views, channels, depth) becomes the channel axis ``K`` of each phase.
    The mask ``(H, W)`` gets a channel axis. :class:`MergePhasesd` undoes it.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = "image",
        mask_key: Hashable = "mask",
        channel_dim: int = -3,
    ) -> None:
        super().__init__(keys)
        if channel_dim not in (-3, -4):
            raise ValueError(f"channel_dim={channel_dim!r} must be -3 or -4.")
        self.channel_dim, self.mask_key = int(channel_dim), mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Split the image; remember its shape."""
        d = dict(data)
        for key in self.key_iterator(d):
            x = torch.as_tensor(d.pop(key)).float()
            if x.ndim < -self.channel_dim or x.shape[self.channel_dim] != 3:
                need = "(..., 3, H, W)" if self.channel_dim == -3 else "(3, C, H, W)"
                raise ValueError(f"img has shape {tuple(x.shape)}: the augmentation needs {need}")
            moved = x.movedim(self.channel_dim, 0)
            d[f"{key}_shape"] = tuple(moved.shape)
            phases = moved.reshape(3, -1, *x.shape[-2:])
            for p, name in enumerate(PHASE_KEYS):
                d[name] = phases[p]
        if self.mask_key in d and d[self.mask_key] is not None:
            m = torch.as_tensor(d[self.mask_key]).float()
            d[self.mask_key] = m[None] if m.ndim == 2 else m
        return d


class MergePhasesd(MapTransform):
    """Undo :class:`SplitPhasesd`: the three phase keys back into the image in its original layout.

    Also drops the ``<key>_transforms`` lists that MONAI's invertible transforms add for plain tensors (the
    augmentation is never inverted, and a batch must hold only the sample's own keys).
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = "image",
        mask_key: Hashable = "mask",
        channel_dim: int = -3,
    ) -> None:
        super().__init__(keys)
        self.channel_dim, self.mask_key = int(channel_dim), mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Merge the phases."""
        d = dict(data)
        for key in (*PHASE_KEYS, self.mask_key, *self.keys):
            d.pop(f"{key}{TraceKeys.KEY_SUFFIX}", None)
        for key in self.keys:
            shape = d.pop(f"{key}_shape")
            x = torch.stack([torch.as_tensor(d.pop(name)) for name in PHASE_KEYS]).reshape(shape)
            d[key] = x.movedim(0, self.channel_dim)
        return d


def dce_augmentation(
    prob_hflip: float = 0.5,
    prob_vflip: float = 0.0,
    rotate_deg: float = 10.0,
    scale_range: Sequence[float] = (0.9, 1.1),
    prob_affine: float = 0.5,
    gamma_range: Sequence[float] | None = None,
    brightness: float = 0.0,
    prob_intensity: float = 0.5,
    intensity_mode: str = "joint",
    channel_dim: int = -3,
    image_key: str = "image",
    mask_key: str = "mask",
) -> Compose:
    """Random flips, rotation, zoom and optional intensity jitter of one DCE sample, as a MONAI ``Compose``.

    Works on ``{"image": float (..., H, W) in [0, 1], "mask": (1, H, W) (optional)}``; returns plain float
    tensors in the same shapes. Seed it with ``set_random_state(seed=...)`` (the datamodule does; DataLoader
    workers are seeded by MONAI's ``worker_init_fn``).

    Vertical flips are off by default: in axial breast MRI the anterior-posterior direction is anatomically
    fixed (chest wall at the back), so an upside-down breast is not a plausible input; left-right flips are
    (two breasts). Intensity jitter is off by default; ``per_phase`` jitter changes the ratio between phases,
    which is the enhancement signal the model should read, so prefer ``joint``.

    Differences from the augmentation before MONAI (same options, same defaults): the zoom factor of
    ``RandAffined`` is drawn per axis (within ``scale_range``, so slightly anisotropic), uniform in
    ``1 / zoom``; the gamma of ``RandAdjustContrastd`` is applied to each phase's own [min, max] range
    within the sample (``x ** gamma`` when the phase spans [0, 1]); a flip is exact (no resampling) and the
    affine is one resampling.

    Args:
        prob_hflip: probability of a left-right flip.
        prob_vflip: probability of an up-down flip.
        rotate_deg: maximum absolute rotation in degrees, 0 to 180 (uniform in [-rotate_deg, rotate_deg]).
        scale_range: (min, max) zoom factor, 0.1 to 10 (>1 enlarges the content).
        prob_affine: probability of applying the rotation and zoom (together).
        gamma_range: (min, max) gamma, or None for none.
        brightness: maximum absolute additive shift (values in [0, 1]), 0 for none.
        prob_intensity: probability of applying the intensity jitter (gamma and shift together).
        intensity_mode: ``joint`` (one draw for all phases) or ``per_phase`` (one per phase).
        channel_dim: axis of the three phases: -3 (``(..., 3, H, W)``, default) or -4 (``(3, C, H, W)`` phase
            views of ``views='phases'``, ``(3, D, H, W)`` volumes).
        image_key: key of the image.
        mask_key: key of the mask (absent keys are skipped).

    Raises:
        ValueError: naming the argument and the value.

    Example:
        >>> aug = dce_augmentation(prob_hflip=1.0, prob_affine=0.0).set_random_state(seed=0)
        >>> x = torch.zeros(3, 8, 8); x[:, 0, 0] = 1
        >>> float(aug({"image": x})["image"][0, 0, 7])
        1.0
    """
    if channel_dim not in (-3, -4):
        raise ValueError(f"channel_dim={channel_dim!r} must be -3 or -4.")
    prob_hflip = _check_prob("prob_hflip", prob_hflip)
    prob_vflip = _check_prob("prob_vflip", prob_vflip)
    if not 0.0 <= float(rotate_deg) <= 180.0:
        raise ValueError(f"rotate_deg={rotate_deg!r} must be in [0, 180].")
    s_lo, s_hi = _check_range("scale_range", scale_range, 0.1, 10.0) or (1.0, 1.0)
    prob_affine = _check_prob("prob_affine", prob_affine)
    gammas = _check_range("gamma_range", gamma_range, 0.05, 20.0)
    if not 0.0 <= float(brightness) <= 1.0:
        raise ValueError(f"brightness={brightness!r} must be in [0, 1].")
    prob_intensity = _check_prob("prob_intensity", prob_intensity)
    check_choice("intensity_mode", intensity_mode, INTENSITY_MODES)

    keys = (*PHASE_KEYS, mask_key)
    opt = {"allow_missing_keys": True}
    ts: list[Any] = [SplitPhasesd(image_key, mask_key, channel_dim)]
    if prob_hflip > 0:
        ts.append(RandFlipd(keys, prob=prob_hflip, spatial_axis=1, **opt))
    if prob_vflip > 0:
        ts.append(RandFlipd(keys, prob=prob_vflip, spatial_axis=0, **opt))
    if prob_affine > 0 and (float(rotate_deg) > 0 or s_lo != s_hi):
        # MONAI's scale maps output to input coordinates: a factor f shows the content 1/f times as large
        zoom = (1.0 / s_hi - 1.0, 1.0 / s_lo - 1.0)
        ts.append(
            RandAffined(
                keys,
                prob=prob_affine,
                rotate_range=(math.radians(float(rotate_deg)),),
                scale_range=(zoom, zoom),
                mode=("bilinear",) * 3 + ("nearest",),
                padding_mode="zeros",
                **opt,
            )
        )
    jitter: list[Any] = []
    if prob_intensity > 0 and (gammas is not None or float(brightness) > 0):
        # joint: one gamma/shift on the merged image, so MONAI's contrast transform uses one [min, max] for
        # all phases and views and keeps the ratios between phases (per-key ranges would distort enhancement)
        group = (image_key,) if intensity_mode == "joint" else PHASE_KEYS
        per_key = [group] if intensity_mode == "joint" else [(k,) for k in PHASE_KEYS]
        if gammas is not None:
            jitter += [RandAdjustContrastd(g, prob=1.0, gamma=gammas) for g in per_key]
        if float(brightness) > 0:
            jitter += [RandShiftIntensityd(g, offsets=float(brightness), prob=1.0) for g in per_key]
        jitter.append(ScaleIntensityRanged(group, a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True))
        jitter = [OneOf([Compose(jitter), Identityd(group)], weights=(prob_intensity, 1.0 - prob_intensity))]
    if jitter and intensity_mode == "per_phase":
        ts += jitter
    ts.append(ToTensord(keys, track_meta=False, **opt))
    ts.append(MergePhasesd(image_key, mask_key, channel_dim))
    if jitter and intensity_mode == "joint":
        ts += [*jitter, ToTensord(image_key, track_meta=False)]
    return Compose(ts)
