"""The MONAI data path: one preprocessing ``Compose`` equal to the recorded outputs, MONAI augmentation.

The golden file ``tests/data/golden_preprocess.npz`` was recorded by ``tests/_golden_preprocess.py`` from the
preprocessing as it was before it became a MONAI ``Compose``; every output array must still have the same
SHA-256 digest (exact, for uint8 and float16 images alike).
"""

from __future__ import annotations

from pathlib import Path

import _golden_preprocess as golden
import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    with np.load(golden.GOLDEN, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _compare(entries, recorded: dict[str, np.ndarray], prefixes: tuple[str, ...]) -> int:
    """Check each produced array against its digest; each recorded entry of ``prefixes`` must be produced."""
    seen: set[str] = set()
    problems: list[str] = []
    for entry, arrays in entries:
        for key, arr in arrays.items():
            name = f"{entry}|{key}"
            seen.add(name)
            if f"{name}|sha256" not in recorded:
                problems.append(f"{name}: not in the golden file")
                continue
            arr = np.asarray(arr)
            if golden._digest(arr) == str(recorded[f"{name}|sha256"]):
                continue
            ref = recorded[name]
            got = arr[..., ::2, ::2] if key == "images" else arr
            if got.shape != ref.shape or got.dtype != ref.dtype:
                problems.append(f"{name}: {got.dtype} {got.shape} vs recorded {ref.dtype} {ref.shape}")
            else:
                diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
                problems.append(f"{name}: differs (max |diff| {diff.max():.4g} on the stored pixels)")
    want = {k[: -len("|sha256")] for k in recorded if k.endswith("|sha256") and k.startswith(prefixes)}
    problems += [f"{name}: recorded but not produced" for name in sorted(want - seen)]
    assert not problems, "\n".join(problems[:20])
    return len(seen)


def test_same_slices_as_recorded_on_a_synthetic_cohort(tmp_path: Path, recorded) -> None:
    n = _compare(golden.outputs(tmp_path, None), recorded, ("synth/",))
    assert n >= 5 * len(golden.CONFIGS) * 2  # 5 cases x configurations x (images, slice_idx)


def test_same_slices_as_recorded_on_the_real_masks(tmp_path: Path, recorded, real_data_dir: Path) -> None:
    """The three real I-SPY2 masks, the breast1 NRRD label and real RGB slices (skipped without ../shared)."""
    entries = ((e, a) for e, a in golden.outputs(tmp_path, real_data_dir) if not e.startswith("synth/"))
    n = _compare(entries, recorded, ("real/", "rgb/"))
    assert n > 100


VOLUME_TRANSFORMS = (
    "LoadVolumesd",
    "LocateTumourd",
    "SelectSlicesd",
    "NormalizeDCEd",
    "MakeChannelsd",
    "CropAroundTumourd",
    "FuseRGBd",
    "ArrangeViewsd",
    "CastImaged",
)


def test_datamodule_preprocessing_is_a_monai_compose(synthetic_cohort) -> None:
    from monai.transforms import Compose, MapTransform

    import her2mri.data.dictionary as D
    from her2mri.data.datamodule import DCEDataModule

    root, csv = synthetic_cohort
    dm = DCEDataModule(root=root, metadata_csv=csv, preprocess={"n4": True, "image_size": 32}, progress=False)
    pre = dm.preprocessing
    assert type(pre) is Compose
    names = [type(t).__name__ for t in pre.transforms]
    assert names == [*VOLUME_TRANSFORMS[:2], "N4BiasCorrectiond", *VOLUME_TRANSFORMS[2:]]
    for t in pre.transforms:
        assert isinstance(t, MapTransform) and type(t) is getattr(D, type(t).__name__)
    rgb = DCEDataModule(source="rgb_slices", index_csv=csv, progress=False).preprocessing
    assert [type(t).__name__ for t in rgb.transforms] == [
        "LoadRGBSlicesd",
        "RGBSlicesToStackd",
        *VOLUME_TRANSFORMS[4:],
    ]
    with pytest.raises(ValueError, match="views='volume'"):
        _ = DCEDataModule(source="rgb_slices", index_csv=csv, preprocess={"views": "volume"}).preprocessing


def test_datamodule_runs_the_compose_on_every_case(synthetic_cohort, monkeypatch) -> None:
    """Every case of a setup goes through ``Compose.__call__`` once (no cache: all computed)."""
    from monai.transforms import Compose

    from her2mri.data.datamodule import DCEDataModule

    calls: list[str] = []
    orig = Compose.__call__

    def spy(self, data, *args, **kwargs):
        calls.append(data["record"].pid)
        return orig(self, data, *args, **kwargs)

    monkeypatch.setattr(Compose, "__call__", spy)
    root, csv = synthetic_cohort
    dm = DCEDataModule(root=root, metadata_csv=csv, preprocess={"image_size": 16, "crop_size": 24.0})
    dm.progress = False
    dm.setup()
    assert sorted(calls) == sorted(r.pid for r in dm.records)


def test_crop_window_is_the_whole_tumour_when_its_extent_changes_across_slices() -> None:
    """The old chained dict transforms cropped around the selected slices only; the Compose must not."""
    from her2mri.data.crop import CropAroundTumour, extract, resize
    from her2mri.data.fusion import quantize_uint8
    from her2mri.data.normalize import NormalizeDCE
    from her2mri.data.pipeline import preprocess_case
    from her2mri.data.preprocess_config import PreprocessConfig

    rng = np.random.default_rng(0)
    phases = rng.integers(50, 400, (3, 12, 64, 64)).astype(np.uint16)
    mask = np.zeros((12, 64, 64), np.uint8)
    mask[4:8, 30:36, 30:36] = 1  # the large central part: the selected slices
    mask[2, 5:8, 50:60] = 1  # a small far part on an outer slice: it moves the whole-tumour box
    cfg = PreprocessConfig(n_slices=2, crop_size=32.0, image_size=32)
    out = preprocess_case(phases, mask, (1.0, 1.0, 1.0), cfg)
    assert out.slice_idx.tolist() == [4, 5]
    cropper = CropAroundTumour(32.0, image_size=32)
    whole, selected_only = cropper.window((64, 64), mask), cropper.window((64, 64), mask[[4, 5]])
    assert out.crop_window == whole == (5, 29, 32, 32) and selected_only == (17, 17, 32, 32)
    norm = NormalizeDCE()(phases, slices=[4, 5])
    want = quantize_uint8(np.moveaxis(resize(extract(norm, out.crop_window), 32), 0, 1))
    np.testing.assert_array_equal(out.images, want)
    np.testing.assert_array_equal(out.masks, extract(mask[[4, 5]], out.crop_window))


def test_transform_errors_are_raised_as_they_are() -> None:
    """MONAI wraps errors in RuntimeError('applying transform ...'); the pipeline raises the original."""
    from her2mri.data.errors import DataError
    from her2mri.data.pipeline import preprocess_case
    from her2mri.data.preprocess_config import PreprocessConfig

    phases = np.ones((3, 4, 16, 16), np.uint16)
    with pytest.raises(DataError, match="c9: tumour mask is empty"):
        preprocess_case(phases, np.zeros((4, 16, 16), np.uint8), (1, 1, 1), PreprocessConfig(), case_id="c9")
    with pytest.raises(ValueError, match="spacing="):
        preprocess_case(phases, None, (0, 1, 1), PreprocessConfig())


# ------------------------------------------------------------------------------------ augmentation (MONAI)
def _pattern(h: int = 32) -> torch.Tensor:
    """An asymmetric L-shaped pattern (flips and rotations all change it)."""
    p = torch.zeros(h, h)
    p[6:26, 8:13] = 1.0
    p[21:26, 8:24] = 1.0
    return p


@pytest.mark.parametrize(
    ("layout", "channel_dim"),
    [((3, 3), -3), ((3,), -3), ((3, 5), -4)],  # adjacent/scales views, single view, volume / phase views
)
def test_one_draw_per_sample_for_every_view_phase_and_mask(layout, channel_dim) -> None:
    """Each view/phase is the same pattern times its own factor; bilinear warping is linear, so every output
    divided by its factor must be the same warped pattern, and the mask its nearest-neighbour twin."""
    from her2mri.data.augment import dce_augmentation

    pat = _pattern()
    factors = torch.arange(1, int(np.prod(layout)) + 1, dtype=torch.float32).view(*layout, 1, 1)
    factors = factors / factors.max()
    image = factors * pat
    aug = dce_augmentation(prob_hflip=0.5, prob_vflip=0.5, rotate_deg=30, scale_range=(0.8, 1.2),
                           prob_affine=1.0, channel_dim=channel_dim).set_random_state(seed=11)  # fmt: skip
    seen = []
    for _ in range(6):
        out = aug({"image": image.clone(), "mask": pat[None].clone()})
        warped = (out["image"] / factors).reshape(-1, *pat.shape)
        torch.testing.assert_close(warped, warped[:1].expand_as(warped), atol=1e-5, rtol=0)
        support, mask = warped[0] > 0.5, out["mask"][0] > 0.5
        assert float((support & mask).sum() / (support | mask).sum()) > 0.8
        assert not torch.allclose(warped[0], pat)  # it did move
        seen.append(warped[0])
    assert not torch.allclose(seen[0], seen[1])  # a new draw per sample


def _identical_items_dataset(n: int, augment):
    from her2mri.data.dataset import SliceDataset
    from her2mri.data.records import CaseRecord

    img = (_pattern(16)[None].repeat(3, 1, 1) * 255).to(torch.uint8).numpy()[None]  # (1, 3, 16, 16)
    recs = [CaseRecord(pid=f"p{i}", label=i % 2) for i in range(n)]
    arrays = [{"images": img, "slice_idx": np.array([0], np.int32), "masks": img[:, 0] // 255} for _ in recs]
    return SliceDataset(recs, arrays, augment, imagenet_norm=False, with_mask=True)


def _epochs(loader, n_epochs: int) -> list[dict[str, torch.Tensor]]:
    """Augmented image per pid, per epoch."""
    return [{b["pid"][0]: b["image"][0] for b in loader} for _ in range(n_epochs)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_workers_and_epochs_draw_differently_and_a_seed_reproduces(tmp_path: Path, num_workers: int) -> None:
    """Identical items: any two equal outputs would be a repeated draw (rotation is continuous)."""
    from monai.data import DataLoader

    from her2mri.data.datamodule import DCEDataModule

    def loader(seed: int):
        aug = {"prob_affine": 1.0, "rotate_deg": 45.0}
        dm = DCEDataModule(root=tmp_path, metadata_csv=tmp_path / "none.csv", seed=seed,
                           num_workers=num_workers, augment_kwargs=aug)  # fmt: skip
        ds = _identical_items_dataset(6, dm._make_augment())
        out = dm._loader(ds, batch_size=1, train=True)
        assert isinstance(out, DataLoader)
        return out

    first = _epochs(loader(0), 2)
    outs = [x for epoch in first for x in epoch.values()]
    assert len(outs) == 12
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert not torch.allclose(outs[i], outs[j]), (i, j)  # no two workers / epochs repeat a draw
    again = _epochs(loader(0), 2)
    for e in range(2):
        assert first[e].keys() == again[e].keys()
        for pid in first[e]:
            assert torch.equal(first[e][pid], again[e][pid])  # the seed reproduces every draw
    other = _epochs(loader(1), 1)[0]
    assert not all(torch.equal(other[p], first[0][p]) for p in other)


def test_n4_step_of_the_compose_corrects_each_phase_through_its_cache(tmp_path: Path, monkeypatch) -> None:
    """The wiring of ``N4BiasCorrectiond`` (N4 itself is tested in test_transforms_pipeline): a cheap
    non-linear stand-in for SimpleITK's N4 keeps the test fast."""
    import her2mri.data.n4 as n4_module
    from her2mri.data.pipeline import preprocess_case
    from her2mri.data.preprocess_config import PreprocessConfig

    calls: list[tuple[float, ...]] = []

    def fake_n4(volume, spacing, *args):  # noqa: ANN001, ANN002, ANN202
        calls.append(tuple(spacing))
        return np.sqrt(volume.astype(np.float32))

    monkeypatch.setattr(n4_module, "n4_correct", fake_n4)
    rng = np.random.default_rng(4)
    x = np.arange(32)[None, None, :]
    phases = np.stack([200 + 40 * x + rng.integers(0, 20, (6, 32, 32)) + 100 * k for k in range(3)])
    phases = phases.astype(np.uint16)
    mask = np.zeros((6, 32, 32), np.uint8)
    mask[2:4, 12:20, 12:20] = 1
    sp = (2.0, 0.8, 0.8)
    cfg = {"crop_size": 24.0, "image_size": 16, "n_slices": 2}
    out = preprocess_case(phases, mask, sp, PreprocessConfig(n4=True, **cfg), n4_cache_dir=tmp_path / "n4")
    assert calls == [sp] * 3  # one correction per phase, with the case's spacing
    ref = preprocess_case(np.sqrt(phases.astype(np.float32)), mask, sp, PreprocessConfig(**cfg))
    plain = preprocess_case(phases, mask, sp, PreprocessConfig(**cfg))
    np.testing.assert_array_equal(out.images, ref.images)
    assert not np.array_equal(out.images, plain.images)  # the step did something
    preprocess_case(phases, mask, sp, PreprocessConfig(n4=True, **cfg), n4_cache_dir=tmp_path / "n4")
    assert len(calls) == 3  # the second run reads the N4 disk cache
