"""Image geometry: DICOM (LPS) and NIfTI (RAS) affines, one canonical orientation, masks by world coordinates.

Conventions:

* DICOM patient coordinates are LPS (x to the patient's Left, y to Posterior, z to Superior), nibabel's world
  coordinates are RAS; :data:`LPS_TO_RAS` flips the first two axes.
* **Canonical orientation** of every array her2mri reads from a header it trusts (``axis_order: affine``): a
  ``(z, y, x)`` array whose x index runs to the patient's Left, y to Posterior and z to Superior, i.e. the
  file reoriented to the axis codes ``("L", "P", "S")`` and transposed. This is the order in which a DICOM
  viewer shows an axial slice (radiological convention: the patient's right on the image's left, anterior at
  the top), and what a standard axial DICOM series gives when its slices are stacked from inferior to
  superior.
  Axes are permuted and flipped, never interpolated: an oblique acquisition keeps its grid and is put on the
  nearest canonical axes (``nibabel.orientations.io_orientation``).
* A mask is matched to its image by world coordinates (:func:`mask_on_grid`): the same grid is used as is,
  another grid is resampled (nearest neighbour, ``nibabel.processing.resample_from_to``), and a grid that does
  not overlap the image is a :class:`~her2mri.data.errors.DataError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from her2mri.data.errors import DataError

LPS_TO_RAS: np.ndarray = np.diag([-1.0, -1.0, 1.0, 1.0])
CANONICAL_AXCODES: tuple[str, str, str] = ("L", "P", "S")
GRID_ATOL_MM: float = 1e-3


def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """The RAS affine of a grid whose LPS affine is ``affine`` (and vice versa: the flip is an involution)."""
    return LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)


def dicom_affine_lps(
    position: Sequence[float],
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    slice_step: float,
) -> np.ndarray:
    """4x4 affine from voxel indices ``(column, row, slice)`` to DICOM patient coordinates (LPS, mm).

    Args:
        position: Image Position (Patient) of the first slice (its first transmitted pixel).
        orientation: Image Orientation (Patient): row direction cosines, then column direction cosines.
        pixel_spacing: Pixel Spacing: (distance between rows, distance between columns) in mm.
        slice_step: signed distance in mm between consecutive slices along the normal row x column.

    Returns:
        float64 (4, 4) affine; column index moves along the row direction, row index along the column one.
    """
    iop = np.asarray(orientation, dtype=np.float64)
    row_dir, col_dir = iop[:3], iop[3:6]
    normal = np.cross(row_dir, col_dir)
    aff = np.eye(4)
    aff[:3, 0] = row_dir * float(pixel_spacing[1])
    aff[:3, 1] = col_dir * float(pixel_spacing[0])
    aff[:3, 2] = normal * float(slice_step)
    aff[:3, 3] = np.asarray(position, dtype=np.float64)
    return aff


def voxel_sizes(affine: np.ndarray) -> tuple[float, float, float]:
    """Lengths of the three index axes of ``affine`` in mm, in index order (i, j, k)."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    return tuple(float(v) for v in np.sqrt((a**2).sum(axis=0)))  # type: ignore[return-value]


