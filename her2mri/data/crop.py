"""Square crop centred on the tumour, kept inside the image, then resized to ``image_size``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from her2mri.data.errors import DataError
from her2mri.data.preprocess_config import CROP_MODES
from her2mri.options import check_choice

BBOX_SOURCES: tuple[str, ...] = ("volume", "slice")
RESIZE_MODES: tuple[str, ...] = ("bilinear", "nearest")
Window = tuple[int, int, int, int]  # (row0, col0, height, width); row0/col0 < 0 only when padding


def tumour_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """In-plane bounding box (row0, row1, col0, col1), inclusive, of all voxels of a (Y, X) or (Z, Y, X) mask.

    Returns None for an empty mask.
    """
    mask = np.asarray(mask)
    plane = mask.reshape(-1, *mask.shape[-2:]).any(axis=0) if mask.ndim > 2 else mask.astype(bool)
    rows = np.flatnonzero(plane.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(plane.any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def crop_side_px(
    crop_size: float, crop_mode: str, spacing_yx: Sequence[float] | None = None, scale: float = 1.0
) -> tuple[int, int]:
    """Crop height and width in pixels; ``mm`` mode divides by the (y, x) spacing in mm per pixel."""
    side = float(crop_size) * float(scale)
    if crop_mode == "pixels":
        px = max(1, int(np.floor(side + 0.5)))
        return px, px
    if spacing_yx is None or len(spacing_yx) != 2 or min(float(s) for s in spacing_yx) <= 0:
        raise ValueError(
            f"spacing={spacing_yx!r}: crop_mode='mm' needs two positive in-plane spacings (y, x)"
        )
    return tuple(max(1, int(np.floor(side / float(s) + 0.5))) for s in spacing_yx)  # type: ignore[return-value]


def place_window(centre: tuple[float, float], size: tuple[int, int], shape: tuple[int, int]) -> Window:
    """Window of ``size`` centred on ``centre`` (row, col), shifted to stay inside ``shape``.

    If the image is smaller than the window along an axis, the image is centred in the window (the caller
    zero-pads); this is the only case where the window leaves the image.
    """
    starts = []
    for c, s, n in zip(centre, size, shape, strict=True):
        if n >= s:
            start = int(np.floor(c - (s - 1) / 2.0 + 0.5))
            start = min(max(start, 0), n - s)
        else:
            start = -((s - n) // 2)
        starts.append(start)
    return starts[0], starts[1], size[0], size[1]


def extract(arr: np.ndarray, window: Window) -> np.ndarray:
    """Cut ``window`` out of the last two axes of ``arr``, zero-padding where it leaves the image."""
    r0, c0, h, w = window
    H, W = arr.shape[-2:]
    if r0 >= 0 and c0 >= 0 and r0 + h <= H and c0 + w <= W:
        return arr[..., r0 : r0 + h, c0 : c0 + w]
    out = np.zeros((*arr.shape[:-2], h, w), dtype=arr.dtype)
    sr0, sr1 = max(r0, 0), min(r0 + h, H)
    sc0, sc1 = max(c0, 0), min(c0 + w, W)
    out[..., sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = arr[..., sr0:sr1, sc0:sc1]
    return out


def resize(arr: np.ndarray, size: int, mode: str = "bilinear") -> np.ndarray:
    """Resize the last two axes of ``arr`` to (size, size) with torch.

    ``bilinear`` (images: torch, align_corners=False, antialiased only when shrinking) returns float32;
    ``nearest`` (masks: pixel-centre aligned, the same as torch ``nearest-exact``) keeps the dtype.
    """
    check_choice("mode", mode, RESIZE_MODES)
    lead = arr.shape[:-2]
    if arr.shape[-2:] == (size, size):
        return arr.astype(np.float32) if mode == "bilinear" else arr.copy()
    if mode == "nearest":
        h, w = arr.shape[-2:]
        rows = np.minimum(((np.arange(size) + 0.5) * (h / size)).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(size) + 0.5) * (w / size)).astype(np.int64), w - 1)
        return arr[..., rows[:, None], cols[None, :]]
    flat = np.ascontiguousarray(arr.reshape(1, -1, *arr.shape[-2:]), dtype=np.float32)
    shrink = size < max(arr.shape[-2:])
    t = F.interpolate(
        torch.from_numpy(flat), size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )
    return t.numpy().reshape(*lead, size, size)


class CropAroundTumour:
    """Crop a square window centred on the tumour bounding box, then resize it to ``image_size``.

    The window is centred on the centre of the tumour's in-plane bounding box, shifted to stay inside the
    image (the authors' pCR code does the same), and zero-padded only when the image is smaller than the
    window. Its side is ``crop_size`` pixels, or ``crop_size`` mm divided by the in-plane spacing
    (``crop_mode='mm'``, so the physical field of view is the same for every scanner).

    Args:
        crop_size: side in pixels or mm, > 0.
        crop_mode: ``pixels`` or ``mm``.
        image_size: output side in pixels, >= 1.
        bbox_source: ``volume`` (default: the bbox of the whole tumour, so all slices share one window) or
            ``slice`` (each slice's own tumour bbox; slices without tumour use the whole-tumour bbox).

    Example:
        >>> m = np.zeros((2, 64, 64), np.uint8); m[:, 40:50, 50:60] = 1
        >>> CropAroundTumour(32, image_size=16)(np.ones((3, 2, 64, 64), np.float32), m).shape
        (3, 2, 16, 16)
    """

    def __init__(
        self,
        crop_size: float = 128.0,
        crop_mode: str = "pixels",
        image_size: int = 224,
        bbox_source: str = "volume",
    ) -> None:
        if isinstance(crop_size, bool) or not float(crop_size) > 0:
            raise ValueError(f"crop_size={crop_size!r} must be > 0.")
        if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1:
            raise ValueError(f"image_size={image_size!r} must be an integer >= 1.")
        self.crop_size = float(crop_size)
        self.crop_mode = check_choice("crop_mode", crop_mode, CROP_MODES)
        self.image_size = int(image_size)
        self.bbox_source = check_choice("bbox_source", bbox_source, BBOX_SOURCES)

    def window(
        self,
        shape_yx: tuple[int, int],
        mask: np.ndarray | None = None,
        bbox: Sequence[int] | None = None,
        spacing: Sequence[float] | None = None,
        scale: float = 1.0,
    ) -> Window:
        """Window for an image of in-plane ``shape_yx`` from a tumour ``mask`` or ``bbox`` (else the centre).

        Args:
            shape_yx: (rows, cols) of the image.
            mask: (Y, X) or (Z, Y, X) tumour mask; its in-plane bbox centres the window.
            bbox: (row0, row1, col0, col1) inclusive, used when ``mask`` is None or empty.
            spacing: (z, y, x) or (y, x) in mm, needed for ``crop_mode='mm'``.
            scale: factor on the crop side (multi-scale views).
        """
        box = tumour_bbox(mask) if mask is not None else None
        if box is None and bbox is not None:
            box = tuple(int(b) for b in bbox)  # type: ignore[assignment]
        if box is None:
            centre = ((shape_yx[0] - 1) / 2.0, (shape_yx[1] - 1) / 2.0)
        else:
            centre = ((box[0] + box[1]) / 2.0, (box[2] + box[3]) / 2.0)
        sp = None if spacing is None else tuple(spacing)[-2:]
        size = crop_side_px(self.crop_size, self.crop_mode, sp, scale)
        return place_window(centre, size, (int(shape_yx[0]), int(shape_yx[1])))

    def __call__(
        self,
        img: np.ndarray,
        mask: np.ndarray | None = None,
        spacing: Sequence[float] | None = None,
        bbox: Sequence[int] | None = None,
        mode: str = "bilinear",
        scale: float = 1.0,
    ) -> np.ndarray:
        """Crop and resize the last two axes of ``img``.

        Args:
            img: (..., Y, X) array (images: float; masks with ``mode='nearest'``).
            mask: tumour mask giving the window: (Y, X) or (Z, Y, X). With ``bbox_source='slice'``, ``img``
                of shape (C, Z, Y, X) and ``mask`` (Z, Y, X), each slice gets its own window.
            spacing: (z, y, x) or (y, x) in mm (``crop_mode='mm'``).
            bbox: (row0, row1, col0, col1) fallback when there is no mask.
            mode: ``bilinear`` (images) or ``nearest`` (masks).
            scale: factor on the crop side.
        """
        img = np.asarray(img)
        if img.ndim < 2:
            raise DataError(f"expected an image with at least 2 axes, got shape {img.shape}")
        check_choice("mode", mode, RESIZE_MODES)
        shape = img.shape[-2:]
        if mask is not None and np.asarray(mask).shape[-2:] != shape:
            raise DataError(
                f"tumour mask has in-plane shape {np.asarray(mask).shape[-2:]} but image has {shape}"
            )
        whole = self.window(shape, mask, bbox, spacing, scale)
        if self.bbox_source == "volume" or mask is None or np.asarray(mask).ndim != 3 or img.ndim < 3:
            return resize(extract(img, whole), self.image_size, mode)
        mask = np.asarray(mask)
        if img.shape[-3] != mask.shape[0]:
            raise DataError(
                f"bbox_source='slice' needs one mask slice per image slice: {mask.shape} vs {shape}"
            )
        outs = []
        for z in range(mask.shape[0]):
            win = self.window(shape, mask[z], None, spacing, scale) if mask[z].any() else whole
            outs.append(resize(extract(img[..., z, :, :], win), self.image_size, mode))
        return np.stack(outs, axis=-3)
