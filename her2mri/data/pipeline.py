"""One case -> RGB slice images: phases, normalisation, slice selection, crop, views, fusion.

``preprocess_case`` is what the slice cache calls for every NIfTI/NRRD case; ``preprocess_rgb_slices`` is its
counterpart for cohorts released as pre-fused RGB PNG slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from her2mri.data.channels import make_channels
from her2mri.data.crop import CropAroundTumour, extract, place_window, resize, tumour_bbox
from her2mri.data.errors import DataError
from her2mri.data.fusion import FuseRGB, quantize_uint8
from her2mri.data.normalize import NormalizeDCE
from her2mri.data.preprocess_config import PreprocessConfig
from her2mri.data.slices import SelectSlices


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


def _parse_bbox(
    bbox: Sequence[int] | None, case_id: str
) -> tuple[tuple[int, int] | None, tuple[int, ...] | None]:
    """Split a bbox into a z-range and an in-plane (row0, row1, col0, col1) box."""
    if bbox is None:
        return None, None
    vals = tuple(int(v) for v in bbox)
    if len(vals) == 6:
        return (vals[0], vals[1]), vals[2:]
    if len(vals) == 4:
        return None, vals
    raise DataError(
        f"{case_id or 'case'}: bbox {bbox!r} must be (row0, row1, col0, col1) "
        "or (z0, z1, row0, row1, col0, col1)"
    )


def _views_index(sel: np.ndarray, n: int) -> np.ndarray:
    """(S, 3) indices z-1, z, z+1 clamped to [0, n)."""
    return np.clip(sel[:, None] + np.array([-1, 0, 1])[None, :], 0, n - 1)


def _cast(x: np.ndarray, cache_dtype: str) -> np.ndarray:
    return quantize_uint8(x) if cache_dtype == "uint8" else np.clip(x, 0.0, 1.0).astype(np.float16)


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
    """Turn one DCE case into RGB slice images according to ``cfg``.

    Volume statistics are computed once; only the selected slices (and their neighbours for adjacent views)
    are normalised, cropped and resized.

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
    name = case_id or "case"
    phases = np.asarray(phases)
    if phases.ndim != 4 or phases.shape[0] != 3:
        raise DataError(f"{name}: phases must be a (3, Z, Y, X) stack, got shape {phases.shape}")
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(np.isfinite(sp)) or min(sp) <= 0:
        raise ValueError(f"spacing={spacing!r} must be three positive numbers (z, y, x) in mm.")
    n_z, shape_yx = phases.shape[1], phases.shape[2:]
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != phases.shape[1:]:
            raise DataError(f"{name}: mask has shape {mask.shape} but phase image has {phases.shape[1:]}")
    z_range, box2d = _parse_bbox(bbox, case_id)
    has_tumour = mask is not None and bool(mask.any())
    if cfg.n4:
        from her2mri.data.n4 import N4BiasCorrection

        n4 = N4BiasCorrection(cache_dir=n4_cache_dir)
        paths = list(phase_paths) if phase_paths is not None else [None] * 3
        phases = np.stack([n4(phases[c], sp, paths[c]) for c in range(3)])

    selector = SelectSlices(cfg.slice_selection, cfg.n_slices, cfg.trim)
    mask_box = tumour_bbox(mask) if has_tumour else None  # whole-tumour in-plane box, computed once
    if has_tumour:
        # the selection only depends on the tumour area per slice: give it the in-plane tumour box (all z), a
        # small C-contiguous copy, instead of the full mask (a Fortran-ordered NIfTI mask costs a transposing
        # copy of the whole volume there)
        r0, r1, c0, c1 = mask_box  # type: ignore[misc]
        core = np.ascontiguousarray(mask[:, r0 : r1 + 1, c0 : c1 + 1])  # type: ignore[index]
        sel = selector(core, case_id)
    elif z_range is not None:
        sel = selector.from_range(z_range[0], z_range[1], n_z, case_id)
    elif mask is not None:
        raise DataError(f"{name}: tumour mask is empty and no bbox z-range was given")
    elif box2d is not None:
        raise DataError(f"{name}: no tumour mask and bbox {tuple(bbox)} has no z-range (z0, z1, row0, ...)")
    else:
        raise DataError(
            f"{name}: no tumour mask and no bbox (z0, z1, row0, row1, col0, col1): cannot locate the tumour"
        )
    if cfg.views == "volume":
        sel = _volume_slices(mask if has_tumour else None, z_range, n_z, cfg.volume_depth)
        needed = np.unique(sel)
    elif cfg.views == "adjacent":
        needed = np.unique(_views_index(sel, n_z))
    else:
        needed = sel

    stats_mask = {"none": "none", "foreground": "foreground", "tumour_bbox": "supplied"}[cfg.stats_mask]
    supplied = None
    if cfg.stats_mask == "tumour_bbox" and cfg.stats_scope != "cohort":
        supplied = _tumour_box_mask(mask if has_tumour else None, z_range, box2d, phases.shape[1:], name)
    norm = NormalizeDCE(
        cfg.normalization,
        cfg.stats_scope,
        stats_mask,
        cfg.lower_percentile,
        upper_percentile=cfg.upper_percentile,
    )
    if cfg.stats_scope == "cohort":
        if cfg.cohort_stats is None:
            raise ValueError(
                "stats_scope='cohort' but cohort_stats=None: the training-split statistics must be computed "
                "first (DCEDataModule does it; her2mri-eval reads them from the checkpoint)."
            )
        lo = np.array([[row[0]] for row in cfg.cohort_stats], dtype=np.float64)
        hi = np.array([[row[1]] for row in cfg.cohort_stats], dtype=np.float64)
        vol = norm.apply(phases, lo, hi, slices=needed, case_id=case_id)
    else:
        vol = norm(phases, mask=supplied, slices=needed, case_id=case_id)  # (3, N, Y, X) float32
    vol = make_channels(vol, cfg.channels, cfg.kinetic_eps)

    cropper = CropAroundTumour(cfg.crop_size, cfg.crop_mode, cfg.image_size)
    box_yx = mask_box if has_tumour else box2d
    scales = cfg.view_scales if cfg.views == "scales" else (1.0,)
    fuse = FuseRGB("float32")
    fused = [
        fuse(resize(extract(vol, cropper.window(shape_yx, None, box_yx, sp, s)), cfg.image_size))
        for s in scales
    ]  # each (N, 3, H, W)
    pos = {int(z): i for i, z in enumerate(needed)}
    rows = np.array([pos[int(z)] for z in sel])
    if cfg.views in ("single", "phases"):
        images = fused[0][rows]
        if cfg.views == "phases":
            images = _phase_views(images, cfg.phase_channels)
    elif cfg.views == "adjacent":
        idx = np.vectorize(pos.__getitem__)(_views_index(sel, n_z))
        images = fused[0][idx]  # (S, 3 views, 3, H, W)
    elif cfg.views == "volume":
        images = np.moveaxis(fused[0][rows], 0, 1)[None]  # (1, 3 channels, D, H, W)
        centre = sel[len(sel) // 2 : len(sel) // 2 + 1]
        return PreprocessedCase(
            images=_cast(np.ascontiguousarray(images), cfg.cache_dtype),
            masks=None,
            slice_idx=centre.astype(np.int32),
            case_id=case_id,
            crop_window=cropper.window(shape_yx, None, box_yx, sp, 1.0),
        )
    else:
        images = np.stack([f[rows] for f in fused], axis=1)
    base = cropper.window(shape_yx, None, box_yx, sp, 1.0)
    masks = None
    if mask is not None:
        masks = resize(extract((mask[sel] != 0).astype(np.uint8), base), cfg.image_size, "nearest")
    return PreprocessedCase(
        images=_cast(images, cfg.cache_dtype),
        masks=masks,
        slice_idx=sel.astype(np.int32),
        case_id=case_id,
        crop_window=base,
    )


def _phase_views(images: np.ndarray, phase_channels: int) -> np.ndarray:
    """(S, 3, H, W) fused slices -> (S, 3 views, C, H, W): view k is channel k, repeated to C channels."""
    views = images[:, :, None]  # (S, 3, 1, H, W)
    return np.repeat(views, 3, axis=2) if phase_channels == 3 else np.ascontiguousarray(views)


def _volume_slices(
    mask: np.ndarray | None, z_range: tuple[int, int] | None, n_z: int, depth: int
) -> np.ndarray:
    """``depth`` slice indices centred on the tumour's z-centre, clamped to the volume (edges repeated)."""
    if mask is not None:
        zs = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
        z0, z1 = int(zs[0]), int(zs[-1])
    else:
        z0, z1 = z_range  # type: ignore[misc]
    start = (z0 + z1) // 2 - (depth - 1) // 2
    return np.clip(np.arange(start, start + depth), 0, n_z - 1)


def _tumour_box_mask(
    mask: np.ndarray | None,
    z_range: tuple[int, int] | None,
    box2d: tuple[int, ...] | None,
    shape: tuple[int, ...],
    name: str,
) -> np.ndarray:
    """Boolean (Z, Y, X) box around the tumour (mask, else bbox) for ``stats_mask='tumour_bbox'``."""
    if mask is not None:
        zs = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
        z0, z1 = int(zs[0]), int(zs[-1])
        r0, r1, c0, c1 = tumour_bbox(mask)  # type: ignore[misc]
    elif z_range is not None and box2d is not None:
        (z0, z1), (r0, r1, c0, c1) = z_range, box2d
    else:
        raise DataError(f"{name}: stats_mask='tumour_bbox' needs a tumour mask or a 6-value bbox")
    out = np.zeros(shape, dtype=bool)
    out[max(z0, 0) : z1 + 1, max(r0, 0) : r1 + 1, max(c0, 0) : c1 + 1] = True
    return out


def preprocess_rgb_slices(
    images: np.ndarray,
    cfg: PreprocessConfig,
    bboxes: Sequence[Sequence[int] | None] | Sequence[int] | None = None,
    *,
    spacing_yx: Sequence[float] | None = None,
    slice_idx: Sequence[int] | None = None,
    case_id: str = "",
) -> PreprocessedCase:
    """Crop, resize and build views from pre-fused RGB slices (e.g. PNG cohorts).

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
    name = case_id or "case"
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DataError(f"{name}: RGB slices must be uint8 (S, H, W, 3), got {images.dtype} {images.shape}")
    n, h, w = images.shape[:3]
    idx = np.arange(n) if slice_idx is None else np.asarray(slice_idx)
    if idx.shape != (n,):
        raise ValueError(f"slice_idx has {idx.size} entries for {n} images")
    box = _union_boxes(bboxes, n, name)
    stack = np.moveaxis(images, -1, 0).astype(np.float32) / np.float32(255.0)  # (3, S, H, W)
    scales = cfg.view_scales if cfg.views == "scales" else (1.0,)
    cropper = CropAroundTumour(cfg.crop_size, cfg.crop_mode, cfg.image_size)

    def window(s: float) -> tuple[int, int, int, int]:
        if box is not None:
            return cropper.window((h, w), None, box, spacing_yx, s)
        if s == 1.0:
            return 0, 0, h, w
        side = max(1, int(np.floor(min(h, w) * s + 0.5)))
        return place_window(((h - 1) / 2.0, (w - 1) / 2.0), (side, side), (h, w))

    if cfg.views == "volume":
        raise ValueError("views='volume' needs 3-D phase volumes; pre-fused RGB slices have none.")
    stack = make_channels(stack, cfg.channels, cfg.kinetic_eps)
    fuse = FuseRGB("float32")
    fused = [fuse(resize(extract(stack, window(s)), cfg.image_size)) for s in scales]
    if cfg.views in ("single", "phases"):
        out = fused[0] if cfg.views == "single" else _phase_views(fused[0], cfg.phase_channels)
    elif cfg.views == "adjacent":
        out = fused[0][_views_index(np.arange(n), n)]
    else:
        out = np.stack(fused, axis=1)
    return PreprocessedCase(_cast(out, cfg.cache_dtype), None, idx.astype(np.int32), case_id, window(1.0))


def _union_boxes(bboxes: object, n: int, name: str) -> tuple[int, int, int, int] | None:
    if bboxes is None:
        return None
    seq = list(bboxes)  # type: ignore[call-overload]
    if len(seq) == 4 and all(np.isscalar(v) for v in seq):
        return tuple(int(v) for v in seq)  # type: ignore[return-value]
    if len(seq) != n:
        raise DataError(f"{name}: {len(seq)} bboxes for {n} RGB slices")
    boxes = [tuple(int(v) for v in b) for b in seq if b is not None]
    if not boxes:
        return None
    arr = np.array(boxes)
    return int(arr[:, 0].min()), int(arr[:, 1].max()), int(arr[:, 2].min()), int(arr[:, 3].max())
