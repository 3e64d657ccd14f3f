"""One case -> RGB slice images, as the MONAI ``Compose`` of :mod:`her2mri.data.dictionary`.

:func:`preprocess_transform` builds the ``Compose`` (the only preprocessing path: the datamodule runs it on
every case through :func:`her2mri.data.prepare.preprocess_record`); :func:`preprocess_case` and
:func:`preprocess_rgb_slices` run it on arrays already in memory (three phase volumes, or pre-fused RGB PNG
slices).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import Compose

from her2mri.data.dictionary import K, preprocess_transforms
from her2mri.data.errors import apply_transform
from her2mri.data.preprocess_config import PreprocessConfig


@dataclass
class PreprocessedCase:
    """The slices of one case, ready for the cache.

    Attributes:
        images: uint8 or float16 (``cfg.cache_dtype``), ``(S, 3, H, W)`` for ``views='single'``,
            ``(S, 3, 3, H, W)`` (views, RGB, H, W) for ``adjacent``/``scales``, ``(S, 3, C, H, W)`` (one view
            per channel, ``C = cfg.phase_channels``) for ``phases`` and ``(1, 3, D, H, W)`` (channels, depth)
            for ``volume``; channels per ``cfg.channels`` (R, G, B = pre, early, late by default); uint8 is
            ``round(x * 255)``.
        masks: uint8 ``(S, H, W)`` tumour mask of the (centre) slice, or None when the case has no voxel mask.
        slice_idx: int32 ``(S,)`` slice index (axis 0 of the volume, or position in the RGB list).
        case_id: the case, for messages.
        crop_window: (row0, col0, height, width) of the base crop (scale 1) in the original slice.
    """

    images: np.ndarray
    masks: np.ndarray | None
    slice_idx: np.ndarray
    case_id: str = ""
    crop_window: tuple[int, int, int, int] | None = None


def preprocess_transform(
    cfg: PreprocessConfig, source: str = "volume", load: bool = True, n4_cache_dir: str | Path | None = None
) -> Compose:
    """The deterministic preprocessing of one case as a ``monai.transforms.Compose``.

    Volumes: ``LoadVolumesd, LocateTumourd, [N4BiasCorrectiond,] SelectSlicesd, NormalizeDCEd,
    MakeChannelsd, CropAroundTumourd, FuseRGBd, ArrangeViewsd, CastImaged``; RGB slices: ``LoadRGBSlicesd,
    RGBSlicesToStackd, MakeChannelsd, CropAroundTumourd, FuseRGBd, ArrangeViewsd, CastImaged`` (see
    :mod:`her2mri.data.dictionary`). Its input is ``{"record": CaseRecord}`` (``load=False``: the arrays,
    see :func:`preprocess_case`); run it with :func:`run_preprocess`, which raises the transforms' own errors.

    Args:
        cfg: the preprocessing configuration.
        source: ``volume`` or ``rgb``.
        load: start with the loader of ``d["record"]``.
        n4_cache_dir: N4 disk cache folder (``cfg.n4``); None computes without cache.

    Example:
        >>> [type(t).__name__ for t in preprocess_transform(PreprocessConfig()).transforms][:3]
        ['LoadVolumesd', 'LocateTumourd', 'SelectSlicesd']
    """
    return Compose(preprocess_transforms(cfg, source, load, n4_cache_dir))


def run_preprocess(transform: Compose, data: dict[Hashable, Any]) -> PreprocessedCase:
    """Run a preprocessing ``Compose`` on one case dictionary.

    MONAI wraps an error raised inside a transform in ``RuntimeError("applying transform ...")``; the
    original :class:`~her2mri.data.errors.DataError` (naming the file or case) or ``ValueError`` is raised
    instead.
    """
    d = apply_transform(transform, data)
    return PreprocessedCase(
        images=d[K.IMAGE],
        masks=d.get(K.MASK),
        slice_idx=d[K.SLICE_IDX],
        case_id=str(d.get(K.CASE) or ""),
        crop_window=tuple(int(v) for v in d[K.WINDOW]),  # type: ignore[arg-type]
    )


def preprocess_case(
    phases: np.ndarray,
    mask: np.ndarray | None,
    spacing: Sequence[float],
    cfg: PreprocessConfig,
    bbox: Sequence[int] | None = None,
    case_id: str = "",
    *,
    phase_paths: Sequence[str | Path] | None = None,
    n4_cache_dir: str | Path | None = None,
) -> PreprocessedCase:
    """Turn one DCE case held in memory into RGB slice images according to ``cfg``.

    Runs :func:`preprocess_transform` without its loader. Volume statistics are computed once; only the
    selected slices (and their neighbours for adjacent views) are normalised, cropped and resized.

    Args:
        phases: (3, Z, Y, X) pre, early, late, any numeric dtype.
        mask: (Z, Y, X) tumour mask (non-zero = tumour) or None.
        spacing: (z, y, x) voxel size in mm (from the metadata, not the header).
        cfg: the preprocessing configuration.
        bbox: tumour box when there is no voxel mask (Duke): (z0, z1, row0, row1, col0, col1) inclusive, or
            in-plane (row0, row1, col0, col1) together with a mask. Also used for ``stats_mask='tumour_bbox'``
            without a mask.
        case_id: named in errors and warnings.
        phase_paths: files of the three phases (keys of the N4 cache).
        n4_cache_dir: N4 disk cache folder (``cfg.n4``); None computes without cache.

    Raises:
        DataError: bad shapes, image/mask shape mismatch, empty mask and no bbox, no tumour location.
    """
    data = {
        K.IMAGE: phases,
        K.MASK: mask,
        K.SPACING: spacing,
        K.BBOX: bbox,
        K.CASE: case_id,
        K.PHASE_PATHS: phase_paths,
    }
    return run_preprocess(preprocess_transform(cfg, "volume", False, n4_cache_dir), data)


def preprocess_rgb_slices(
    images: np.ndarray,
    cfg: PreprocessConfig,
    bboxes: Sequence[Sequence[int] | None] | Sequence[int] | None = None,
    *,
    spacing_yx: Sequence[float] | None = None,
    slice_idx: Sequence[int] | None = None,
    case_id: str = "",
) -> PreprocessedCase:
    """Crop, resize and build views from pre-fused RGB slices (e.g. PNG cohorts) held in memory.

    The images are already normalised and fused, so ``cfg.normalization``, ``slice_selection`` and ``n4``
    do not apply: every given slice is kept. The crop follows ``cfg`` around the union of the per-slice
    tumour boxes (whole tumour, one window for all slices); without boxes the full image is only resized
    (``scales`` views then crop ``s`` times the image side around its centre). ``adjacent`` views use the
    neighbouring slices in the list (clamped at both ends).

    Args:
        images: uint8 (S, H, W, 3), channels R = pre, G = early, B = late.
        cfg: the preprocessing configuration.
        bboxes: one (row0, row1, col0, col1) per slice (entries may be None), one box for all, or None.
        spacing_yx: (y, x) mm per pixel of the images, needed for ``crop_mode='mm'``.
        slice_idx: slice index of each image (default 0..S-1).
        case_id: named in errors.
    """
    data = {
        K.RGB: images,
        K.RGB_BOXES: bboxes,
        K.SPACING: spacing_yx,
        K.SLICE_NUMBERS: slice_idx,
        K.CASE: case_id,
    }
    return run_preprocess(preprocess_transform(cfg, "rgb", load=False), data)
