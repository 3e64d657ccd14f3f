"""Issue 15: views=phases, fusion channels, free percentiles, cohort statistics, volume views."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from _helpers import compose_config, synthetic_overrides

from her2mri.data.augment import dce_augmentation
from her2mri.data.build import preprocess_from_cfg, resolve_views
from her2mri.data.channels import make_channels
from her2mri.data.cohort_stats import cohort_bounds, fit_cohort_stats, sample_case
from her2mri.data.datamodule import DCEDataModule
from her2mri.data.io import load_case_arrays
from her2mri.data.normalize import NormalizeDCE
from her2mri.data.pipeline import preprocess_case
from her2mri.data.preprocess_config import PreprocessConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"crop_size": 32.0, "image_size": 32, "n_slices": 2, "cache_dtype": "float16"}


def _case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    phases = rng.integers(0, 1000, (3, 10, 48, 48)).astype(np.uint16)
    phases[1] += 300  # early enhancement everywhere, late partial wash-out
    phases[2] += 150
    mask = np.zeros((10, 48, 48), np.uint8)
    mask[3:7, 18:30, 20:28] = 1
    return phases, mask


# ---------------------------------------------------------------------------------------------- views=phases
@pytest.mark.parametrize("phase_channels", [1, 3])
def test_phase_views_are_pre_early_late_of_the_same_slice(phase_channels):
    phases, mask = _case()
    single = preprocess_case(phases, mask, (1, 1, 1), PreprocessConfig(views="single", **SMALL))
    cfg = PreprocessConfig(views="phases", phase_channels=phase_channels, **SMALL)
    out = preprocess_case(phases, mask, (1, 1, 1), cfg)
    assert out.images.shape == (2, 3, phase_channels, 32, 32)
    assert np.array_equal(out.slice_idx, single.slice_idx)
    for k in range(3):  # head k sees phase k (pre, early, late) of the same slice, repeated to every channel
        for c in range(phase_channels):
            assert np.array_equal(out.images[:, k, c], single.images[:, k])
    assert not np.array_equal(out.images[:, 0], out.images[:, 1])  # the heads do differ


def test_phase_views_through_the_datamodule_and_thda(synthetic_cohort, tmp_path):
    from her2mri.models import create_model

    root, csv = synthetic_cohort
    pre = {**SMALL, "views": "phases", "phase_channels": 1}
    jitter = {"gamma_range": [0.8, 1.2], "prob_intensity": 1.0}
    dm = DCEDataModule(root=root, metadata_csv=csv, cache_dir=tmp_path / "c", batch_size=4, preprocess=pre,
                       progress=False, augment_kwargs=jitter)  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 1, 32, 32)
    raw = dm.val_dataset.images[0][0].astype(np.float32)  # (3, 1, H, W) in [0, 1]
    item = dm.val_dataset[0]["image"]
    grey_mean, grey_std = np.mean((0.485, 0.456, 0.406)), np.mean((0.229, 0.224, 0.225))
    assert torch.allclose(item, (torch.from_numpy(raw) - grey_mean) / grey_std, atol=1e-5)
    model = create_model("thda_resnet18", in_chans=1)
    assert model(batch["image"]).shape == (4, 2)


def test_views_resolution_for_phases_and_volume():
    assert resolve_views("phases", 3, "thda") == "phases"
    assert resolve_views("auto", 1, "resnet3d", spatial_dims=3) == "volume"
    with pytest.raises(ValueError, match="views='phases'.*num_views=1"):
        resolve_views("phases", 1, "resnet34")
    with pytest.raises(ValueError, match="views='volume'.*2-D slices"):
        resolve_views("volume", 1, "resnet34")
    with pytest.raises(ValueError, match="3-D network"):
        resolve_views("single", 1, "resnet3d", spatial_dims=3)
    with pytest.raises(ValueError, match="phase_channels=3.*in_chans=1"):
        preprocess_from_cfg({"views": "phases"}, 3, "thda_resnet34", in_chans=1)


def test_intensity_jitter_along_the_phase_axis():
    aug = dce_augmentation(prob_hflip=0, prob_affine=0, gamma_range=(2.0, 2.0), prob_intensity=1.0,
                           intensity_mode="per_phase", channel_dim=-4).set_random_state(0)  # fmt: skip
    x = torch.rand(3, 1, 8, 8)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = 0.0, 1.0  # each phase spans [0, 1]: MONAI's gamma is then x ** gamma
    assert torch.allclose(aug({"image": x})["image"], x**2, atol=1e-5)
    with pytest.raises(ValueError, match="channel_dim"):
        dce_augmentation(channel_dim=-2)


# ---------------------------------------------------------------------------------------------- channels
def test_subtraction_and_kinetic_equal_their_formulas():
    rng = np.random.default_rng(1)
    x = rng.random((3, 2, 5, 5)).astype(np.float32)
    p, e, l = x  # noqa: E741
    sub = make_channels(x, "subtraction")
    assert (
        np.allclose(sub[0], p)
        and np.allclose(sub[1], (e - p + 1) / 2)
        and np.allclose(sub[2], (l - e + 1) / 2)
    )
    kin = make_channels(x, "kinetic", kinetic_eps=0.05)
    ratio = np.clip((l - e) / np.maximum(e - p, 0.05), -1, 1)
    assert np.allclose(kin[0], (e - p + 1) / 2) and np.allclose(kin[1], (l - e + 1) / 2)
    assert np.allclose(kin[2], (ratio + 1) / 2)
    assert np.array_equal(make_channels(x, "phases"), x)
    with pytest.raises(ValueError, match="channels='diff'"):
        make_channels(x, "diff")


@pytest.mark.parametrize("channels", ["subtraction", "kinetic"])
def test_pipeline_channels_are_the_formulas_of_the_normalised_phases(channels):
    phases, mask = _case(2)
    cfg = PreprocessConfig(normalization="clip_global_q99", channels=channels, image_size=32, crop_size=32.0,
                           n_slices=2, cache_dtype="float16")  # fmt: skip
    out = preprocess_case(phases, mask, (1, 1, 1), cfg)
    norm = NormalizeDCE("clip_global_q99")(phases, slices=out.slice_idx)  # float32 (3, S, Y, X)
    r0, c0, h, w = out.crop_window
    assert (h, w) == (32, 32)  # crop equal to the output size: no resampling
    crop = norm[:, :, r0 : r0 + h, c0 : c0 + w]
    p, e, l = crop  # noqa: E741
    if channels == "subtraction":
        formula = [p, (e - p + 1) / 2, (l - e + 1) / 2]
    else:
        formula = [
            (e - p + 1) / 2,
            (l - e + 1) / 2,
            (np.clip((l - e) / np.maximum(e - p, 0.05), -1, 1) + 1) / 2,
        ]
    expected = np.stack(formula, axis=1)  # (S, 3, H, W)
    assert np.allclose(out.images.astype(np.float32), expected, atol=2e-3)  # float16 storage
    with pytest.raises(ValueError, match="one intensity map.*clip_global"):
        PreprocessConfig(channels=channels)  # per-phase map: refused


def test_subtraction_keeps_the_enhancement_that_per_phase_clipping_shrinks():
    phases, mask = _case(3)
    tum = mask[mask.any(axis=(1, 2))].astype(bool)
    per_phase = preprocess_case(phases, mask, (1, 1, 1), PreprocessConfig(views="single", **SMALL))
    sub = preprocess_case(
        phases,
        mask,
        (1, 1, 1),
        PreprocessConfig(normalization="clip_global_q99", channels="subtraction", **SMALL),
    )
    early_minus_pre = per_phase.images[:, 1].astype(np.float32) - per_phase.images[:, 0].astype(np.float32)
    wash_in = 2 * sub.images[:, 1].astype(np.float32) - 1  # undo (d + 1) / 2
    assert tum.any()
    assert wash_in.mean() > early_minus_pre.mean() + 0.1


# ---------------------------------------------------------------------------------------------- percentiles
def test_free_percentiles():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 4000, (3, 4, 16, 16)).astype(np.uint16)
    norm = NormalizeDCE("clip_channel_q98", lower_percentile=1.5, upper_percentile=97.3)
    lo, hi = norm.compute_stats(img)
    for c in range(3):
        assert lo[c, 0] == pytest.approx(np.percentile(img[c], 1.5))
        assert hi[c, 0] == pytest.approx(np.percentile(img[c], 97.3))
    cfg = PreprocessConfig(normalization="clip_channel_q98", upper_percentile=99.5)
    assert cfg.upper_percentile == 99.5 and cfg.key() != PreprocessConfig().key()
    for bad in (
        {"upper_percentile": 101},
        {"upper_percentile": 40},
        {"normalization": "zscore", "upper_percentile": 99},
    ):
        with pytest.raises(ValueError, match="upper_percentile"):
            PreprocessConfig(**bad)


# ---------------------------------------------------------------------------------------------- cohort scope
def test_cohort_bounds_rule():
    cfg = PreprocessConfig(stats_scope="cohort", normalization="clip_channel_q98")
    a = np.arange(300, dtype=np.float32).reshape(3, 100)
    b = a + 1000
    got = cohort_bounds([a, b], cfg)
    pooled = np.concatenate([a, b], axis=1)
    for c in range(3):
        assert got[c] == pytest.approx((pooled[c].min(), np.percentile(pooled[c], 98)))
    joint = cohort_bounds([a, b], dataclasses.replace(cfg, normalization="clip_global_q99"))
    assert joint[0] == joint[1] == joint[2] == pytest.approx((0.0, np.percentile(pooled, 99)))


def test_cohort_stats_come_from_the_training_split_only(synthetic_cohort, tmp_path):
    root, csv = synthetic_cohort
    pre = {**SMALL, "stats_scope": "cohort", "normalization": "clip_channel_q99"}
    dm = DCEDataModule(root=root, metadata_csv=csv, cache_dir=tmp_path / "c", preprocess=pre, progress=False)
    dm.setup("fit")
    stats = dm.cfg.cohort_stats
    assert stats is not None and len(stats) == 3 and all(hi > lo for lo, hi in stats)
    train = [r for r in dm.records if r.pid in set(dm.splits["train"])]
    others = [r for r in dm.records if r.pid not in set(dm.splits["train"])]
    assert stats == fit_cohort_stats(train, dm.cfg)
    assert stats != fit_cohort_stats(dm.records, dm.cfg)  # val/test patients would change them
    # the bounds are the strategy's bounds of the pooled training samples
    samples = []
    for r in train:
        phases, mask, _ = load_case_arrays(r, dtype=None, contiguous=False)
        seed = int(__import__("hashlib").sha1(r.pid.encode()).hexdigest()[:8], 16)
        samples.append(sample_case(phases, dm.cfg, mask, seed=seed))
    assert cohort_bounds(samples, dm.cfg) == stats
    assert others  # the cohort does have val/test patients
    # val/test cases are mapped with the training bounds: (x - lo) / (hi - lo), clipped
    arrays = dm.val_dataset.images[0]
    assert arrays.dtype == np.float16 and float(arrays.max()) <= 1.0


def test_cohort_stats_are_stored_in_the_checkpoint_and_reused_by_eval(synthetic_cohort, tmp_path):
    from her2mri.data.synth import make_synthetic_cohort
    from her2mri.runs.evaluate import evaluate
    from her2mri.runs.scoring import load_for_eval
    from her2mri.runs.train import train
    from her2mri.training.module import HER2Classifier

    tiny = ["preprocess.image_size=32", "preprocess.crop_size=32", "preprocess.n_slices=2",
            "data.num_workers=0", "preprocess.stats_scope=cohort", "model=resnet34", "data.batch_size=8",
            "trainer.accelerator=cpu"]  # fmt: skip
    cfg = compose_config(
        "train",
        [*synthetic_overrides(synthetic_cohort, tmp_path), *tiny, f"paths.output_dir={tmp_path / 'train'}",
         "trainer.max_epochs=1", "trainer.limit_train_batches=1", "stats_n_boot=0"],
    )  # fmt: skip
    train(cfg)
    ckpt = json.loads((tmp_path / "train" / "metrics.json").read_text())["ckpt_path"]
    stored = HER2Classifier.load_from_checkpoint(ckpt, map_location="cpu").hparams.data_spec["preprocess"]
    root, csv = synthetic_cohort
    dm = DCEDataModule(
        root=root, metadata_csv=csv, preprocess={**SMALL, "stats_scope": "cohort"}, progress=False
    )
    expected = dm.fit_cohort_stats().cohort_stats
    assert [tuple(r) for r in stored["cohort_stats"]] == [tuple(r) for r in expected]

    other = make_synthetic_cohort(tmp_path / "other", n=6, seed=5, shape=(24, 64, 64))  # an "external" cohort
    for cohort in ((root, csv), (other.root, other.metadata_csv)):
        ecfg = compose_config(
            "eval",
            [*synthetic_overrides(cohort, tmp_path), f"paths.output_dir={tmp_path / 'ev'}",
             f"ckpt_path={ckpt}",
             "split=all", "data.num_workers=0", "trainer.accelerator=cpu", "stats_n_boot=0"],
        )  # fmt: skip
        setup = load_for_eval(ecfg, ckpt)
        assert [tuple(r) for r in setup.datamodule.cfg.cohort_stats] == [tuple(r) for r in expected]
    metrics = evaluate(ecfg)  # the external cohort, scored with the training bounds
    assert metrics["all/n_patients"] == 6


def test_cohort_scope_without_stats_is_refused():
    phases, mask = _case()
    with pytest.raises(ValueError, match="cohort_stats=None"):
        preprocess_case(phases, mask, (1, 1, 1), PreprocessConfig(stats_scope="cohort", **SMALL))
    with pytest.raises(ValueError, match="cohort_stats="):
        PreprocessConfig(stats_scope="cohort", cohort_stats=((0, 1), (0, 1)))
    with pytest.raises(ValueError, match="n4=true"):
        PreprocessConfig(stats_scope="cohort", n4=True)


# ---------------------------------------------------------------------------------------------- volume views
def test_volume_view_is_the_tumour_box_of_the_three_phases():
    phases, mask = _case()
    cfg = PreprocessConfig(views="volume", volume_depth=6, **SMALL)
    out = preprocess_case(phases, mask, (1, 1, 1), cfg)
    assert out.images.shape == (1, 3, 6, 32, 32) and out.masks is None
    # tumour z-range 3..6 -> centre 4, box 2..7; slice k of the box equals the single-view slice
    single = preprocess_case(phases, mask, (1, 1, 1), PreprocessConfig(slice_selection="all", **SMALL))
    by_z = {int(z): img for z, img in zip(single.slice_idx, single.images, strict=True)}
    for k, z in enumerate(range(2, 8)):
        if z in by_z:
            assert np.array_equal(out.images[0, :, k], by_z[z])
    assert int(out.slice_idx[0]) == 5
