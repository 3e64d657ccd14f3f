"""Which axial slices of a case are used: central, largest, all or spread over the tumour."""

from __future__ import annotations

import numpy as np

from her2mri.data.errors import DataError
from her2mri.data.preprocess_config import SLICE_SELECTIONS
from her2mri.options import check_choice


class SelectSlices:
    """Pick slice indices (axis 0 = z) from a 3-D tumour mask.

    Methods:
        ``central``: ``n_slices`` consecutive slices around the z centre of mass of the tumour (the authors'
        nearest code uses 4), shifted to stay inside the volume.
        ``largest``: the ``n_slices`` slices with the largest tumour area, sorted by z (ties: lower z).
        ``all``: every slice that contains tumour.
        ``spread``: ``n_slices`` slices evenly spread over the tumour z-range after trimming
        ``floor(trim * n)`` of its n slices at each end (as in the BreastDCEDL-derived RGB release:
        8 slices, 15 % trim).

    Args:
        method: one of ``central``, ``largest``, ``all``, ``spread``.
        n_slices: k, at least 1.
        trim: fraction in [0, 0.5) trimmed at each end of the z-range for ``spread``.

    Example:
        >>> m = np.zeros((10, 4, 4), bool); m[3:7, 1:3, 1:3] = True
        >>> SelectSlices("central", 2)(m).tolist()
        [4, 5]
    """

    def __init__(self, method: str = "central", n_slices: int = 4, trim: float = 0.15) -> None:
        self.method = check_choice("method", method, SLICE_SELECTIONS)
        if isinstance(n_slices, bool) or int(n_slices) != n_slices or n_slices < 1:
            raise ValueError(f"n_slices={n_slices!r} must be an integer >= 1.")
        if not 0.0 <= float(trim) < 0.5:
            raise ValueError(f"trim={trim!r} must be in [0, 0.5).")
        self.n_slices = int(n_slices)
        self.trim = float(trim)

    def __call__(self, mask: np.ndarray, case_id: str = "") -> np.ndarray:
        """Slice indices (int64, sorted, unique) from a (Z, Y, X) tumour mask.

        Raises:
            DataError: the mask is not 3-D or contains no tumour voxel.
        """
        mask = np.asarray(mask)
        if mask.ndim != 3:
            raise DataError(f"{case_id or 'mask'}: expected a (Z, Y, X) mask, got shape {mask.shape}")
        area = np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1)
        present = np.flatnonzero(area)
        if present.size == 0:
            raise DataError(f"{case_id or 'mask'}: tumour mask is empty, no slice can be selected")
        n_z = mask.shape[0]
        z0, z1 = int(present[0]), int(present[-1])
        if self.method == "central":
            com = float(np.sum(area * np.arange(n_z)) / area.sum())
            return _consecutive(com, self.n_slices, n_z)
        if self.method == "largest":
            k = min(self.n_slices, present.size)
            order = np.argsort(-area, kind="stable")[:k]
            return np.sort(order).astype(np.int64)
        if self.method == "all":
            return present.astype(np.int64)
        return _spread(z0, z1, self.n_slices, self.trim)

    def from_range(self, z0: int, z1: int, n_z: int, case_id: str = "") -> np.ndarray:
        """Slice indices from a tumour z-range only (inclusive), for cohorts without a voxel mask (Duke).

        ``central`` uses the middle of the range as centre of mass; ``largest`` cannot know areas and falls
        back to ``central``; ``all`` is the whole range; ``spread`` as for a mask.

        Raises:
            DataError: the range is empty or outside ``[0, n_z)``.
        """
        z0, z1 = int(z0), int(z1)
        if not 0 <= z0 <= z1 < n_z:
            raise DataError(f"{case_id or 'bbox'}: tumour z-range ({z0}, {z1}) is not inside [0, {n_z})")
        if self.method in ("central", "largest"):
            return _consecutive((z0 + z1) / 2.0, self.n_slices, n_z)
        if self.method == "all":
            return np.arange(z0, z1 + 1, dtype=np.int64)
        return _spread(z0, z1, self.n_slices, self.trim)


def _consecutive(centre: float, k: int, n_z: int) -> np.ndarray:
    """Return k consecutive slices centred on ``centre`` (even k: one more above), kept in range."""
    k = min(k, n_z)
    start = int(np.floor(centre - (k - 1) / 2.0 + 0.5))
    start = min(max(start, 0), n_z - k)
    return np.arange(start, start + k, dtype=np.int64)


def _spread(z0: int, z1: int, k: int, trim: float) -> np.ndarray:
    """Return k slices evenly spread over [z0, z1] after trimming ``floor(trim * n)`` slices at each end.

    n = z1 - z0 + 1 is the number of tumour slices; positions are rounded half up. This reproduces the slice
    choice of the BreastDCEDL-derived RGB release (38 tumour slices, trim 0.15, k 8 -> offsets 5 ... 32).
    """
    cut = int(np.floor(trim * (z1 - z0 + 1)))
    lo = float(z0 + cut)
    hi = float(z1 - cut)
    pos = np.linspace(lo, hi, k) if k > 1 else np.array([(lo + hi) / 2.0])
    return np.unique(np.floor(pos + 0.5).astype(np.int64))
