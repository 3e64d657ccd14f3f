"""PreprocessConfig validation and key, RGB fusion and uint8 quantisation."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from her2mri.data.errors import DataError
from her2mri.data.fusion import FuseRGB, quantize_uint8
from her2mri.data.preprocess_config import NORMALIZATIONS, PreprocessConfig
from her2mri.options import check_choice


def test_defaults_follow_architecture():
    cfg = PreprocessConfig()
    assert (
        cfg.normalization == "clip_channel_q98" and cfg.stats_scope == "volume" and cfg.stats_mask == "none"
    )
    assert (cfg.n_slices, cfg.trim, cfg.crop_size, cfg.image_size) == (4, 0.15, 128.0, 224)
    assert cfg.view_scales == (0.75, 1.0, 1.5) and cfg.cache_dtype == "uint8" and cfg.n4 is False
    assert len(NORMALIZATIONS) == 10


def test_key_is_stable_and_sensitive():
    cfg = PreprocessConfig()
    blob = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"))
    assert cfg.key() == hashlib.sha1(blob.encode()).hexdigest()[:16]
    assert PreprocessConfig.from_dict(cfg.to_dict()).key() == cfg.key()
    assert PreprocessConfig(view_scales=[0.75, 1, 1.5]).key() == cfg.key()  # list from Hydra -> same key
    keys = {PreprocessConfig(normalization=n).key() for n in NORMALIZATIONS}
    assert len(keys) == len(NORMALIZATIONS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_slices = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("normalization", "clip_channel_q97"),
        ("stats_scope", "patient"),
        ("stats_mask", "brain"),
        ("lower_percentile", -1.0),
        ("n4", "yes"),
        ("slice_selection", "middle"),
        ("n_slices", 0),
        ("n_slices", 2.5),
        ("trim", 0.5),
        ("crop_mode", "cm"),
        ("crop_size", 0.0),
        ("image_size", 4),
        ("views", "triple"),
        ("view_scales", (1.0, 2.0)),
        ("cache_dtype", "float32"),
    ],
)
def test_invalid_field_names_field_and_value(field, value):
    with pytest.raises(ValueError, match=field) as exc:
        PreprocessConfig(**{field: value})
    assert str(value)[:4] in str(exc.value)


def test_from_dict_unknown_key_suggests():
    with pytest.raises(ValueError, match="Did you mean 'n_slices'"):
        PreprocessConfig.from_dict({"nslices": 3})


def test_check_choice():
    assert check_choice("x", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match="x='zzz'.*Valid values: a, b"):
        check_choice("x", "zzz", ("a", "b"))


def test_fusion_channel_order():
    # planted distinct constant phases: pre 0.2, early 0.6, late 1.0
    stack = np.stack([np.full((2, 4, 5), v, np.float32) for v in (0.2, 0.6, 1.0)])
    first = FuseRGB("uint8")(stack)
    assert first.shape == (2, 3, 4, 5) and first.dtype == np.uint8
    assert first[0, :, 0, 0].tolist() == [51, 153, 255]  # R = pre, G = early, B = late
    last = FuseRGB("float32", channel_dim="last")(stack[:, 0])
    assert last.shape == (4, 5, 3)
    np.testing.assert_allclose(last[0, 0], [0.2, 0.6, 1.0], atol=1e-7)


def test_uint8_quantisation_exact():
    k = np.arange(256)
    assert np.array_equal(quantize_uint8((k / 255.0).astype(np.float32)), k.astype(np.uint8))
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-0.1, 1.1, 10_000), (k[:-1] + 0.5) / 255.0]).astype(np.float32)
    expected = np.clip(np.round(x.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    got = quantize_uint8(x)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)


def test_fusion_bad_args():
    with pytest.raises(ValueError, match="uint16"):
        FuseRGB("uint16")
    with pytest.raises(ValueError, match="middle"):
        FuseRGB(channel_dim="middle")
    with pytest.raises(DataError, match="pre/early/late"):
        FuseRGB()(np.zeros((2, 4, 4)))
