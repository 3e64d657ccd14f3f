"""Peritumoral rings: exact width in mm on anisotropic grids, clipping, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from her2mri.radiomics.rings import peritumoral_ring, ring_name, ring_regions


def _brute_force_distance(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance (mm) from every voxel centre to the nearest tumour voxel centre, by exhaustive search."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in mask.shape], indexing="ij"), -1).reshape(
        -1, mask.ndim
    )
    pts = grid * np.asarray(spacing)
    tum = np.argwhere(mask) * np.asarray(spacing)
    d = np.sqrt(((pts[:, None, :] - tum[None, :, :]) ** 2).sum(-1)).min(1)
    return d.reshape(mask.shape)


@pytest.mark.parametrize("width", [2.0, 3.0, 5.0])
def test_ring_width_exact_on_2mm_slices(width: float) -> None:
    spacing = (2.0, 0.7, 0.7)  # anisotropic: 2 mm slices
    mask = np.zeros((9, 30, 30), bool)
    mask[3:6, 12:18, 11:16] = True
    mask[4, 10:12, 13] = True  # irregular shape
    ring = peritumoral_ring(mask, spacing, width)
    d = _brute_force_distance(mask, spacing)
    assert not (ring & mask).any()
    # every ring voxel lies in (0, width] mm from the tumour ...
    assert ring.any() and (d[ring] > 0).all() and (d[ring] <= width + 1e-9).all()
    # ... and every voxel within width mm is in the ring
    np.testing.assert_array_equal(ring, (d > 0) & (d <= width + 1e-9))
    # the ring reaches across slices only as far as the 2 mm spacing allows
    slices = np.flatnonzero(ring.any(axis=(1, 2)))
    assert slices.min() == 3 - int(width // 2.0) and slices.max() == 5 + int(width // 2.0)


def test_voxel_radius_dilation_would_differ() -> None:
    """A 3-voxel dilation is 6 mm across slices but 2.1 mm in-plane: the mm ring is not that."""
    from scipy import ndimage

    spacing = (2.0, 0.7, 0.7)
    mask = np.zeros((11, 31, 31), bool)
    mask[5, 15, 15] = True
    ring = peritumoral_ring(mask, spacing, 3.0)
    naive = ndimage.binary_dilation(mask, iterations=3) & ~mask
    assert ring.sum() != naive.sum()
    assert ring[5, 15, 15 + 4] and not ring[5, 15, 15 + 5]  # 2.8 mm in, 3.5 mm out
    assert ring[6, 15, 15] and not ring[7, 15, 15]  # 2 mm in, 4 mm out


def test_ring_clipped_to_breast_and_2d() -> None:
    mask = np.zeros((40, 40), bool)
    mask[18:22, 18:22] = True
    within = np.zeros_like(mask)
    within[:, :20] = True
    ring = peritumoral_ring(mask, (0.5, 0.5), 3.0, within=within)
    assert ring.any() and not ring[:, 20:].any()
    regs = ring_regions(mask, (0.5, 0.5), [3, 5.5])
    assert set(regs) == {"tumour", "ring3mm", "ring5.5mm"}
    assert (regs["ring3mm"] <= regs["ring5.5mm"]).all()
    assert ring_name(8) == "ring8mm"


def test_ring_argument_errors() -> None:
    mask = np.zeros((5, 5, 5), bool)
    mask[2, 2, 2] = True
    with pytest.raises(ValueError, match="width_mm"):
        peritumoral_ring(mask, (1, 1, 1), 0)
    with pytest.raises(ValueError, match="spacing"):
        peritumoral_ring(mask, (1, 1), 2)
    with pytest.raises(ValueError, match="spacing"):
        peritumoral_ring(mask, (1, -1, 1), 2)
    with pytest.raises(ValueError, match="empty"):
        peritumoral_ring(np.zeros((5, 5, 5), bool), (1, 1, 1), 2)
