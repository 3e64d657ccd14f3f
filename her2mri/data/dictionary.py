"""The deterministic preprocessing of one case as MONAI dictionary transforms (``MapTransform`` subclasses).

:func:`her2mri.data.pipeline.preprocess_transform` chains them into the ``monai.transforms.Compose`` that the
datamodule runs on every case (the only preprocessing path). Each one wraps an array function or class that
the tests check on its own; together they pass one case dictionary along, with the keys of :class:`K`:

====================  ===============================================================================
transform             reads -> writes
====================  ===============================================================================
LoadVolumesd          ``record`` -> ``image`` (3, Z, Y, X) phases, ``mask``, ``spacing``, ``bbox``, ...
LoadRGBSlicesd        ``record`` -> ``rgb`` (S, H, W, 3) uint8, ``rgb_boxes``, ``spacing``, ``slice_numbers``
LocateTumourd         ``image``, ``mask``, ``bbox`` -> ``tumour_box`` (whole-tumour in-plane box), ``z_range``
RGBSlicesToStackd     ``rgb``, ``rgb_boxes`` -> ``image`` (3, S, H, W) float32, ``tumour_box``, ``selected``
N4BiasCorrectiond     ``image`` -> ``image`` (each phase bias-corrected)
SelectSlicesd         ``mask`` / ``z_range`` -> ``selected`` (slices kept), ``needed`` (with neighbours)
NormalizeDCEd         ``image`` -> ``image`` (3, N, Y, X) float32 in [0, 1], the ``needed`` slices only
MakeChannelsd         ``image`` -> ``image`` (phases, subtraction or kinetic channels)
CropAroundTumourd     ``image``, ``mask``, ``tumour_box`` -> ``image`` (K scales, 3, N, H, W), ``mask``
FuseRGBd              ``image`` -> ``image`` (K, N, 3, H, W)
ArrangeViewsd         ``image``, ``selected`` -> ``image`` in the layout of ``views``, ``slice_idx``
CastImaged            ``image`` -> ``image`` uint8 (``round(x * 255)``) or float16
====================  ===============================================================================

The crop window comes from the whole tumour (all slices), computed by ``LocateTumourd`` before any slice is
dropped, so every selected slice and view shares one window whatever the tumour's extent per slice.
The ``keys`` of a transform name the arrays it changes (defaults as in the table); the other entries it reads
or writes are the fixed keys of :class:`K`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import MapTransform

from her2mri.data.channels import make_channels
from her2mri.data.crop import CropAroundTumour, extract, place_window, resize, tumour_bbox
from her2mri.data.errors import DataError
from her2mri.data.fusion import FuseRGB, quantize_uint8
from her2mri.data.normalize import NormalizeDCE
from her2mri.data.preprocess_config import CACHE_DTYPES, VIEWS, PreprocessConfig
from her2mri.data.slices import SelectSlices
from her2mri.options import check_choice


class K:
    """Keys of the case dictionary passed along the preprocessing ``Compose``."""

    RECORD = "record"  #: the :class:`~her2mri.data.records.CaseRecord` (loaders only)
    IMAGE = "image"  #: phases (3, Z, Y, X), then normalised, cropped, fused and arranged images
    MASK = "mask"  #: (Z, Y, X) tumour mask or None, then the (S, H, W) uint8 masks of the selected slices
    SPACING = "spacing"  #: (z, y, x) mm (volumes) or (y, x) mm / None (RGB slices)
    BBOX = "bbox"  #: box of a case without voxel mask: (z0, z1, row0, row1, col0, col1) or in-plane 4 values
    CASE = "case_id"  #: named in errors and warnings
    PHASE_PATHS = "phase_paths"  #: files of the three phases (N4 cache keys)
    TUMOUR_BOX = "tumour_box"  #: in-plane (row0, row1, col0, col1) of the whole tumour, or None
    Z_RANGE = "z_range"  #: (z0, z1) of a bbox without voxel mask, or None
    BOX2D = "box2d"  #: in-plane part of ``bbox``, or None
    HAS_TUMOUR = "has_tumour"  #: the mask has at least one tumour voxel
    N_Z = "n_z"  #: slices in the volume (or RGB slices in the list)
    SELECTED = "selected"  #: int64 indices of the selected slices (axis 0 of the volume / list position)
    NEEDED = "needed"  #: sorted slice indices the normalisation computes (selected plus view neighbours)
    RGB = "rgb"  #: (S, H, W, 3) uint8 pre-fused slices
    RGB_BOXES = "rgb_boxes"  #: per-slice (row0, row1, col0, col1) boxes, one box, or None
    SLICE_NUMBERS = "slice_numbers"  #: slice index of each RGB slice (None: 0..S-1)
    WINDOW = "crop_window"  #: (row0, col0, height, width) of the base crop in the original slice
    SLICE_IDX = "slice_idx"  #: int32 slice index of each output sample


def _name(d: Mapping[Hashable, Any]) -> str:
    return str(d.get(K.CASE) or "case")


def views_index(sel: np.ndarray, n: int) -> np.ndarray:
    """(S, 3) indices z-1, z, z+1 clamped to [0, n)."""
    return np.clip(sel[:, None] + np.array([-1, 0, 1])[None, :], 0, n - 1)


def volume_slices(
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


def parse_bbox(
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


def union_boxes(bboxes: object, n: int, name: str) -> tuple[int, int, int, int] | None:
    """One in-plane box around per-slice boxes (None entries skipped), a single box as it is, or None."""
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


def tumour_box_mask(
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


def _volume_bbox(record: Any, has_mask: bool) -> tuple[int, ...] | None:
    """Bbox of a record without voxel mask: 6 values (with the metadata z-range) when it has one."""
    if has_mask or record.bbox is None:
        return None
    z0, z1 = record.extra.get("mask_start"), record.extra.get("mask_end")
    if z0 is None or z1 is None:
        return tuple(record.bbox)
    return (int(z0), int(z1), *record.bbox)


def _rgb_boxes(record: Any) -> list[tuple[int, int, int, int] | None] | None:
    """Per-slice (x, y, w, h) boxes of an RGB record -> (row0, row1, col0, col1) inclusive."""
    boxes = record.extra.get("rgb_bboxes")
    if not boxes:
        return None
    out: list[tuple[int, int, int, int] | None] = []
    for b in boxes:
        if b is None or b[2] <= 0 or b[3] <= 0:
            out.append(None)
        else:
            x, y, w, h = (int(v) for v in b)
            out.append((y, y + h - 1, x, x + w - 1))
    return out


class LoadVolumesd(MapTransform):
    """Read the three phase files and the mask of ``d["record"]`` into ``image`` (3, Z, Y, X) and ``mask``.

    Uses :func:`her2mri.data.io.load_case_arrays`, kept over MONAI's ``LoadImaged`` because it is measured
    faster: 0.86x the time of a bare nibabel read of the same four files (compact uint16 in the files' own
    memory layout, no float or transposing copy; docs/performance.md, ``tools/bench.py`` prep). Also sets
    ``spacing`` (metadata, else header), ``bbox`` (metadata box of a case without mask), ``case_id`` and
    ``phase_paths``.
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable = (K.IMAGE, K.MASK)) -> None:
        super().__init__(keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Read the case files."""
        from her2mri.data.io import load_case_arrays

        d = dict(data)
        record = d[K.RECORD]
        # compact lossless type (uint16) in the files' memory layout: no float copy, no transposing copy
        phases, mask, spacing = load_case_arrays(record, dtype=None, contiguous=False)
        d[K.IMAGE], d[K.MASK], d[K.SPACING] = phases, mask, spacing
        d[K.BBOX] = _volume_bbox(record, mask is not None)
        d[K.PHASE_PATHS] = record.phase_paths
        d.setdefault(K.CASE, f"{record.pid} ({record.phase_paths[0].parent})")
        return d


class LoadRGBSlicesd(MapTransform):
    """Read the pre-fused RGB PNG slices of ``d["record"]`` into ``rgb`` (S, H, W, 3) uint8.

    Also sets ``rgb_boxes`` (per-slice tumour boxes of the index CSV), ``spacing`` ((y, x) mm or None),
    ``slice_numbers`` and ``case_id``.
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable = K.RGB) -> None:
        super().__init__(keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Read the slice images."""
        from her2mri.data.io import read_rgb

        d = dict(data)
        record = d[K.RECORD]
        imgs = [read_rgb(p) for p in record.rgb_paths]
        shapes = {im.shape for im in imgs}
        if len(shapes) > 1:
            raise DataError(
                f"{record.rgb_paths[0]}: slices of case {record.pid} differ in size: {sorted(shapes)}"
            )
        d[K.RGB] = np.stack(imgs)
        d[K.RGB_BOXES] = _rgb_boxes(record)
        d[K.SPACING] = tuple(record.spacing[1:]) if record.spacing is not None else None
        d[K.SLICE_NUMBERS] = record.rgb_slice_index
        d.setdefault(K.CASE, record.pid)
        return d


class LocateTumourd(MapTransform):
    """Check a volume case and find its tumour: ``tumour_box`` over all slices, ``z_range`` of a bbox.

    The in-plane box of the whole tumour (every slice) is computed once here, before any slice is dropped:
    it centres the crop window of every selected slice and view (her2mri's tumour crop, kept because the
    window must not move between slices; MONAI's ``CropForegroundd`` fits the box instead of centring a
    fixed physical size on it).

    Raises:
        DataError: phases not (3, Z, Y, X), mask/image shape mismatch, a bad bbox.
        ValueError: spacing not three positive numbers.
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable = (K.IMAGE, K.MASK)) -> None:
        super().__init__(keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Validate and locate."""
        d = dict(data)
        name = _name(d)
        phases = np.asarray(d[K.IMAGE])
        if phases.ndim != 4 or phases.shape[0] != 3:
            raise DataError(f"{name}: phases must be a (3, Z, Y, X) stack, got shape {phases.shape}")
        spacing = d.get(K.SPACING)
        sp = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
        if len(sp) != 3 or not all(np.isfinite(sp)) or min(sp) <= 0:
            raise ValueError(f"spacing={spacing!r} must be three positive numbers (z, y, x) in mm.")
        mask = d.get(K.MASK)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != phases.shape[1:]:
                raise DataError(f"{name}: mask has shape {mask.shape} but phase image has {phases.shape[1:]}")
        z_range, box2d = parse_bbox(d.get(K.BBOX), str(d.get(K.CASE) or ""))
        has_tumour = mask is not None and bool(mask.any())
        d[K.IMAGE], d[K.MASK], d[K.SPACING] = phases, mask, sp
        d[K.Z_RANGE], d[K.BOX2D], d[K.HAS_TUMOUR] = z_range, box2d, has_tumour
        d[K.TUMOUR_BOX] = tumour_bbox(mask) if has_tumour else box2d
        d[K.N_Z] = phases.shape[1]
        return d


class RGBSlicesToStackd(MapTransform):
    """Pre-fused RGB slices (S, H, W, 3) uint8 -> ``image`` (3, S, H, W) float32 in [0, 1], every slice kept.

    The tumour box is the union of the per-slice boxes (one window for all slices).
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable = K.RGB) -> None:
        super().__init__(keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Check and restack."""
        d = dict(data)
        name = _name(d)
        images = np.asarray(d.pop(K.RGB))
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DataError(
                f"{name}: RGB slices must be uint8 (S, H, W, 3), got {images.dtype} {images.shape}"
            )
        n = images.shape[0]
        numbers = d.get(K.SLICE_NUMBERS)
        idx = np.arange(n) if numbers is None else np.asarray(numbers)
        if idx.shape != (n,):
            raise ValueError(f"slice_idx has {idx.size} entries for {n} images")
        d[K.SLICE_NUMBERS] = idx
        d[K.TUMOUR_BOX] = union_boxes(d.get(K.RGB_BOXES), n, name)
        d[K.IMAGE] = np.moveaxis(images, -1, 0).astype(np.float32) / np.float32(255.0)
        d[K.MASK] = None
        d[K.N_Z] = n
        d[K.SELECTED] = d[K.NEEDED] = np.arange(n)
        return d


class N4BiasCorrectiond(MapTransform):
    """Dict wrapper of :class:`~her2mri.data.n4.N4BiasCorrection` on each phase of ``image`` (3, Z, Y, X).

    ``phase_paths`` (when present) are the cache keys of the three phases.
    """

    def __init__(
        self, keys: Sequence[Hashable] | Hashable = K.IMAGE, cache_dir: str | Path | None = None
    ) -> None:
        super().__init__(keys)
        from her2mri.data.n4 import N4BiasCorrection

        self.n4 = N4BiasCorrection(cache_dir=cache_dir)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Correct every phase."""
        d = dict(data)
        paths = d.get(K.PHASE_PATHS)
        paths = list(paths) if paths is not None else [None] * 3
        for key in self.key_iterator(d):
            x = d[key]
            d[key] = np.stack([self.n4(x[c], d[K.SPACING], paths[c]) for c in range(3)])
        return d


class SelectSlicesd(MapTransform):
    """Dict wrapper of :class:`~her2mri.data.slices.SelectSlices`: ``selected`` and ``needed`` slices.

    The slices come from the tumour mask (only the area per slice matters), else from the bbox z-range.
    ``needed`` adds the neighbours of ``adjacent`` views; ``volume`` views take ``volume_depth`` slices
    around the tumour's z-centre instead.

    Raises:
        DataError: an empty mask and no bbox z-range, or no tumour location at all.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = K.MASK,
        method: str = "central",
        n_slices: int = 4,
        trim: float = 0.15,
        views: str = "single",
        volume_depth: int = 16,
    ) -> None:
        super().__init__(keys)
        self.selector = SelectSlices(method, n_slices, trim)
        self.views = check_choice("views", views, VIEWS)
        self.volume_depth = int(volume_depth)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Select the slices."""
        d = dict(data)
        name, case_id = _name(d), str(d.get(K.CASE) or "")
        mask, z_range, n_z = d.get(K.MASK), d.get(K.Z_RANGE), d[K.N_Z]
        if d[K.HAS_TUMOUR]:
            # the selection only depends on the tumour area per slice: give it the in-plane tumour box (all
            # z), a small C-contiguous copy, instead of the full mask (a Fortran-ordered NIfTI mask costs a
            # transposing copy of the whole volume there)
            r0, r1, c0, c1 = d[K.TUMOUR_BOX]
            sel = self.selector(np.ascontiguousarray(mask[:, r0 : r1 + 1, c0 : c1 + 1]), case_id)
        elif z_range is not None:
            sel = self.selector.from_range(z_range[0], z_range[1], n_z, case_id)
        elif mask is not None:
            raise DataError(f"{name}: tumour mask is empty and no bbox z-range was given")
        elif d.get(K.BOX2D) is not None:
            raise DataError(
                f"{name}: no tumour mask and bbox {tuple(d[K.BBOX])} has no z-range (z0, z1, row0, ...)"
            )
        else:
            raise DataError(
                f"{name}: no tumour mask and no bbox (z0, z1, row0, row1, col0, col1): "
                "cannot locate the tumour"
            )
        if self.views == "volume":
            sel = volume_slices(mask if d[K.HAS_TUMOUR] else None, z_range, n_z, self.volume_depth)
            needed = np.unique(sel)
        elif self.views == "adjacent":
            needed = np.unique(views_index(sel, n_z))
        else:
            needed = sel
        d[K.SELECTED], d[K.NEEDED] = sel, needed
        return d


class NormalizeDCEd(MapTransform):
    """Dict wrapper of :class:`~her2mri.data.normalize.NormalizeDCE`: ``image`` -> its ``needed`` slices.

    Volume statistics are computed once on the whole phase volume; only the ``needed`` slices are mapped.
    Kept over MONAI's ``ScaleIntensityRangePercentilesd`` because the masked percentiles are measured faster
    and exact (uint16 histogram or sample-bracketed selection instead of ``np.percentile`` on a float copy,
    docs/performance.md) and MONAI's transform has no statistics mask.

    Args:
        keys: the (3, Z, Y, X) key.
        cohort_stats: ``((lo, hi),) * 3`` for ``stats_scope='cohort'``.
        **kwargs: ``normalization``, ``stats_scope``, ``stats_mask`` (``none``, ``foreground`` or
            ``tumour_bbox``), ``lower_percentile``, ``upper_percentile`` of :class:`PreprocessConfig`.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = K.IMAGE,
        normalization: str = "clip_channel_q98",
        stats_scope: str = "volume",
        stats_mask: str = "none",
        lower_percentile: float = 0.0,
        upper_percentile: float | None = None,
        cohort_stats: Sequence[Sequence[float]] | None = None,
    ) -> None:
        super().__init__(keys)
        self.stats_mask, self.stats_scope = stats_mask, stats_scope
        inner = {"none": "none", "foreground": "foreground", "tumour_bbox": "supplied"}[stats_mask]
        self.norm = NormalizeDCE(
            normalization, stats_scope, inner, lower_percentile, upper_percentile=upper_percentile
        )
        if stats_scope == "cohort":
            if cohort_stats is None:
                raise ValueError(
                    "stats_scope='cohort' but cohort_stats=None: the training-split statistics must be "
                    "computed first (DCEDataModule does it; her2mri-eval reads them from the checkpoint)."
                )
            self.lo = np.array([[row[0]] for row in cohort_stats], dtype=np.float64)
            self.hi = np.array([[row[1]] for row in cohort_stats], dtype=np.float64)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Normalise the needed slices."""
        d = dict(data)
        case_id, needed = str(d.get(K.CASE) or ""), d[K.NEEDED]
        for key in self.key_iterator(d):
            phases = d[key]
            if self.stats_scope == "cohort":
                d[key] = self.norm.apply(phases, self.lo, self.hi, slices=needed, case_id=case_id)
                continue
            supplied = None
            if self.stats_mask == "tumour_bbox":
                mask = d.get(K.MASK) if d[K.HAS_TUMOUR] else None
                supplied = tumour_box_mask(mask, d[K.Z_RANGE], d[K.BOX2D], phases.shape[1:], _name(d))
            d[key] = self.norm(phases, mask=supplied, slices=needed, case_id=case_id)
        return d


class MakeChannelsd(MapTransform):
    """Dict wrapper of :func:`~her2mri.data.channels.make_channels` (phases, subtraction, kinetic)."""

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = K.IMAGE,
        channels: str = "phases",
        kinetic_eps: float = 0.05,
    ) -> None:
        super().__init__(keys)
        self.channels, self.kinetic_eps = channels, float(kinetic_eps)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Build the three channels."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = make_channels(d[key], self.channels, self.kinetic_eps)
        return d


