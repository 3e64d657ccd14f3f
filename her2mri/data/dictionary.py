"""MONAI dict wrappers (``...d``) of the her2mri array transforms, applied to ``keys`` of a sample dict.

They live apart from the array classes so that the array transforms and ``preprocess_case`` do not import
MONAI (about 10 s). ``RandDCEAugmentd`` is in :mod:`her2mri.data.augment`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.transforms import MapTransform

from her2mri.data.crop import CropAroundTumour
from her2mri.data.fusion import FuseRGB
from her2mri.data.n4 import N4BiasCorrection
from her2mri.data.normalize import NormalizeDCE
from her2mri.data.phases import SelectPhases
from her2mri.data.slices import SelectSlices


def _case(d: Mapping[Hashable, Any], case_key: Hashable | None) -> str:
    return str(d.get(case_key, "")) if case_key is not None else ""


class SelectPhasesd(MapTransform):
    """Dict wrapper of :class:`~her2mri.data.phases.SelectPhases`.

    Args:
        keys: keys holding the acquisitions (a list of 3-D arrays or a (T, Z, Y, X) array).
        indices_key: key holding the (pre, early, late) indices of the sample, or None to use ``indices``.
        indices: fixed indices when ``indices_key`` is None or absent.
        case_key: key of the case id (named in errors).
        allow_missing_keys: skip absent keys.

    Example:
        >>> d = SelectPhasesd("image")({"image": np.zeros((7, 2, 4, 4)), "phase_indices": (0, 2, 5)})
        >>> d["image"].shape
        (3, 2, 4, 4)
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable,
        indices_key: Hashable | None = "phase_indices",
        indices: Sequence[int] | None = None,
        case_key: Hashable | None = "pid",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.indices_key = indices_key
        self.case_key = case_key
        self.t = SelectPhases(indices)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Select the phases of every key."""
        d = dict(data)
        idx = d.get(self.indices_key) if self.indices_key is not None else None
        for key in self.key_iterator(d):
            d[key] = self.t(d[key], idx, _case(d, self.case_key))
        return d


class NormalizeDCEd(MapTransform):
    """Dict wrapper of :class:`~her2mri.data.normalize.NormalizeDCE`.

    Args:
        keys: keys holding (3, Z, Y, X) stacks.
        mask_key: key of the statistics mask for ``stats_mask='supplied'``.
        case_key: key of the case id (named in warnings).
        allow_missing_keys: skip absent keys.
        **kwargs: arguments of :class:`~her2mri.data.normalize.NormalizeDCE`.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable,
        mask_key: Hashable | None = None,
        case_key: Hashable | None = "pid",
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.case_key = case_key
        self.t = NormalizeDCE(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Normalise every key."""
        d = dict(data)
        mask = None if self.mask_key is None else d.get(self.mask_key)
        for key in self.key_iterator(d):
            d[key] = self.t(np.asarray(d[key]), mask=mask, case_id=_case(d, self.case_key))
        return d


class FuseRGBd(MapTransform):
    """Dict wrapper of :class:`~her2mri.data.fusion.FuseRGB` (``dtype``, ``channel_dim`` as there)."""

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable,
        dtype: str = "float32",
        channel_dim: str = "first",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.t = FuseRGB(dtype, channel_dim)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Fuse every key."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.t(np.asarray(d[key]))
        return d


class SelectSlicesd(MapTransform):
    """Dict wrapper of :class:`~her2mri.data.slices.SelectSlices`: writes the indices to ``output_key``.

    ``keys`` are the mask keys (the first present one is used); arrays under ``slice_keys`` are then reduced
    to those slices along their axis ``-3`` (z of (Z, Y, X) and of (C, Z, Y, X)).
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = "mask",
        method: str = "central",
        n_slices: int = 4,
        trim: float = 0.15,
        output_key: Hashable = "slice_idx",
        slice_keys: Sequence[Hashable] = (),
        case_key: Hashable | None = "pid",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.t = SelectSlices(method, n_slices, trim)
        self.output_key = output_key
        self.slice_keys = tuple(slice_keys)
        self.case_key = case_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Select slices from the mask and reduce ``slice_keys``."""
        d = dict(data)
        for key in self.key_iterator(d):
            sel = self.t(np.asarray(d[key]), _case(d, self.case_key))
            d[self.output_key] = sel
            for sk in self.slice_keys:
                d[sk] = np.take(np.asarray(d[sk]), sel, axis=-3)
            break
        return d


class CropAroundTumourd(MapTransform):
    """Dict wrapper of :class:`~her2mri.data.crop.CropAroundTumour`.

    The window comes from ``d[mask_key]`` (or ``d[bbox_key]``) and ``d[spacing_key]``; keys in
    ``mask_keys`` are resized with nearest neighbour, the others bilinearly.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable,
        mask_key: Hashable | None = "mask",
        mask_keys: Sequence[Hashable] = ("mask",),
        spacing_key: Hashable | None = "spacing",
        bbox_key: Hashable | None = None,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key, self.mask_keys = mask_key, set(mask_keys)
        self.spacing_key, self.bbox_key = spacing_key, bbox_key
        self.t = CropAroundTumour(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Crop and resize every key around the same tumour."""
        d = dict(data)
        mask = None if self.mask_key is None else d.get(self.mask_key)
        mask = None if mask is None else np.asarray(mask)
        spacing = None if self.spacing_key is None else d.get(self.spacing_key)
        bbox = None if self.bbox_key is None else d.get(self.bbox_key)
        for key in self.key_iterator(d):
            mode = "nearest" if key in self.mask_keys else "bilinear"
            d[key] = self.t(np.asarray(d[key]), mask, spacing, bbox, mode)
        return d


class N4BiasCorrectiond(MapTransform):
    """Dict wrapper of :class:`~her2mri.data.n4.N4BiasCorrection` on each phase of (P, Z, Y, X) or (Z, Y, X).

    ``d[path_key]`` (optional) gives the source file(s) for the cache key, one per phase.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable,
        spacing_key: Hashable = "spacing",
        path_key: Hashable | None = None,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spacing_key, self.path_key = spacing_key, path_key
        self.t = N4BiasCorrection(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Correct every key."""
        d = dict(data)
        spacing = d[self.spacing_key]
        paths = None if self.path_key is None else d.get(self.path_key)
        for key in self.key_iterator(d):
            x = np.asarray(d[key])
            if x.ndim == 3:
                d[key] = self.t(x, spacing, paths if not isinstance(paths, (list, tuple)) else paths[0])
            else:
                srcs = list(paths) if isinstance(paths, (list, tuple)) else [None] * x.shape[0]
                d[key] = np.stack([self.t(x[p], spacing, srcs[p]) for p in range(x.shape[0])])
        return d
