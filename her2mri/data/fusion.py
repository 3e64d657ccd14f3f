"""RGB fusion of three normalised DCE phases: R = pre, G = early, B = late."""

from __future__ import annotations

import numpy as np

from her2mri.data.errors import DataError
from her2mri.options import check_choice

FUSION_DTYPES: tuple[str, ...] = ("float32", "float16", "uint8")
CHANNEL_DIMS: tuple[str, ...] = ("first", "last")


def quantize_uint8(x: np.ndarray) -> np.ndarray:
    """Exact 8-bit quantisation of values in [0, 1]: ``clip(round(x * 255), 0, 255)`` as uint8.

    Always an explicit uint8 array (never ``PIL.Image.fromarray`` on floats, which reinterprets bytes).
    """
    # float64 product of a float32 value and 255 is exact, so rounding half-way cases is exact too
    y = np.multiply(x, 255.0, dtype=np.float64)
    np.round(y, out=y)
    np.clip(y, 0.0, 255.0, out=y)
    return y.astype(np.uint8)


class FuseRGB:
    """Fuse a normalised (3, ...) stack (phases pre, early, late) into RGB images.

    The phase axis becomes the colour axis in the order R = pre, G = early, B = late (the paper's order).
    With ``channel_dim='first'`` the colour axis sits just before the last two (image) axes: (3, H, W) stays
    (3, H, W) and (3, S, H, W) becomes (S, 3, H, W). With ``'last'`` it is the last axis: (..., H, W, 3),
    the layout of PNG files.

    Args:
        dtype: ``float32`` or ``float16`` (values clipped to [0, 1]) or ``uint8`` (exact quantisation,
            ``round(x * 255)``).
        channel_dim: ``first`` or ``last``.

    Example:
        >>> FuseRGB("uint8")(np.ones((3, 2, 2), np.float32)).shape
        (3, 2, 2)
    """

    def __init__(self, dtype: str = "float32", channel_dim: str = "first") -> None:
        self.dtype = check_choice("dtype", dtype, FUSION_DTYPES)
        self.channel_dim = check_choice("channel_dim", channel_dim, CHANNEL_DIMS)

    def __call__(self, stack: np.ndarray) -> np.ndarray:
        """Fuse ``stack`` of shape (3, ..., H, W) with values in [0, 1]."""
        stack = np.asarray(stack)
        if stack.ndim < 3 or stack.shape[0] != 3:
            raise DataError(
                f"expected a normalised (3, ..., H, W) stack of pre/early/late, got {stack.shape}"
            )
        if self.channel_dim == "first":
            rgb = np.moveaxis(stack, 0, -3)
        else:
            rgb = np.moveaxis(stack, 0, -1)
        if self.dtype == "uint8":
            return np.ascontiguousarray(quantize_uint8(rgb))
        out = np.clip(rgb, 0.0, 1.0).astype(self.dtype, copy=False)
        return np.ascontiguousarray(np.nan_to_num(out, nan=0.0))
