"""Cache (hit, miss, invalidation, atomic write, parallel prepare) and split files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import her2mri.data.cache as cache_mod
from her2mri.data.cache import CaseCache, source_hash
from her2mri.data.errors import DataError
from her2mri.data.prepare import prepare_cohort, preprocess_record
from her2mri.data.preprocess_config import PreprocessConfig
from her2mri.data.readers import load_breastdcedl
from her2mri.data.splits import kfold_split, load_split, make_kfold_split, official_split, stratified_carve

CFG = PreprocessConfig(image_size=32, crop_size=32.0, n_slices=2)


@pytest.fixture(scope="module")
def records(synthetic_cohort):
    root, csv = synthetic_cohort
    return load_breastdcedl(root, csv)


def test_cache_miss_then_hit(records, tmp_path):
    rec = records[0]
    cache = CaseCache(tmp_path, CFG)
    assert cache.load(rec) is None and not cache.has(rec)
    arrays = preprocess_record(rec, CFG)
    assert arrays["images"].dtype == np.uint8 and arrays["images"].shape == (2, 3, 32, 32)
    cache.save(rec, arrays)
    path = cache.path(rec)
    assert path.parent.name == CFG.key() and path.name.startswith(rec.pid + "-")
    assert json.loads((path.parent / "config.json").read_text())["image_size"] == 32
    hit = cache.load(rec)
    for k in ("images", "masks", "slice_idx"):
        np.testing.assert_array_equal(hit[k], arrays[k])
    # another configuration has its own folder: a miss
    assert CaseCache(tmp_path, PreprocessConfig(image_size=40)).load(rec) is None


def test_cache_key_follows_source_files_and_metadata(records, tmp_path):
    rec = records[1]
    h0 = source_hash(rec)
    st = rec.phase_paths[2].stat()
    os.utime(rec.phase_paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        assert source_hash(rec) != h0
    finally:
        os.utime(rec.phase_paths[2], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert source_hash(rec) == h0
    old = rec.spacing
    rec.spacing = (old[0] + 1, old[1], old[2])
    try:
        assert source_hash(rec) != h0
    finally:
        rec.spacing = old


def test_cache_replaces_stale_entry_and_survives_corruption(records, tmp_path):
    rec = records[2]
    cache = CaseCache(tmp_path, CFG)
    fake = {"images": np.zeros((1, 3, 4, 4), np.uint8), "slice_idx": np.zeros(1, np.int32)}
    stale = cache.dir / f"{rec.pid}-0123456789abcdef.npz"
    other = cache.dir / f"{rec.pid}-x-0123456789abcdef.npz"  # another pid with the same prefix
    cache_mod.atomic_save_npz(stale, fake)
    cache_mod.atomic_save_npz(other, fake)
    cache.save(rec, fake)
    assert not stale.exists() and other.exists() and cache.has(rec)
    cache.path(rec).write_bytes(b"broken")
    with pytest.warns(UserWarning, match="unreadable cache entry"):
        assert cache.load(rec) is None


def test_atomic_write_leaves_nothing_on_failure(records, tmp_path, monkeypatch):
    rec = records[0]
    cache = CaseCache(tmp_path, CFG)

    def killed(fh, **arrays):
        fh.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(cache_mod.np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.save(rec, {"images": np.zeros((1, 3, 4, 4), np.uint8), "slice_idx": np.zeros(1, np.int32)})
    assert not cache.path(rec).exists()
    assert [p.name for p in cache.dir.iterdir()] == ["config.json"]  # no .npz, no stray .tmp


def test_prepare_cohort_parallel_matches_serial(records, tmp_path):
    recs = records[:3]
    serial = prepare_cohort(recs, CFG, cache_dir=None, num_workers=0, progress=False)
    par = prepare_cohort(recs, CFG, cache_dir=tmp_path, num_workers=2, progress=False)
    assert len(list((tmp_path / CFG.key()).glob("*.npz"))) == 3
    for a, b in zip(serial, par, strict=True):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["slice_idx"], b["slice_idx"])


def test_kfold_split_file_generated_once_and_reused(tmp_path):
    pids = [f"p{i:02d}" for i in range(20)]
    labels = [int(i % 5 < 2) for i in range(20)]  # 8 positives
    path = tmp_path / "splits" / "kfold.json"
    split = make_kfold_split(pids, labels, k=4, seed=0, path=path)
    assert path.is_file() and json.loads(path.read_text()) == split
    tests = [p for f in range(4) for p in split["folds"][str(f)]["test"]]
    assert sorted(tests) == pids  # every patient tested exactly once
    lab = dict(zip(pids, labels, strict=True))
    for f in range(4):
        fold = load_split(path, f)
        assert sorted(fold["train"] + fold["val"] + fold["test"]) == pids
        assert sum(lab[p] for p in fold["test"]) == 2  # stratified: 8 positives over 4 folds
        assert {lab[p] for p in fold["val"]} == {0, 1}
    # reuse: another seed does not regenerate an existing file
    again = kfold_split(path, pids, labels, fold=1, k=4, seed=123)
    assert again == load_split(path, 1)
    assert make_kfold_split(pids, labels, k=4, seed=0) == split  # deterministic
    assert make_kfold_split(pids, labels, k=4, seed=1)["folds"] != split["folds"]


def test_bad_fold_and_bad_file(tmp_path):
    pids = [f"p{i}" for i in range(6)]
    labels = [0, 1, 0, 1, 0, 1]
    path = tmp_path / "s.json"
    make_kfold_split(pids, labels, k=3, seed=0, path=path)
    with pytest.raises(ValueError, match=r"fold=7 is not in split file .*available folds: \['0', '1', '2'\]"):
        load_split(path, 7)
    with pytest.raises(ValueError, match="fold=5"):
        kfold_split(path, pids, labels, fold=5, k=3)
    with pytest.raises(ValueError, match="k=5 differs"):
        kfold_split(path, pids, labels, fold=0, k=5)
    with pytest.raises(DataError, match="not in the split file") as e:
        kfold_split(path, [*pids, "new"], [*labels, 0], fold=0, k=3)
    assert str(path) in str(e.value)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not a valid split file"):
        load_split(path, 0)
    with pytest.raises(ValueError, match="k=9"):
        make_kfold_split(pids, labels, k=9, seed=0)


def test_official_split_with_val_fallback():
    pids = [f"p{i}" for i in range(10)]
    labels = [0, 1] * 5
    with pytest.warns(UserWarning, match="no validation patients"):
        s = official_split(pids, ["train"] * 8 + ["test"] * 2, labels, val_fraction=0.25, seed=0)
    assert s["test"] == ["p8", "p9"] and len(s["val"]) == 2 and len(s["train"]) == 6
    assert {labels[pids.index(p)] for p in s["val"]} == {0, 1}
    train = pids[:8]
    kept, carved = stratified_carve(train, labels[:8], 0.25, seed=0)
    assert kept == s["train"] and carved == s["val"]  # the fallback is this seeded carve-out