class CropAroundTumourd(MapTransform):
    """Dict wrapper of :class:`~her2mri.data.crop.CropAroundTumour`: a window per scale, from ``tumour_box``.

    ``image`` (3, N, Y, X) becomes (K, 3, N, H, W), one entry per crop scale (``scales``; 1 otherwise),
    resized bilinearly; ``mask`` becomes the uint8 (S, H, W) masks of the ``selected`` slices in the base
    window, resized with nearest neighbour (None for ``volume`` views and cases without mask). Without a
    tumour box (RGB slices without boxes) the base window is the whole image and other scales crop ``s``
    times the image side around its centre. ``crop_window`` is the base window.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = K.IMAGE,
        crop_size: float = 128.0,
        crop_mode: str = "pixels",
        image_size: int = 224,
        scales: Sequence[float] = (1.0,),
        with_masks: bool = True,
    ) -> None:
        super().__init__(keys)
        self.cropper = CropAroundTumour(crop_size, crop_mode, image_size)
        self.scales = tuple(float(s) for s in scales)
        self.with_masks = bool(with_masks)

    def window(self, shape_yx: tuple[int, int], box: Any, spacing: Any, scale: float) -> tuple[int, ...]:
        """The crop window (row0, col0, height, width) at ``scale``."""
        if box is not None:
            return self.cropper.window(shape_yx, None, box, spacing, scale)
        h, w = shape_yx
        if scale == 1.0:
            return 0, 0, h, w
        side = max(1, int(np.floor(min(h, w) * scale + 0.5)))
        return place_window(((h - 1) / 2.0, (w - 1) / 2.0), (side, side), (h, w))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Crop and resize."""
        d = dict(data)
        size = self.cropper.image_size
        box, sp = d.get(K.TUMOUR_BOX), d.get(K.SPACING)
        for key in self.key_iterator(d):
            vol = d[key]
            shape_yx = vol.shape[-2:]
            d[key] = [resize(extract(vol, self.window(shape_yx, box, sp, s)), size) for s in self.scales]
            base = self.window(shape_yx, box, sp, 1.0)
            d[K.WINDOW] = base
            mask = d.get(K.MASK)
            if mask is not None and self.with_masks:
                sel = d[K.SELECTED]
                d[K.MASK] = resize(extract((mask[sel] != 0).astype(np.uint8), base), size, "nearest")
            else:
                d[K.MASK] = None
        return d