def to_canonical(arr_ijk: np.ndarray, affine_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorient an (i, j, k) array to the canonical orientation and return it as (z, y, x).

    Args:
        arr_ijk: 3-D array in the file's index order (as nibabel returns it).
        affine_ras: its voxel-to-RAS affine.

    Returns:
        ``(arr_zyx, affine_xyz)``: the canonical (z, y, x) view (no copy) and the RAS affine of the reoriented
        (x, y, z) index order, i.e. of ``arr_zyx.transpose(2, 1, 0)``.
    """
    from nibabel.orientations import (
        apply_orientation,
        axcodes2ornt,
        inv_ornt_aff,
        io_orientation,
        ornt_transform,
    )

    affine_ras = np.asarray(affine_ras, dtype=np.float64)
    transform = ornt_transform(io_orientation(affine_ras), axcodes2ornt(CANONICAL_AXCODES))
    out = apply_orientation(arr_ijk, transform)
    new_affine = affine_ras @ inv_ornt_aff(transform, arr_ijk.shape)
    return np.transpose(out, (2, 1, 0)), new_affine


def canonical_spacing(affine_xyz: np.ndarray) -> tuple[float, float, float]:
    """(z, y, x) spacing in mm of a canonical grid whose (x, y, z) affine is ``affine_xyz``."""
    sx, sy, sz = voxel_sizes(affine_xyz)
    return (sz, sy, sx)


def same_grid(
    shape_a: Sequence[int], affine_a: np.ndarray, shape_b: Sequence[int], affine_b: np.ndarray
) -> bool:
    """True when two grids have the same shape and affines equal within :data:`GRID_ATOL_MM`."""
    return tuple(shape_a) == tuple(shape_b) and bool(
        np.allclose(np.asarray(affine_a), np.asarray(affine_b), atol=GRID_ATOL_MM, rtol=0.0)
    )


def world_extent(shape: Sequence[int], affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) world coordinates of the voxel boxes of a grid (voxel centres +- half a voxel)."""
    corners = np.array(
        [
            [i, j, k]
            for i in (-0.5, shape[0] - 0.5)
            for j in (-0.5, shape[1] - 0.5)
            for k in (-0.5, shape[2] - 0.5)
        ]
    )
    world = corners @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    return world.min(axis=0), world.max(axis=0)


def mask_on_grid(
    mask_ijk: np.ndarray,
    mask_affine: np.ndarray,
    ref_shape: Sequence[int],
    ref_affine: np.ndarray,
    *,
    path: str | Path = "mask",
    ref_name: str = "image",
) -> np.ndarray:
    """A mask on the reference image grid, matched by world coordinates.

    Args:
        mask_ijk: the mask array in its file's index order (any values; > 0 is tumour).
        mask_affine: its voxel-to-world affine (RAS).
        ref_shape: shape of the image grid, in the image file's index order.
        ref_affine: the image's voxel-to-world affine (RAS).
        path: the mask file, named in errors.
        ref_name: the image, named in errors.

    Returns:
        uint8 {0, 1} array of ``ref_shape``: the mask itself when the grids are the same, else resampled
        with nearest-neighbour interpolation (``nibabel.processing.resample_from_to``).

    Raises:
        DataError: the grids do not overlap in space, or no tumour voxel falls inside the image.
    """
    binary = (np.asarray(mask_ijk) > 0).astype(np.uint8)
    if same_grid(binary.shape, mask_affine, ref_shape, ref_affine):
        return binary
    lo_m, hi_m = world_extent(binary.shape, mask_affine)
    lo_r, hi_r = world_extent(ref_shape, ref_affine)
    if np.any(hi_m <= lo_r) or np.any(hi_r <= lo_m):
        raise DataError(
            f"{path}: mask grid does not overlap the grid of {ref_name} in world coordinates (mask spans "
            f"{np.round(lo_m, 1).tolist()}..{np.round(hi_m, 1).tolist()} mm, image "
            f"{np.round(lo_r, 1).tolist()}..{np.round(hi_r, 1).tolist()} mm, RAS)"
        )
    import nibabel as nib
    from nibabel.processing import resample_from_to

    src = nib.Nifti1Image(binary, np.asarray(mask_affine, dtype=np.float64))
    out = resample_from_to(src, (tuple(int(s) for s in ref_shape), np.asarray(ref_affine)), order=0)
    res = (np.asarray(out.dataobj) > 0).astype(np.uint8)
    if binary.any() and not res.any():
        raise DataError(f"{path}: no tumour voxel of the mask lies inside the grid of {ref_name}")
    return res


def box_mm_to_voxels(
    lo_mm: Sequence[float],
    hi_mm: Sequence[float],
    affine_xyz: np.ndarray,
    shape_zyx: Sequence[int],
    *,
    frame: str = "lps",
    name: str = "bbox",
) -> tuple[int, int, int, int, int, int]:
    """A world-coordinate box as inclusive voxel indices (z0, z1, y0, y1, x0, x1) of a canonical array.

    Args:
        lo_mm: one corner (x, y, z) in mm.
        hi_mm: the opposite corner (x, y, z) in mm.
        affine_xyz: RAS affine of the canonical (x, y, z) index order (see :func:`to_canonical`).
        shape_zyx: shape of the canonical array.
        frame: ``"lps"`` (DICOM patient coordinates, what a DICOM viewer shows) or ``"ras"`` (NIfTI/Slicer).
        name: named in errors.

    Raises:
        ValueError: unknown ``frame``.
        DataError: the box does not overlap the image.
    """
    if frame not in ("lps", "ras"):
        raise ValueError(f"frame={frame!r} must be 'lps' or 'ras'")
    lo, hi = np.asarray(lo_mm, dtype=np.float64), np.asarray(hi_mm, dtype=np.float64)
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    if frame == "lps":
        corners = corners * np.array([-1.0, -1.0, 1.0])
    inv = np.linalg.inv(np.asarray(affine_xyz, dtype=np.float64))
    ijk = corners @ inv[:3, :3].T + inv[:3, 3]
    first = np.floor(ijk.min(axis=0) + 0.5).astype(int)
    last = np.floor(ijk.max(axis=0) + 0.5).astype(int)
    size_xyz = np.array([shape_zyx[2], shape_zyx[1], shape_zyx[0]])
    if np.any(last < 0) or np.any(first > size_xyz - 1):
        raise DataError(f"{name}: box {lo.tolist()}..{hi.tolist()} mm ({frame.upper()}) is outside the image")
    first = np.clip(first, 0, size_xyz - 1)
    last = np.clip(last, 0, size_xyz - 1)
    return (int(first[2]), int(last[2]), int(first[1]), int(last[1]), int(first[0]), int(last[0]))
