"""NormalizeDCE against an independent numpy recomputation, exact percentiles, degenerate inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from her2mri.data.errors import DataError, DataWarning
from her2mri.data.normalize import NormalizeDCE, exact_percentiles, foreground_mask
from her2mri.data.preprocess_config import NORMALIZATIONS


def _volume(dtype=np.uint16, seed=0, shape=(3, 5, 12, 14)):
    rng = np.random.default_rng(seed)
    gains = np.array([1.0, 1.8, 1.4]).reshape(3, 1, 1, 1)  # phases differ, like contrast enhancement
    x = rng.gamma(2.0, 300.0, size=shape) * gains
    x[:, :, :2, :] = rng.integers(0, 5, size=(3, shape[1], 2, shape[3]))  # dark background rows
    return x.astype(dtype)


def _reference(x, strategy, scope, mask, lower):
    """Definition of each strategy written directly with np.percentile / mean / std in float64."""
    x = x.astype(np.float64)
    out = np.zeros_like(x)
    joint = strategy == "minmax_global" or strategy.startswith("clip_global")
    upper = 100.0 if strategy.startswith("minmax") or strategy == "zscore" else float(strategy[-2:])
    per_slice = scope == "slice" or strategy == "minmax_slice"
    regions = [[z] for z in range(x.shape[1])] if per_slice else [list(range(x.shape[1]))]
    groups = [[0, 1, 2]] if joint else [[0], [1], [2]]
    for reg in regions:
        m = np.ones((len(reg), *x.shape[2:]), bool) if mask is None else mask[reg]
        for ch in groups:
            vals = x[np.ix_(ch, reg)][:, m]
            if strategy == "zscore":
                lo, hi = vals.mean() - 3 * vals.std(), vals.mean() + 3 * vals.std()
            else:
                lo, hi = np.percentile(vals, lower), np.percentile(vals, upper)
            out[np.ix_(ch, reg)] = np.clip((x[np.ix_(ch, reg)] - lo) / (hi - lo), 0.0, 1.0)
    return out


@pytest.mark.parametrize("strategy", NORMALIZATIONS)
@pytest.mark.parametrize("scope", ["volume", "slice"])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("lower", [0.0, 2.0])
def test_strategy_matches_numpy(strategy, scope, use_mask, lower):
    x = _volume()
    mask = None
    if use_mask:
        mask = np.zeros(x.shape[1:], bool)
        mask[:, 3:10, 2:11] = True
    t = NormalizeDCE(
        strategy, stats_scope=scope, stats_mask="supplied" if use_mask else "none", lower_percentile=lower
    )
    got = t(x, mask=mask)
    assert got.dtype == np.float32
    assert got.min() >= 0.0 and got.max() <= 1.0
    np.testing.assert_allclose(got, _reference(x, strategy, scope, mask, lower), atol=2e-6)


@pytest.mark.parametrize("strategy", ["clip_channel_q98", "clip_global_q95", "zscore", "minmax_slice"])
def test_float_input_and_foreground_mask(strategy):
    x = _volume(np.float32, seed=3)
    fg = x[0] > 0.1 * np.percentile(x[0], 99)
    assert np.array_equal(foreground_mask(x[0]), fg)
    got = NormalizeDCE(strategy, stats_mask="foreground")(x)
    np.testing.assert_allclose(got, _reference(x, strategy, "volume", fg, 0.0), atol=2e-6)


def test_selected_slices_use_volume_statistics():
    x = _volume(seed=1)
    t = NormalizeDCE("clip_global_q99")
    full = t(x)
    part = t(x, slices=[1, 3])
    np.testing.assert_array_equal(part, full[:, [1, 3]])
    t_slice = NormalizeDCE("clip_channel_q95", stats_scope="slice")
    np.testing.assert_array_equal(t_slice(x, slices=[4, 0]), t_slice(x)[:, [4, 0]])


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).integers(0, 4096, 50_001).astype(np.uint16),
        np.random.default_rng(1).integers(-3000, 3000, 20_000).astype(np.int16),
        np.random.default_rng(2).integers(0, 2**40, 9_999).astype(np.int64),
        np.random.default_rng(3).normal(0, 5, 12_345).astype(np.float32),
        np.arange(7, dtype=np.uint8),
    ],
)
def test_exact_percentiles(values):
    q = [0.0, 0.5, 2.0, 50.0, 95.0, 98.0, 99.0, 100.0]
    np.testing.assert_allclose(
        exact_percentiles(values, q), np.percentile(values.astype(np.float64), q), rtol=1e-12
    )


def test_minmax_global_keeps_enhancement_that_minmax_slice_erases():
    rng = np.random.default_rng(0)
    base = rng.uniform(100, 200, (1, 2, 8, 8))
    x = np.concatenate([base, base * 2.0, base * 1.5]).astype(np.float32)  # early enhances, late washes out
    glob = NormalizeDCE("minmax_global")(x)
    assert glob[1].mean() > glob[2].mean() > glob[0].mean()
    per_slice = NormalizeDCE("minmax_slice")(x)
    np.testing.assert_allclose(per_slice[0], per_slice[1], atol=1e-6)  # enhancement erased


def test_constant_volume_warns_and_gives_zeros():
    x = np.full((3, 2, 4, 4), 7, np.uint16)
    with pytest.warns(DataWarning, match="case42.*zero intensity range"):
        out = NormalizeDCE("clip_channel_q98")(x, case_id="case42")
    assert not np.isnan(out).any() and (out == 0).all()


def test_empty_mask_warns_and_gives_zeros():
    x = _volume()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = NormalizeDCE("zscore", stats_mask="supplied")(x, mask=np.zeros(x.shape[1:], bool), case_id="p7")
    assert any("p7" in str(w.message) and "empty statistics mask" in str(w.message) for w in rec)
    assert not np.isnan(out).any() and (out == 0).all()


def test_partly_empty_mask_per_slice():
    x = _volume()
    mask = np.zeros(x.shape[1:], bool)
    mask[2, 4:8, 4:8] = True
    with pytest.warns(DataWarning, match="empty statistics mask") as rec:
        out = NormalizeDCE("clip_channel_q98", stats_scope="slice", stats_mask="supplied")(x, mask=mask)
    assert sorted(str(w.message).split("in slice ")[1][0] for w in rec) == ["0", "1", "3", "4"]
    assert (out[:, 0] == 0).all() and out[:, 2].max() == 1.0 and not np.isnan(out).any()


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"normalization": "clip_chanel_q98"}, "clip_chanel_q98"),
        ({"stats_scope": "patient"}, "patient"),
        ({"stats_mask": "tumor"}, "tumor"),
        ({"lower_percentile": 70}, "70"),
        ({"foreground_fraction": 1.5}, "1.5"),
        ({"zscore_clip": 0}, "0"),
    ],
)
def test_bad_arguments(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        NormalizeDCE(**kwargs)


def test_suggests_closest_name():
    with pytest.raises(ValueError, match="Did you mean 'clip_channel_q98'"):
        NormalizeDCE("clip_chanel_q98")


def test_bad_data():
    with pytest.raises(DataError, match="expected a \\(3, Z, Y, X\\)"):
        NormalizeDCE()(np.zeros((2, 3, 4, 4)))
    x = _volume(np.float32)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        NormalizeDCE()(x, case_id="nanny")
    with pytest.raises(ValueError, match="no mask"):
        NormalizeDCE(stats_mask="supplied")(_volume())
