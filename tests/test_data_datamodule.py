"""DCEDataModule: batch shapes for every view mode, cache reuse, splits, sampling, RGB source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import her2mri.data.io as io_mod
from her2mri.data.datamodule import DCEDataModule
from her2mri.data.dataset import IMAGENET_MEAN, IMAGENET_STD

PRE = {"image_size": 48, "crop_size": 40.0, "n_slices": 3}


def _dm(synthetic_cohort, tmp_path, **kw):
    root, csv = synthetic_cohort
    args = {"root": root, "metadata_csv": csv, "cache_dir": tmp_path / "cache", "batch_size": 4,
            "preprocess": PRE, "progress": False}  # fmt: skip
    args.update(kw)
    return DCEDataModule(**args)


@pytest.mark.parametrize("views", ["single", "adjacent", "scales"])
def test_batches_have_documented_shapes(synthetic_cohort, tmp_path, views):
    dm = _dm(synthetic_cohort, tmp_path, preprocess={**PRE, "views": views})
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    img_shape = (4, 3, 48, 48) if views == "single" else (4, 3, 3, 48, 48)
    assert batch["image"].shape == img_shape and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (4,) and batch["label"].dtype == torch.int64
    assert batch["slice_idx"].shape == (4,) and batch["slice_idx"].dtype == torch.int64
    assert batch["mask"].shape == (4, 1, 48, 48) and batch["mask"].dtype == torch.float32
    assert set(torch.unique(batch["mask"]).tolist()) <= {0.0, 1.0}
    assert isinstance(batch["pid"], list) and all(isinstance(p, str) for p in batch["pid"])
    counts = dm.describe()
    assert (
        counts["train"]["patients"] == 8
        and counts["val"]["patients"] == 2
        and counts["test"]["patients"] == 2
    )
    assert counts["train"]["slices"] == 8 * 3
    assert sum(c["pos"] for c in counts.values()) == 5
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[1:] == img_shape[1:]


def test_imagenet_norm_and_no_augmentation(synthetic_cohort, tmp_path):
    a = _dm(synthetic_cohort, tmp_path, imagenet_norm=False, augment=False)
    b = _dm(synthetic_cohort, tmp_path, imagenet_norm=True, augment=False)
    xa = a.test_dataset[0]["image"]
    xb = b.test_dataset[0]["image"]
    assert 0.0 <= float(xa.min()) and float(xa.max()) <= 1.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(xb, (xa - mean) / std)
    # uint8 in memory, float per item
    assert a.test_dataset.images[0].dtype == np.uint8
    # the item equals the cached uint8 slice / 255
    torch.testing.assert_close(xa, torch.from_numpy(a.test_dataset.images[0][0]).float() / 255)


def test_second_setup_reads_no_volume(synthetic_cohort, tmp_path, monkeypatch):
    first = _dm(synthetic_cohort, tmp_path)
    first.prepare_data()
    first.setup()

    def forbidden(*args, **kwargs):
        raise AssertionError("a volume was read although the cache is warm")

    monkeypatch.setattr(io_mod, "read_volume", forbidden)
    monkeypatch.setattr(io_mod, "load_case_arrays", forbidden)
    second = _dm(synthetic_cohort, tmp_path)
    second.prepare_data()
    second.setup()
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(
            second.datasets_by_split[s].images[0], first.datasets_by_split[s].images[0]
        )
    # without the cache the reader is needed: the patched reader fires
    with pytest.raises(AssertionError, match="cache is warm"):
        _dm(synthetic_cohort, tmp_path, cache_dir=None).setup()


def test_augmentation_is_seeded_and_changes_train_items(synthetic_cohort, tmp_path):
    kw = {
        "augment_kwargs": {"prob_hflip": 1.0, "rotate_deg": 0.0, "prob_affine": 0.0},
        "imagenet_norm": False,
    }
    dm = _dm(synthetic_cohort, tmp_path, **kw)
    item = dm.train_dataset[0]
    raw = torch.from_numpy(dm.train_dataset.images[0][0]).float() / 255
    torch.testing.assert_close(item["image"], torch.flip(raw, [-1]))
    mask = torch.from_numpy(dm.train_dataset.masks[0][0]).float()
    torch.testing.assert_close(item["mask"][0], torch.flip(mask, [-1]))
    # predict on the training split: no augmentation
    pred = next(iter(dm.predict_dataloader("train")))
    assert (
        pred["pid"][0] == dm.train_dataset.records[0].pid and int(pred["slice_idx"][0]) == item["slice_idx"]
    )
    torch.testing.assert_close(pred["image"][0], raw)


def test_balanced_sampler(synthetic_cohort, tmp_path):
    dm = _dm(synthetic_cohort, tmp_path, balanced_sampling=True, augment=False, batch_size=64)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, torch.utils.data.WeightedRandomSampler)
    labels = torch.cat([b["label"] for _ in range(6) for b in loader])
    assert abs(float(labels.float().mean()) - 0.5) < 0.12  # 3 of 8 train patients are positive


def test_kfold_mode_and_val_fallback(synthetic_cohort, tmp_path):
    split_file = tmp_path / "folds.json"
    dm = _dm(
        synthetic_cohort,
        tmp_path,
        split_mode="kfold",
        n_folds=3,
        fold=2,
        split_file=split_file,
        augment=False,
    )
    dm.setup()
    assert split_file.is_file()
    counts = dm.describe()
    assert sum(c["patients"] for c in counts.values()) == 12 and counts["test"]["patients"] == 4
    with pytest.raises(ValueError, match="fold=3 is not in split file"):
        _dm(synthetic_cohort, tmp_path, split_mode="kfold", n_folds=3, fold=3, split_file=split_file).setup()

    # a cohort without validation patients: a seeded stratified carve-out of train
    root, csv = synthetic_cohort
    meta = pd.read_csv(csv)
    no_val = tmp_path / "noval.csv"
    meta.assign(test=meta["test"].replace(2, 0)).to_csv(no_val, index=False)
    with pytest.warns(UserWarning, match="no validation patients"):
        dm2 = _dm(synthetic_cohort, tmp_path, metadata_csv=no_val, val_fraction=0.25, augment=False)
        dm2.setup()
    c2 = dm2.describe()
    assert c2["val"]["patients"] == 3 and c2["train"]["patients"] == 7 and c2["val"]["pos"] >= 1
    assert len(dm2.all_dataset()) == 12 * 3


def test_bad_arguments(synthetic_cohort, tmp_path):
    with pytest.raises(ValueError, match="source='nifti'"):
        _dm(synthetic_cohort, tmp_path, source="nifti")
    with pytest.raises(ValueError, match="index_csv=None"):
        DCEDataModule(source="rgb_slices")
    with pytest.raises(ValueError, match="batch_size=0"):
        _dm(synthetic_cohort, tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="normalization='minmax'"):
        _dm(synthetic_cohort, tmp_path, preprocess={"normalization": "minmax"})


def test_real_rgb_slices_one_batch(real_data_dir, tmp_path):
    index = pd.read_csv(real_data_dir / "fedsubtype_ispy_rgb/subset_index.csv")
    pids = list(index.drop_duplicates("pid").groupby("her2").head(3)["pid"])  # 3 HER2+ and 3 HER2-
    small = tmp_path / "index.csv"
    index[index["pid"].isin(pids)].to_csv(small, index=False)
    image_dir = Path(real_data_dir / "fedsubtype_ispy_rgb/deployment/data/global/images")
    dm = DCEDataModule(
        source="rgb_slices",
        index_csv=small,
        image_dir=image_dir,
        preprocess={"image_size": 64},
        split_mode="kfold",
        n_folds=2,
        cache_dir=tmp_path / "c",
        batch_size=5,
        progress=False,
    )
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (5, 3, 64, 64) and "mask" not in batch
    assert set(batch["label"].tolist()) <= {0, 1}
    labels = dict(zip(index["pid"], index["her2"], strict=False))
    assert all(int(y) == labels[p] for p, y in zip(batch["pid"], batch["label"], strict=True))
    assert sum(c["patients"] for c in dm.describe().values()) == 6
