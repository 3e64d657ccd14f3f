"""preprocess_case / preprocess_rgb_slices and N4 with its disk cache (Compose: test_monai_path)."""

from __future__ import annotations

import numpy as np
import pytest

from her2mri.data.crop import extract, resize
from her2mri.data.errors import DataError
from her2mri.data.fusion import FuseRGB, quantize_uint8
from her2mri.data.n4 import N4BiasCorrection
from her2mri.data.normalize import NormalizeDCE
from her2mri.data.pipeline import preprocess_case, preprocess_rgb_slices
from her2mri.data.preprocess_config import PreprocessConfig

SPACING = (2.0, 0.7, 0.7)


def _case(seed=0, shape=(12, 48, 48)):
    rng = np.random.default_rng(seed)
    pre = rng.integers(50, 400, shape)
    phases = np.stack([pre, pre * 2 + 30, pre * 3 // 2]).astype(np.uint16)
    mask = np.zeros(shape, np.uint8)
    mask[4:9, 20:30, 8:16] = 1
    phases[:, mask.astype(bool)] += np.array([0, 900, 500], np.uint16)[:, None]  # enhancing tumour
    return phases, mask


def _cfg(**kw):
    base = {"crop_size": 24.0, "image_size": 32}
    return PreprocessConfig(**{**base, **kw})


@pytest.mark.parametrize(
    ("views", "shape"),
    [("single", (4, 3, 32, 32)), ("adjacent", (4, 3, 3, 32, 32)), ("scales", (4, 3, 3, 32, 32))],
)
def test_shapes_and_dtypes(views, shape):
    phases, mask = _case()
    out = preprocess_case(phases, mask, SPACING, _cfg(views=views), case_id="c1")
    assert out.images.shape == shape and out.images.dtype == np.uint8
    assert out.masks.shape == (4, 32, 32) and out.masks.dtype == np.uint8
    assert out.slice_idx.dtype == np.int32 and out.slice_idx.tolist() == [5, 6, 7, 8]
    f16 = preprocess_case(phases, mask, SPACING, _cfg(views=views, cache_dtype="float16"))
    assert f16.images.dtype == np.float16
    np.testing.assert_allclose(f16.images.astype(np.float32) * 255, out.images, atol=0.6)
    # values: the enhancing tumour is brighter than its surroundings in G (early) and B (late), not in R (pre)
    centre = out.images if views == "single" else out.images[:, 1]
    inside = out.masks.astype(bool)
    assert inside.any() and (~inside).any()
    for channel, brighter in ((0, False), (1, True), (2, True)):
        gap = centre[:, channel][inside].mean() - centre[:, channel][~inside].mean()
        assert (gap > 40) if brighter else (abs(gap) < 40), (channel, gap)
    single = preprocess_case(phases, mask, SPACING, _cfg(views="single"))
    assert np.array_equal(centre, single.images)  # the centre view is the single-view image
    if views == "adjacent":  # view 0 of slice k is the centre view of slice k-1 (same crop window)
        assert np.array_equal(out.images[1:, 0], single.images[:-1])


def test_equals_full_volume_normalisation_then_crop():
    """Normalising only the needed slices gives exactly what normalising the whole volume gives."""
    phases, mask = _case(1)
    cfg = _cfg(normalization="clip_global_q99", stats_mask="foreground")
    out = preprocess_case(phases, mask, SPACING, cfg)
    full = NormalizeDCE("clip_global_q99", stats_mask="foreground")(phases)
    win = out.crop_window
    expected = quantize_uint8(FuseRGB()(resize(extract(full[:, out.slice_idx], win), 32)))
    assert np.array_equal(out.images, expected)
    assert np.array_equal(out.masks, resize(extract(mask[out.slice_idx], win), 32, "nearest"))


def test_channel_order_end_to_end():
    shape = (6, 32, 32)
    phases = np.stack([np.full(shape, v, np.uint16) for v in (100, 200, 300)])
    mask = np.zeros(shape, np.uint8)
    mask[2:4, 10:20, 10:20] = 1
    out = preprocess_case(
        phases, mask, SPACING, _cfg(normalization="minmax_global", crop_size=16, image_size=16)
    )
    assert out.images[0, :, 8, 8].tolist() == [0, 128, 255]  # R = pre, G = early, B = late


def test_adjacent_views_are_neighbouring_slices():
    phases, mask = _case(2)
    adj = preprocess_case(phases, mask, SPACING, _cfg(views="adjacent", slice_selection="all"))
    single = preprocess_case(phases, mask, SPACING, _cfg(slice_selection="all"))
    z = adj.slice_idx.tolist()
    assert z == [4, 5, 6, 7, 8]
    assert np.array_equal(adj.images[:, 1], single.images)  # centre view = the slice itself
    assert np.array_equal(adj.images[1:, 0], single.images[:-1])  # view 0 of z = slice z - 1
    assert np.array_equal(adj.images[:-1, 2], single.images[1:])
    edge_mask = np.zeros_like(mask)
    edge_mask[0, 20:30, 8:16] = 1
    edge = preprocess_case(phases, edge_mask, SPACING, _cfg(views="adjacent", slice_selection="all"))
    assert edge.slice_idx.tolist() == [0] and np.array_equal(edge.images[0, 0], edge.images[0, 1])  # clamped


def test_scales_views_differ_in_field_of_view():
    phases, mask = _case(3)
    out = preprocess_case(phases, mask, SPACING, _cfg(views="scales", view_scales=(0.5, 1.0, 2.0)))
    single = preprocess_case(phases, mask, SPACING, _cfg())
    assert np.array_equal(out.images[:, 1], single.images)
    assert not np.array_equal(out.images[:, 0], out.images[:, 2])


def test_shape_mismatch_and_missing_tumour():
    phases, mask = _case()
    with pytest.raises(DataError, match=r"ISPY2-9.*\(11, 48, 48\).*\(12, 48, 48\)"):
        preprocess_case(phases, mask[:11], SPACING, _cfg(), case_id="ISPY2-9")
    with pytest.raises(DataError, match="p2.*empty"):
        preprocess_case(phases, np.zeros_like(mask), SPACING, _cfg(), case_id="p2")
    with pytest.raises(DataError, match="no tumour mask"):
        preprocess_case(phases, None, SPACING, _cfg(), bbox=(20, 29, 8, 15), case_id="p3")
    with pytest.raises(ValueError, match="spacing"):
        preprocess_case(phases, mask, (0.0, 1.0, 1.0), _cfg())
    with pytest.raises(DataError, match="\\(3, Z, Y, X\\)"):
        preprocess_case(phases[:2], mask, SPACING, _cfg())


def test_bbox_only_case_duke():
    phases, mask = _case()
    out = preprocess_case(phases, None, SPACING, _cfg(stats_mask="tumour_bbox"), bbox=(4, 8, 20, 29, 8, 15))
    ref = preprocess_case(phases, mask, SPACING, _cfg(stats_mask="tumour_bbox"))
    assert out.masks is None and out.slice_idx.tolist() == ref.slice_idx.tolist() == [5, 6, 7, 8]
    assert out.crop_window == ref.crop_window  # same tumour box as the voxel mask


def test_mm_crop_and_degenerate_case_warns():
    phases, mask = _case()
    out = preprocess_case(phases, mask, (2.0, 0.5, 0.5), _cfg(crop_mode="mm", crop_size=10.0))
    assert out.crop_window[2:] == (20, 20)
    flat = np.full_like(phases, 3)
    with pytest.warns(UserWarning, match="flat1"):
        res = preprocess_case(flat, mask, SPACING, _cfg(), case_id="flat1")
    assert (res.images == 0).all()


def test_rgb_slices():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 40, 40, 3), dtype=np.uint8)
    same = preprocess_rgb_slices(imgs, _cfg(image_size=40))
    assert np.array_equal(same.images, np.moveaxis(imgs, -1, 1)) and same.masks is None
    boxes = [(10, 20, 12, 22)] * 4 + [None]
    cropped = preprocess_rgb_slices(imgs, _cfg(crop_size=20, image_size=20), boxes)
    assert np.array_equal(cropped.images, np.moveaxis(imgs[:, 6:26, 8:28], -1, 1))
    assert cropped.crop_window == (6, 8, 20, 20)  # bbox centre (15, 17), even side: half a pixel down-right
    adj = preprocess_rgb_slices(imgs, _cfg(image_size=40, views="adjacent"), slice_idx=[3, 4, 5, 6, 7])
    assert adj.images.shape == (5, 3, 3, 40, 40) and adj.slice_idx.tolist() == [3, 4, 5, 6, 7]
    assert np.array_equal(adj.images[2, 0], same.images[1]) and np.array_equal(
        adj.images[0, 0], same.images[0]
    )
    sc = preprocess_rgb_slices(imgs, _cfg(image_size=40, views="scales"))
    assert sc.images.shape == (5, 3, 3, 40, 40) and np.array_equal(sc.images[:, 1], same.images)
    with pytest.raises(DataError, match="uint8"):
        preprocess_rgb_slices(imgs.astype(np.float32), _cfg())


