"""Canonical orientation from affines, masks by world coordinates, bbox_* manifest columns."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from her2mri.data.errors import DataError
from her2mri.data.geometry import box_mm_to_voxels, dicom_affine_lps, lps_to_ras, mask_on_grid, to_canonical
from her2mri.data.io import load_case_arrays, read_header_spacing, read_volume
from her2mri.data.manifest import read_manifest
from her2mri.data.prepare import preprocess_record
from her2mri.data.preprocess_config import PreprocessConfig


def _canonical_truth(shape=(4, 5, 6), seed=0) -> np.ndarray:
    """A (z, y, x) array in the canonical orientation: x -> L, y -> P, z -> S (spacing 2, 1, 0.5 mm)."""
    return np.random.default_rng(seed).integers(0, 1000, shape).astype(np.int16)


SP = (2.0, 1.0, 0.5)  # z, y, x


def _save_as(truth: np.ndarray, path, flips=(False, False, False), perm=(0, 1, 2)) -> np.ndarray:
    """Store ``truth`` with its axes permuted/flipped and the affine that keeps its world coordinates.

    Canonical voxel (x, y, z) indices sit at LPS (x * 0.5, y * 1.0, z * 2.0). Returns the RAS affine written.
    """
    xyz = truth.transpose(2, 1, 0)  # (x, y, z) index order
    lps = np.diag([SP[2], SP[1], SP[0], 1.0])
    for ax, flip in enumerate(flips):
        if flip:
            xyz = np.flip(xyz, axis=ax)
            col = lps[:3, ax].copy()
            lps[:3, 3] += col * (truth.shape[2 - ax] - 1)
            lps[:3, ax] = -col
    arr = np.transpose(xyz, perm)
    lps = lps[:, [*perm, 3]]
    ras = lps_to_ras(lps)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr), ras), str(path))
    return ras


@pytest.mark.parametrize(
    "flips,perm",
    [((False, False, False), (0, 1, 2)), ((True, False, True), (0, 1, 2)), ((False, True, False), (2, 0, 1))],
)
def test_canonical_orientation_from_any_storage(tmp_path, flips, perm):
    truth = _canonical_truth()
    _save_as(truth, tmp_path / "v.nii.gz", flips, perm)
    np.testing.assert_array_equal(read_volume(tmp_path / "v.nii.gz", axis_order="affine", dtype=None), truth)
    assert read_header_spacing(tmp_path / "v.nii.gz", axis_order="affine") == pytest.approx(SP)


def test_dicom_affine_and_to_canonical():
    aff = dicom_affine_lps((10.0, 20.0, 30.0), (-1, 0, 0, 0, 1, 0), (0.7, 0.8), 2.5)
    # column index runs along -x (patient right), row index along +y, slices along cross(row, col) = -z
    np.testing.assert_allclose(aff @ [1, 1, 1, 1], [10 - 0.8, 20 + 0.7, 30 - 2.5, 1])
    arr = np.arange(2 * 3 * 4).reshape(4, 3, 2)  # (col, row, slice)
    zyx, canon = to_canonical(arr, lps_to_ras(aff))
    assert zyx.shape == (2, 3, 4)
    np.testing.assert_array_equal(zyx, arr[::-1, :, ::-1].transpose(2, 1, 0))
    assert np.all(np.diag(canon)[:3] * [-1, -1, 1] > 0)  # L, P, S


def test_mask_on_grid_resamples_and_rejects_no_overlap():
    ref = np.diag([1.0, 1.0, 1.0, 1.0])
    fine = np.diag([0.5, 0.5, 1.0, 1.0])
    m = np.zeros((8, 8, 3), np.uint8)
    m[4:6, 2:4, 1] = 1  # world x 2.0-2.5, y 1.0-1.5 -> ref voxel (2, 1, 1)
    out = mask_on_grid(m, fine, (4, 4, 3), ref)
    assert list(zip(*np.nonzero(out), strict=True)) == [(2, 1, 1)]
    same = mask_on_grid(m * 7, fine, m.shape, fine)
    np.testing.assert_array_equal(same, m)
    far = fine.copy()
    far[:3, 3] = 100.0
    with pytest.raises(DataError, match="m.nii: mask grid does not overlap"):
        mask_on_grid(m, far, (4, 4, 3), ref, path="m.nii")


def test_box_mm_to_voxels():
    canon = lps_to_ras(np.diag([0.5, 1.0, 2.0, 1.0]))  # x 0.5 mm, y 1 mm, z 2 mm, origin 0
    assert box_mm_to_voxels((1.0, 2.0, 4.0), (2.0, 3.0, 6.0), canon, (10, 10, 10)) == (2, 3, 2, 3, 2, 4)
    assert box_mm_to_voxels((-1.0, -2.0, 4.0), (-2.0, -3.0, 6.0), canon, (10, 10, 10), frame="ras") == (
        2, 3, 2, 3, 2, 4,
    )  # fmt: skip
    with pytest.raises(DataError, match="outside the image"):
        box_mm_to_voxels((100, 100, 100), (101, 101, 101), canon, (10, 10, 10))
    with pytest.raises(ValueError, match="frame="):
        box_mm_to_voxels((0, 0, 0), (1, 1, 1), canon, (10, 10, 10), frame="xyz")


def _affine_cohort(tmp_path, mask=True):
    truth = [_canonical_truth((6, 24, 24), s) for s in range(3)]
    for k, t in enumerate(truth):
        _save_as(t, tmp_path / f"p{k}.nii.gz", (True, False, False), (1, 0, 2))
    if mask:
        m = np.zeros((6, 24, 24), np.uint8)
        m[2:4, 10:14, 8:12] = 1
        _save_as(m, tmp_path / "m.nii.gz")  # stored canonically: another voxel order than the phases
    return truth


def test_manifest_affine_mode_mask_by_world_coordinates(tmp_path):
    truth = _affine_cohort(tmp_path)
    csv = tmp_path / "m.csv"
    pd.DataFrame([{"case_id": "c1", "label": 1, "pre": "p0.nii.gz", "early": "p1.nii.gz", "late": "p2.nii.gz",
                   "mask": "m.nii.gz"}]).to_csv(csv, index=False)  # fmt: skip
    (rec,) = read_manifest(csv)  # default axis_order: affine
    phases, mask, spacing = load_case_arrays(rec)
    for k in range(3):
        np.testing.assert_array_equal(phases[k], truth[k].astype(np.float32))
    assert mask is not None and mask.sum() == 2 * 4 * 4 and mask[2:4, 10:14, 8:12].all()
    assert spacing == pytest.approx(SP)
    # a phase on another grid is an error naming the file
    img = nib.load(tmp_path / "p2.nii.gz")
    moved = img.affine.copy()
    moved[0, 3] += 3.0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), moved), str(tmp_path / "p2.nii.gz"))
    with pytest.raises(DataError, match="p2.nii.gz: phase image is on another grid"):
        load_case_arrays(rec)


def test_manifest_bbox_columns_voxel_and_mm(tmp_path):
    _affine_cohort(tmp_path, mask=False)
    base = {"label": 0, "pre": "p0.nii.gz", "early": "p1.nii.gz", "late": "p2.nii.gz"}
    rows = [
        {"case_id": "vox", **base, "bbox_z0": 2, "bbox_z1": 3, "bbox_y0": 10, "bbox_y1": 13, "bbox_x0": 8,
         "bbox_x1": 11},
        # LPS mm: x = 0.5 * col, y = 1.0 * row, z = 2.0 * slice (voxel centres), a box around the same voxels
        {"case_id": "mm", **base, "bbox_unit": "mm", "bbox_z0": 4.0, "bbox_z1": 6.0, "bbox_y0": 10.0,
         "bbox_y1": 13.0, "bbox_x0": 4.0, "bbox_x1": 5.5},
        {"case_id": "none", **base},
    ]  # fmt: skip
    csv = tmp_path / "m.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    recs = {r.pid: r for r in read_manifest(csv)}
    for pid in ("vox", "mm"):
        assert recs[pid].bbox == (10, 13, 8, 11), pid
        assert (recs[pid].extra["mask_start"], recs[pid].extra["mask_end"]) == (2, 3), pid
    assert recs["none"].bbox is None
    cfg = PreprocessConfig(crop_size=16, image_size=16, n_slices=2, normalization="minmax_volume")
    out = preprocess_record(recs["mm"], cfg)  # scored without a segmentation
    assert out["images"].shape[1:] == (3, 16, 16) and set(out["slice_idx"].tolist()) <= {2, 3}
    with pytest.raises(DataError, match="needs axis_order='affine'"):
        read_manifest(csv, axis_order="zyx")
    bad = tmp_path / "bad.csv"
    box = {"bbox_z0": 3, "bbox_z1": 2, "bbox_y0": 0, "bbox_y1": 1, "bbox_x0": 0, "bbox_x1": 1}
    pd.DataFrame([{"case_id": "b", **base, **box}]).to_csv(bad, index=False)
    with pytest.raises(DataError, match="case b: voxel bbox"):
        read_manifest(bad)


def test_nrrd_read_by_affine_matches_nifti(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    truth = _canonical_truth()
    ras = _save_as(truth, tmp_path / "v.nii.gz", (True, False, True), (2, 0, 1))
    arr_ijk = np.asarray(nib.load(tmp_path / "v.nii.gz").dataobj)
    lps = lps_to_ras(ras)
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr_ijk.transpose(2, 1, 0)))  # ITK arrays are (k, j, i)
    img.SetSpacing(spacing.tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    img.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    sitk.WriteImage(img, str(tmp_path / "v.nrrd"))
    np.testing.assert_array_equal(read_volume(tmp_path / "v.nrrd", axis_order="affine", dtype=None), truth)
    assert read_header_spacing(tmp_path / "v.nrrd", axis_order="affine") == pytest.approx(SP)
