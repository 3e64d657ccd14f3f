"""Slice selection (synthetic and the three real I-SPY2 masks) and the tumour crop."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from her2mri.data.crop import CropAroundTumour, crop_side_px, extract, resize, tumour_bbox
from her2mri.data.errors import DataError
from her2mri.data.slices import SelectSlices

ISPY2 = "breastdcedl_ispy2/ISPY2"


def _mask(shape=(20, 32, 32)):
    m = np.zeros(shape, np.uint8)
    areas = {5: 4, 6: 9, 7: 30, 8: 16, 9: 25, 10: 1, 12: 2}  # a gap at z 11, like scattered real masks
    for z, a in areas.items():
        m[z].flat[:a] = 1
    return m, areas


def test_methods_on_synthetic_mask():
    m, areas = _mask()
    com = sum(z * a for z, a in areas.items()) / sum(areas.values())
    central = SelectSlices("central", 4)(m)
    assert len(central) == 4 and np.all(np.diff(central) == 1)
    assert abs(central.mean() - com) <= 0.5 + 1e-9
    largest = SelectSlices("largest", 3)(m)
    assert largest.tolist() == sorted(sorted(areas, key=lambda z: -areas[z])[:3])
    assert SelectSlices("all")(m).tolist() == sorted(areas)
    spread = SelectSlices("spread", 3, trim=0.0)(m)
    assert spread.tolist() == [5, 9, 12]  # ends of the z-range and its middle (8.5 rounded half up)


def test_central_clamped_at_volume_end_and_k_larger_than_tumour():
    m = np.zeros((6, 4, 4), np.uint8)
    m[5, 1, 1] = 1
    assert SelectSlices("central", 4)(m).tolist() == [2, 3, 4, 5]
    assert SelectSlices("largest", 4)(m).tolist() == [5]
    assert SelectSlices("central", 10)(m).tolist() == list(range(6))


def test_empty_mask_and_bad_args():
    with pytest.raises(DataError, match="p1.*empty"):
        SelectSlices()(np.zeros((3, 4, 4)), case_id="p1")
    with pytest.raises(ValueError, match="'middle'"):
        SelectSlices("middle")
    with pytest.raises(ValueError, match="n_slices=0"):
        SelectSlices("central", 0)
    with pytest.raises(ValueError, match="trim=0.6"):
        SelectSlices("spread", 4, 0.6)


def test_from_range_fallback_for_duke():
    sel = SelectSlices("central", 4)
    assert sel.from_range(10, 20, 60).tolist() == [14, 15, 16, 17]
    assert SelectSlices("all").from_range(3, 5, 10).tolist() == [3, 4, 5]
    assert SelectSlices("spread", 2, 0.0).from_range(3, 9, 10).tolist() == [3, 9]
    with pytest.raises(DataError, match="\\(8, 12\\)"):
        sel.from_range(8, 12, 10)


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def real_masks(real_data_dir):
    nib = pytest.importorskip("nibabel")
    meta = {r["pid"]: r for r in _read_csv(real_data_dir / ISPY2 / "metadata_spy2_vis1_for_modeling.csv")}
    out = {}
    for path in sorted((real_data_dir / ISPY2 / "data_sample" / "masks").glob("*_mask.nii.gz")):
        pid = path.name.split("_spy2")[0]
        out[pid] = (np.asarray(nib.load(str(path)).dataobj), meta[pid])
    assert len(out) == 3
    return out


def test_real_masks_z_range_matches_csv(real_masks):
    for pid, (mask, row) in real_masks.items():
        assert mask.shape[0] == int(row["n_z"]), pid
        sel = SelectSlices("all")(mask)
        assert (sel[0], sel[-1]) == (int(float(row["mask_start"])), int(float(row["mask_end"]))), pid
        central = SelectSlices("central", 4)(mask)
        assert central[0] >= 0 and central[-1] < mask.shape[0] and np.all(np.diff(central) == 1)
        area = mask.reshape(mask.shape[0], -1).sum(1)
        largest = SelectSlices("largest", 4)(mask)
        assert area[largest].min() >= np.delete(area, largest).max(), pid
        spread = SelectSlices("spread", 8, 0.15)(mask)
        assert len(spread) == 8 and area[spread].min() > 0 and spread[0] > sel[0] and spread[-1] < sel[-1]


def test_real_spread_matches_breastdcedl_rgb_release(real_masks, real_data_dir):
    """The released RGB slices of ACRIN-6698-102212 sit at z = slice_index + mask_start - 2 (data README)."""
    rows = [r for r in _read_csv(real_data_dir / "fedsubtype_ispy_rgb" / "subset_index.csv")]
    rows = [r for r in rows if r["pid"] == "ACRIN-6698-102212"]
    mask, meta = real_masks["ACRIN-6698-102212"]
    expected = sorted(int(r["slice_index"]) + int(float(meta["mask_start"])) - 2 for r in rows)
    assert SelectSlices("spread", len(rows), 0.15)(mask).tolist() == expected


def test_crop_window_in_bounds_and_centred():
    img = np.zeros((3, 2, 100, 120), np.float32)
    m = np.zeros((2, 100, 120), np.uint8)
    m[:, 2:6, 110:118] = 1  # tumour at the top-right edge
    crop = CropAroundTumour(40, image_size=40)
    r0, c0, h, w = crop.window((100, 120), m)
    assert (h, w) == (40, 40) and 0 <= r0 and r0 + h <= 100 and 0 <= c0 and c0 + w <= 120
    assert (r0, c0) == (0, 80)  # shifted inside
    m2 = np.zeros_like(m)
    m2[:, 40:51, 50:61] = 1
    r0, c0, _, _ = crop.window((100, 120), m2)
    # window centre within half a pixel of the bbox centre (45, 55): an even side cannot do better
    assert abs(r0 + 19.5 - 45.0) <= 0.5 and abs(c0 + 19.5 - 55.0) <= 0.5
    assert crop(img, m).shape == (3, 2, 40, 40)


def test_crop_mm_uses_spacing():
    crop = CropAroundTumour(40.0, crop_mode="mm", image_size=32)
    assert crop.window((256, 256), None, (100, 120, 100, 120), spacing=(2.0, 0.5, 0.5))[2:] == (80, 80)
    assert crop.window((256, 256), None, (100, 120, 100, 120), spacing=(2.0, 0.8, 0.4))[2:] == (50, 100)
    assert crop_side_px(40.0, "mm", (0.6055, 0.6055)) == (66, 66)
    with pytest.raises(ValueError, match="spacing"):
        crop.window((64, 64), None, (1, 2, 1, 2), spacing=None)


def test_crop_pads_only_when_image_smaller():
    img = np.ones((1, 20, 30), np.float32)
    win = CropAroundTumour(40).window((20, 30), None, (5, 8, 5, 8))
    assert win == (-10, -5, 40, 40)
    out = extract(img, win)
    assert out.shape == (1, 40, 40) and out.sum() == 600 and out[0, 10:30, 5:35].min() == 1


def test_resize_modes_and_slice_bbox_source():
    m = np.zeros((2, 64, 64), np.uint8)
    m[0, 5:15, 5:15] = 1
    m[1, 40:60, 40:60] = 1
    up = resize(m, 128, "nearest")
    assert up.dtype == np.uint8 and set(np.unique(up)) == {0, 1} and up[0].sum() == 400
    img = np.stack([m, m, m]).astype(np.float32)
    per_slice = CropAroundTumour(24, image_size=24, bbox_source="slice")(img, m)
    assert per_slice.shape == (3, 2, 24, 24)
    assert per_slice[0, 0].sum() == 100 and per_slice[0, 1].sum() == 400  # each slice's tumour fully inside
    whole = CropAroundTumour(24, image_size=24)(img, m)
    assert whole[0, 0].sum() < 100 or whole[0, 1].sum() < 400  # one shared window cannot hold both
    with pytest.raises(ValueError, match="crop_size=-1"):
        CropAroundTumour(-1)
    with pytest.raises(ValueError, match="'slices'"):
        CropAroundTumour(bbox_source="slices")


def test_tumour_bbox():
    m = np.zeros((3, 10, 10), bool)
    m[0, 2, 3] = m[2, 7, 8] = True
    assert tumour_bbox(m) == (2, 7, 3, 8)
    assert tumour_bbox(np.zeros((4, 4))) is None