def test_n4_corrects_and_hits_cache(tmp_path):
    z, y, x = np.mgrid[0:4, 0:24, 0:24]
    obj = ((y - 12) ** 2 + (x - 12) ** 2) < 100
    bias = 0.7 + 0.6 * x / 23.0
    vol = np.where(obj, 500.0 * bias, 5.0).astype(np.float32)
    n4 = N4BiasCorrection(shrink_factor=2, iterations=(20, 20), cache_dir=tmp_path)
    out = n4(vol, (3.0, 1.0, 1.0))
    cv = lambda a: a[obj].std() / a[obj].mean()  # noqa: E731
    assert out.shape == vol.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert cv(out) < cv(vol)
    again = n4(vol, (3.0, 1.0, 1.0))
    assert (n4.cache_hits, n4.cache_misses) == (1, 1) and np.array_equal(again, out)
    assert len(list(tmp_path.rglob("output.pkl"))) == 1  # one joblib.Memory entry
    src = tmp_path / "vol.nii.gz"
    src.write_bytes(b"x")
    n4(vol, (3.0, 1.0, 1.0), source=src)
    n4(vol, (3.0, 1.0, 1.0), source=src)
    assert (n4.cache_hits, n4.cache_misses) == (2, 2)
    with pytest.raises(ValueError, match="shrink_factor=0"):
        N4BiasCorrection(shrink_factor=0)


