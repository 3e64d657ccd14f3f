"""Training augmentation of one DCE sample with the same random parameters for every view, phase and mask."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import MapTransform, Randomizable

from her2mri.options import check_choice

INTENSITY_MODES: tuple[str, ...] = ("joint", "per_phase")
AUG_MODES: tuple[str, ...] = ("bilinear", "nearest")


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


class RandDCEAugment(Randomizable):
    """Random flips, rotation, scale and optional intensity jitter for one DCE sample.

    One call to :meth:`randomize` draws all parameters; every later call with ``randomize=False`` applies the
    same geometry, so the three phases (RGB channels), every view and the tumour mask move together. The
    default call (``randomize=True``) draws new parameters first. Images are float tensors
    ``(..., 3, H, W)``: ``(3, H, W)`` for a single view, ``(V, 3, H, W)`` for views. Masks are ``(..., H, W)``
    and use ``mode='nearest'`` (no intensity jitter).

    Vertical flips are off by default: in axial breast MRI the anterior-posterior direction is anatomically
    fixed (chest wall at the back), so an upside-down breast is not a plausible input; left-right flips are
    (two breasts). Intensity jitter is off by default; ``per_phase`` jitter changes the ratio between phases,
    which is the enhancement signal the model should read, so prefer ``joint``.

    Args:
        prob_hflip: probability of a left-right flip.
        prob_vflip: probability of an up-down flip.
        rotate_deg: maximum absolute rotation in degrees, 0 to 180 (uniform in [-rotate_deg, rotate_deg]).
        scale_range: (min, max) zoom factor, 0.1 to 10 (>1 enlarges the content).
        prob_affine: probability of applying the rotation and scale.
        gamma_range: (min, max) gamma for ``x ** gamma``, or None for none.
        brightness: maximum absolute additive shift (values in [0, 1]), 0 for none.
        prob_intensity: probability of applying the intensity jitter.
        intensity_mode: ``joint`` (one draw for all phases) or ``per_phase`` (one per phase).
        channel_dim: axis of the three phases for the intensity jitter: -3 (``(..., 3, H, W)``, default) or
            -4 (``(3, C, H, W)`` phase views of ``views='phases'``, ``(3, D, H, W)`` volumes).

    Example:
        >>> aug = RandDCEAugment(prob_hflip=1.0).set_random_state(seed=0)
        >>> x = torch.zeros(3, 8, 8); x[:, 0, 0] = 1
        >>> float(aug(x)[0, 0, 7])
        1.0
    """

    def __init__(
        self,
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
    ) -> None:
        if channel_dim not in (-3, -4):
            raise ValueError(f"channel_dim={channel_dim!r} must be -3 or -4.")
        self.channel_dim = int(channel_dim)
        self.prob_hflip = _check_prob("prob_hflip", prob_hflip)
        self.prob_vflip = _check_prob("prob_vflip", prob_vflip)
        if not 0.0 <= float(rotate_deg) <= 180.0:
            raise ValueError(f"rotate_deg={rotate_deg!r} must be in [0, 180].")
        self.rotate_deg = float(rotate_deg)
        self.scale_range = _check_range("scale_range", scale_range, 0.1, 10.0)
        self.prob_affine = _check_prob("prob_affine", prob_affine)
        self.gamma_range = _check_range("gamma_range", gamma_range, 0.05, 20.0)
        if not 0.0 <= float(brightness) <= 1.0:
            raise ValueError(f"brightness={brightness!r} must be in [0, 1].")
        self.brightness = float(brightness)
        self.prob_intensity = _check_prob("prob_intensity", prob_intensity)
        self.intensity_mode = check_choice("intensity_mode", intensity_mode, INTENSITY_MODES)
        self.params: dict[str, Any] = {
            "hflip": False,
            "vflip": False,
            "affine": False,
            "angle": 0.0,
            "scale": 1.0,
            "intensity": False,
            "gamma": [1.0] * 3,
            "shift": [0.0] * 3,
        }

    def randomize(self, data: Any = None) -> None:
        """Draw all parameters (always the same number of draws, so a seed gives one sequence)."""
        u = self.R.uniform(size=8)
        gam = self.R.uniform(size=3)
        bri = self.R.uniform(-1.0, 1.0, size=3)
        s_lo, s_hi = self.scale_range or (1.0, 1.0)
        affine = bool(u[2] < self.prob_affine) and (self.rotate_deg > 0 or s_lo != s_hi)
        intensity = bool(u[5] < self.prob_intensity) and (self.gamma_range is not None or self.brightness > 0)
        if self.intensity_mode == "joint":
            gam, bri = np.repeat(gam[:1], 3), np.repeat(bri[:1], 3)
        g_lo, g_hi = self.gamma_range or (1.0, 1.0)
        self.params = {
            "hflip": bool(u[0] < self.prob_hflip),
            "vflip": bool(u[1] < self.prob_vflip),
            "affine": affine,
            "angle": (2.0 * u[3] - 1.0) * self.rotate_deg if affine else 0.0,
            "scale": s_lo + u[4] * (s_hi - s_lo) if affine else 1.0,
            "intensity": intensity,
            "gamma": (g_lo + gam * (g_hi - g_lo)).tolist() if intensity else [1.0] * 3,
            "shift": (bri * self.brightness).tolist() if intensity else [0.0] * 3,
        }

    def _theta(self, h: int, w: int) -> torch.Tensor:
        """Affine (output -> input) in normalised coordinates, including flips."""
        a = math.radians(self.params["angle"])
        s = self.params["scale"]
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) / s
        d = np.diag([w / 2.0, h / 2.0])
        m = np.linalg.inv(d) @ rot @ d
        flip = np.diag([-1.0 if self.params["hflip"] else 1.0, -1.0 if self.params["vflip"] else 1.0])
        theta = np.zeros((1, 2, 3))
        theta[0, :, :2] = m @ flip
        return torch.as_tensor(theta, dtype=torch.float32)

    def __call__(
        self, img: torch.Tensor | np.ndarray, randomize: bool = True, mode: str = "bilinear"
    ) -> torch.Tensor:
        """Augment ``img`` (float tensor ``(..., H, W)``); ``mode='nearest'`` for masks (no intensity)."""
        check_choice("mode", mode, AUG_MODES)
        if randomize:
            self.randomize()
        x = torch.as_tensor(img)
        if x.ndim < 2:
            raise ValueError(f"img has shape {tuple(x.shape)}: expected at least (H, W)")
        orig_dtype = x.dtype
        x = x.float()
        h, w = x.shape[-2:]
        p = self.params
        if p["affine"]:
            flat = x.reshape(1, -1, h, w)
            grid = F.affine_grid(self._theta(h, w), [1, flat.shape[1], h, w], align_corners=False)
            x = F.grid_sample(flat, grid, mode=mode, padding_mode="zeros", align_corners=False).reshape(
                x.shape
            )
        else:
            dims = [d for d, on in ((-1, p["hflip"]), (-2, p["vflip"])) if on]
            if dims:
                x = torch.flip(x, dims)
        if mode == "bilinear" and p["intensity"]:
            nd = -self.channel_dim
            if x.ndim < nd or x.shape[self.channel_dim] != 3:
                need = "(..., 3, H, W)" if nd == 3 else "(..., 3, C, H, W)"
                raise ValueError(f"img has shape {tuple(x.shape)}: intensity jitter needs {need}")
            g = torch.tensor(p["gamma"], dtype=x.dtype).view(3, *([1] * (nd - 1)))
            b = torch.tensor(p["shift"], dtype=x.dtype).view(3, *([1] * (nd - 1)))
            x = (x.clamp(0.0, 1.0) ** g + b).clamp(0.0, 1.0)
        if mode == "nearest" and not orig_dtype.is_floating_point:
            x = x.round().to(orig_dtype)
        return x


class RandDCEAugmentd(MapTransform, Randomizable):
    """Dict wrapper of :class:`RandDCEAugment`: one draw per sample, applied to every key in ``keys``.

    Args:
        keys: keys to augment (images and masks).
        mask_keys: the keys among ``keys`` that are masks (nearest resampling, no intensity jitter).
        allow_missing_keys: skip absent keys instead of raising.
        **kwargs: arguments of :class:`RandDCEAugment`.

    Example:
        >>> t = RandDCEAugmentd(("image", "mask"), prob_hflip=1.0).set_random_state(seed=1)
        >>> out = t({"image": torch.rand(3, 8, 8), "mask": torch.zeros(8, 8)})
        >>> sorted(out)
        ['image', 'mask']
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = ("image", "mask"),
        mask_keys: Sequence[Hashable] = ("mask",),
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.mask_keys = set(mask_keys)
        self.aug = RandDCEAugment(**kwargs)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandDCEAugmentd:
        """Seed this wrapper and the wrapped transform."""
        super().set_random_state(seed, state)
        self.aug.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw new parameters for the next sample."""
        self.aug.randomize(data)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Augment every key of one sample with the same parameters."""
        d = dict(data)
        self.randomize()
        for key in self.key_iterator(d):
            mode = "nearest" if key in self.mask_keys else "bilinear"
            d[key] = self.aug(d[key], randomize=False, mode=mode)
        return d