class FuseRGBd(MapTransform):
    """Dict wrapper of :class:`~her2mri.data.fusion.FuseRGB` (float32): each (3, N, H, W) -> (N, 3, H, W)."""

    def __init__(self, keys: Sequence[Hashable] | Hashable = K.IMAGE) -> None:
        super().__init__(keys)
        self.fuse = FuseRGB("float32")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Fuse each scale."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = [self.fuse(x) for x in d[key]]
        return d


class ArrangeViewsd(MapTransform):
    """The samples of a case in the layout of ``views`` (ARCHITECTURE.md §4) and their ``slice_idx``.

    ``single`` (S, 3, H, W); ``adjacent`` (S, 3 views z-1, z, z+1, 3, H, W); ``scales`` (S, 3 scales, 3, H,
    W); ``phases`` (S, 3 views, C, H, W), view k = channel k repeated to ``phase_channels``; ``volume``
    (1, 3, D, H, W) with the centre slice as ``slice_idx``.
    """

    def __init__(
        self, keys: Sequence[Hashable] | Hashable = K.IMAGE, views: str = "single", phase_channels: int = 3
    ) -> None:
        super().__init__(keys)
        self.views = check_choice("views", views, VIEWS)
        self.phase_channels = int(phase_channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Arrange the views."""
        d = dict(data)
        sel, needed, n_z = d[K.SELECTED], d[K.NEEDED], d[K.N_Z]
        pos = {int(z): i for i, z in enumerate(needed)}
        rows = np.array([pos[int(z)] for z in sel])
        numbers = d.get(K.SLICE_NUMBERS)
        for key in self.key_iterator(d):
            fused = d[key]
            if self.views in ("single", "phases"):
                images = fused[0][rows]
                if self.views == "phases":
                    views = images[:, :, None]  # (S, 3, 1, H, W)
                    images = (
                        np.repeat(views, 3, axis=2)
                        if self.phase_channels == 3
                        else np.ascontiguousarray(views)
                    )
            elif self.views == "adjacent":
                images = fused[0][np.vectorize(pos.__getitem__)(views_index(sel, n_z))]
            elif self.views == "volume":
                images = np.ascontiguousarray(np.moveaxis(fused[0][rows], 0, 1)[None])  # (1, 3, D, H, W)
                sel = sel[len(sel) // 2 : len(sel) // 2 + 1]
                d[K.MASK] = None
            else:
                images = np.stack([f[rows] for f in fused], axis=1)
            d[key] = images
        out = sel if numbers is None else np.asarray(numbers)[sel]
        d[K.SLICE_IDX] = np.asarray(out).astype(np.int32)
        return d


class CastImaged(MapTransform):
    """Cache type of the images: ``uint8`` (:func:`~her2mri.data.fusion.quantize_uint8`) or ``float16``."""

    def __init__(self, keys: Sequence[Hashable] | Hashable = K.IMAGE, dtype: str = "uint8") -> None:
        super().__init__(keys)
        self.dtype = check_choice("dtype", dtype, CACHE_DTYPES)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Cast the images."""
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            d[key] = quantize_uint8(x) if self.dtype == "uint8" else np.clip(x, 0.0, 1.0).astype(np.float16)
        return d


def preprocess_transforms(
    cfg: PreprocessConfig, source: str = "volume", load: bool = True, n4_cache_dir: str | Path | None = None
) -> list[MapTransform]:
    """The transforms of the preprocessing of one case, in order (see the module docstring).

    Args:
        cfg: the preprocessing configuration.
        source: ``volume`` (three phase volumes and an optional mask) or ``rgb`` (pre-fused RGB slices).
        load: start with the loader reading ``d["record"]``; False starts from arrays already in the dict.
        n4_cache_dir: N4 disk cache folder (``cfg.n4``); None computes without cache.

    Raises:
        ValueError: unknown ``source``; ``views='volume'`` for RGB slices; ``stats_scope='cohort'`` without
            ``cohort_stats``.
    """
    check_choice("source", source, ("volume", "rgb"))
    scales = cfg.view_scales if cfg.views == "scales" else (1.0,)
    crop = CropAroundTumourd(
        crop_size=cfg.crop_size,
        crop_mode=cfg.crop_mode,
        image_size=cfg.image_size,
        scales=scales,
        with_masks=cfg.views != "volume",
    )
    tail = [
        MakeChannelsd(channels=cfg.channels, kinetic_eps=cfg.kinetic_eps),
        crop,
        FuseRGBd(),
        ArrangeViewsd(views=cfg.views, phase_channels=cfg.phase_channels),
        CastImaged(dtype=cfg.cache_dtype),
    ]
    if source == "rgb":
        if cfg.views == "volume":
            raise ValueError("views='volume' needs 3-D phase volumes; pre-fused RGB slices have none.")
        return [*([LoadRGBSlicesd()] if load else []), RGBSlicesToStackd(), *tail]
    head: list[MapTransform] = [LoadVolumesd()] if load else []
    head.append(LocateTumourd())
    if cfg.n4:
        head.append(N4BiasCorrectiond(cache_dir=n4_cache_dir))
    head.append(
        SelectSlicesd(
            method=cfg.slice_selection,
            n_slices=cfg.n_slices,
            trim=cfg.trim,
            views=cfg.views,
            volume_depth=cfg.volume_depth,
        )
    )
    head.append(
        NormalizeDCEd(
            normalization=cfg.normalization,
            stats_scope=cfg.stats_scope,
            stats_mask=cfg.stats_mask,
            lower_percentile=cfg.lower_percentile,
            upper_percentile=cfg.upper_percentile,
            cohort_stats=cfg.cohort_stats,
        )
    )
    return [*head, *tail]