def test_n4_joblib_cache_counts_computations_and_misses_on_a_new_parameter(tmp_path, monkeypatch):
    """The second call reads joblib's cache (no computation); another parameter, spacing or file misses it."""
    import her2mri.data.n4 as n4_module

    calls: list[tuple] = []

    def counting_correct(volume, *args):  # noqa: ANN001, ANN002, ANN202
        calls.append(args)
        return volume.astype(np.float32) * 0.5

    # the cached function calls the module-level n4_correct: count the real computations
    monkeypatch.setattr(n4_module, "n4_correct", counting_correct)
    vol = np.random.default_rng(1).uniform(50, 150, (4, 12, 12)).astype(np.float32)
    src = tmp_path / "phase.nii.gz"
    src.write_bytes(b"phase")
    cache = tmp_path / "c"
    n4 = N4BiasCorrection(shrink_factor=2, iterations=(3,), cache_dir=cache)
    first = n4(vol, (2.0, 1.0, 1.0), source=src)
    second = n4(vol, (2.0, 1.0, 1.0), source=src)
    assert len(calls) == 1 and np.array_equal(first, second) and (n4.cache_hits, n4.cache_misses) == (1, 1)
    np.testing.assert_allclose(first, vol * 0.5)
    n4(vol, (2.5, 1.0, 1.0), source=src)  # another spacing
    N4BiasCorrection(shrink_factor=3, iterations=(3,), cache_dir=cache)(vol, (2.0, 1.0, 1.0), source=src)
    N4BiasCorrection(shrink_factor=2, iterations=(4,), cache_dir=cache)(vol, (2.0, 1.0, 1.0), source=src)
    N4BiasCorrection(shrink_factor=2, iterations=(3,), convergence=1e-3, cache_dir=cache)(
        vol, (2.0, 1.0, 1.0), source=src
    )
    assert len(calls) == 5
    # a new instance on the same folder (another worker, another run) hits the entries
    import pickle

    again = pickle.loads(pickle.dumps(N4BiasCorrection(shrink_factor=2, iterations=(3,), cache_dir=cache)))
    again(vol, (2.0, 1.0, 1.0), source=src)
    assert len(calls) == 5 and again.cache_hits == 1
    src.write_bytes(b"phase, rewritten")  # another size and mtime: the file changed
    n4(vol, (2.0, 1.0, 1.0), source=src)
    assert len(calls) == 6
    n4(vol, (2.0, 1.0, 1.0))  # no source: keyed by the array's bytes
    n4(vol.copy(), (2.0, 1.0, 1.0))
    assert len(calls) == 7
    n4(vol + 1, (2.0, 1.0, 1.0))
    assert len(calls) == 8
    assert sorted(p.name for p in cache.iterdir()) == [".gitignore", "joblib"]  # joblib.Memory's own files
