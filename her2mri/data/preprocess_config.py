"""Preprocessing configuration (:class:`PreprocessConfig`) and its valid option names.

The Hydra group ``preprocess/`` maps 1:1 on the fields of :class:`PreprocessConfig`; ``key()`` is the stable
hash the slice cache uses, so any change of a field gives a new cache entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from her2mri.options import check_choice

NORMALIZATIONS: tuple[str, ...] = (
    "minmax_slice",
    "minmax_volume",
    "minmax_global",
    "clip_global_q95",
    "clip_global_q98",
    "clip_global_q99",
    "clip_channel_q95",
    "clip_channel_q98",
    "clip_channel_q99",
    "zscore",
)
STATS_SCOPES: tuple[str, ...] = ("volume", "slice")
STATS_MASKS: tuple[str, ...] = ("none", "foreground", "tumour_bbox")
SLICE_SELECTIONS: tuple[str, ...] = ("central", "largest", "all", "spread")
CROP_MODES: tuple[str, ...] = ("pixels", "mm")
VIEWS: tuple[str, ...] = ("single", "adjacent", "scales")
CACHE_DTYPES: tuple[str, ...] = ("uint8", "float16")


def _check_number(name: str, value: Any, low: float, high: float, *, integer: bool = False) -> None:
    ok_type = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name}={value!r} must be {kind} in [{low}, {high}].")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a DCE-MRI case becomes RGB slices (see docs/preprocessing.md for every option and why).

    Args:
        normalization: intensity normalisation, one of :data:`NORMALIZATIONS`. Default ``clip_channel_q98``
            (per-phase upper clipping at the 98th percentile), the paper's best (test AUC 0.744).
        stats_scope: where statistics are computed: ``volume`` (default) or ``slice``.
        stats_mask: which voxels the statistics use: ``none`` (all), ``foreground`` (pre-contrast voxels above
            10 % of its 99th percentile) or ``tumour_bbox`` (3-D bounding box of the tumour).
        lower_percentile: lower bound in percent, 0 to 50 (0 = minimum).
        n4: SimpleITK N4 bias-field correction of each phase first (disk-cached). Default off: the paper
            found that N4 slightly degraded deep-learning performance.
        slice_selection: ``central``, ``largest``, ``all`` or ``spread``.
        n_slices: k for central / largest / spread, 1 to 512.
        trim: fraction of the tumour z-range trimmed at each end for ``spread``, in [0, 0.5).
        crop_mode: ``pixels`` or ``mm`` (crop side divided by the in-plane spacing).
        crop_size: crop side in pixels or mm, > 0.
        image_size: output side after resizing, 8 to 4096.
        views: ``single``, ``adjacent`` (slices z-1, z, z+1) or ``scales`` (three crop sizes).
        view_scales: three positive crop-size factors for ``views == "scales"``.
        cache_dtype: ``uint8`` (exact 8-bit quantisation) or ``float16``.

    Example:
        >>> cfg = PreprocessConfig(normalization="clip_global_q99", views="adjacent")
        >>> PreprocessConfig.from_dict(cfg.to_dict()).key() == cfg.key()
        True
    """

    normalization: str = "clip_channel_q98"
    stats_scope: str = "volume"
    stats_mask: str = "none"
    lower_percentile: float = 0.0
    n4: bool = False
    slice_selection: str = "central"
    n_slices: int = 4
    trim: float = 0.15
    crop_mode: str = "pixels"
    crop_size: float = 128.0
    image_size: int = 224
    views: str = "single"
    view_scales: tuple[float, float, float] = (0.75, 1.0, 1.5)
    cache_dtype: str = "uint8"

    def __post_init__(self) -> None:
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_choice("stats_scope", self.stats_scope, STATS_SCOPES)
        check_choice("stats_mask", self.stats_mask, STATS_MASKS)
        _check_number("lower_percentile", self.lower_percentile, 0.0, 50.0)
        if not isinstance(self.n4, bool):
            raise ValueError(f"n4={self.n4!r} must be a bool.")
        check_choice("slice_selection", self.slice_selection, SLICE_SELECTIONS)
        _check_number("n_slices", self.n_slices, 1, 512, integer=True)
        _check_number("trim", self.trim, 0.0, 0.499999)
        check_choice("crop_mode", self.crop_mode, CROP_MODES)
        _check_number("crop_size", self.crop_size, 1e-6, 1e6)
        _check_number("image_size", self.image_size, 8, 4096, integer=True)
        check_choice("views", self.views, VIEWS)
        scales = self.view_scales
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or len(scales) != 3:
            raise ValueError(f"view_scales={scales!r} must be three positive numbers.")
        for s in scales:
            _check_number("view_scales", s, 1e-3, 100.0)
        # normalise lists (Hydra ListConfig, JSON) to a tuple of floats so key() is stable
        object.__setattr__(self, "view_scales", tuple(float(s) for s in scales))
        object.__setattr__(self, "lower_percentile", float(self.lower_percentile))
        object.__setattr__(self, "trim", float(self.trim))
        object.__setattr__(self, "crop_size", float(self.crop_size))
        object.__setattr__(self, "n_slices", int(self.n_slices))
        object.__setattr__(self, "image_size", int(self.image_size))
        check_choice("cache_dtype", self.cache_dtype, CACHE_DTYPES)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (``view_scales`` as a list), JSON-serialisable."""
        d = dataclasses.asdict(self)
        d["view_scales"] = list(self.view_scales)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessConfig:
        """Build from a mapping (e.g. a Hydra/OmegaConf node); unknown keys raise ValueError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        unknown = sorted(set(d) - names)
        if unknown:
            for key in unknown:
                check_choice("PreprocessConfig key", key, sorted(names))
        if "view_scales" in d and d["view_scales"] is not None and not isinstance(d["view_scales"], str):
            d["view_scales"] = tuple(d["view_scales"])
        return cls(**d)

    def key(self) -> str:
        """Stable short hash (16 hex chars of the sha1 of the sorted JSON of the fields)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]
