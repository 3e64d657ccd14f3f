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
