"""Every bad input gives a DataError whose message names the file and the problem."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from her2mri.data.errors import DataError
from her2mri.data.io import load_case_arrays, read_mask, read_rgb, read_volume
from her2mri.data.manifest import read_manifest
from her2mri.data.readers import load_breastdcedl
from her2mri.data.rgb import read_rgb_slices
from her2mri.data.splits import load_split
from her2mri.data.synth import make_synthetic_cohort


@pytest.fixture()
def cohort(tmp_path):
    """Three tiny patients, private to each test (so files can be broken)."""
    c = make_synthetic_cohort(tmp_path / "c", n=3, seed=3, shape=(6, 20, 20), n_times=6, test_fraction=0.0,
                              val_fraction=0.0)  # fmt: skip
    return c


def _edit_csv(csv, fn):
    df = pd.read_csv(csv)
    df = fn(df)
    df.to_csv(csv, index=False)
    return csv


def _save(arr, path):
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))


def test_missing_phase_file(cohort):
    pid = cohort.pids[0]
    missing = cohort.root / "dce" / f"{pid}_spy2_vis1_dce_aqc_2.nii.gz"
    missing.unlink()
    with pytest.raises(DataError, match="missing phase file") as e:
        load_breastdcedl(cohort.root, cohort.metadata_csv)
    assert str(missing) in str(e.value)


def test_phase_index_beyond_acquisitions(cohort):
    pid = cohort.pids[1]
    _edit_csv(cohort.metadata_csv, lambda d: d.assign(post_late=np.where(d.pid == pid, 9, d.post_late)))
    with pytest.raises(DataError, match="beyond the acquisitions") as e:
        load_breastdcedl(cohort.root, cohort.metadata_csv)
    assert f"{pid}_spy2_vis1_dce_aqc_9.nii.gz" in str(e.value) and "post_late=9" in str(e.value)


def test_image_mask_shape_mismatch(cohort):
    rec = load_breastdcedl(cohort.root, cohort.metadata_csv)[0]
    _save(np.ones((7, 20, 20), np.uint8), rec.mask_path)
    with pytest.raises(DataError, match=r"mask has shape \(7, 20, 20\) but phase image") as e:
        load_case_arrays(rec)
    assert str(rec.mask_path) in str(e.value)


def test_phase_shape_mismatch(cohort):
    rec = load_breastdcedl(cohort.root, cohort.metadata_csv)[0]
    _save(np.ones((6, 20, 21), np.uint16), rec.phase_paths[2])
    with pytest.raises(DataError, match="phase image has shape") as e:
        load_case_arrays(rec)
    assert str(rec.phase_paths[2]) in str(e.value)


def test_empty_mask(cohort):
    rec = load_breastdcedl(cohort.root, cohort.metadata_csv)[0]
    _save(np.zeros((6, 20, 20), np.uint8), rec.mask_path)
    with pytest.raises(DataError, match="mask is empty") as e:
        load_case_arrays(rec)
    assert str(rec.mask_path) in str(e.value)


@pytest.mark.parametrize(("value", "problem"), [(np.nan, "label is missing"), (2, "not binary")])
def test_missing_or_nonbinary_label(cohort, value, problem):
    pid = cohort.pids[0]
    _edit_csv(cohort.metadata_csv, lambda d: d.assign(HER2pos=np.where(d.pid == pid, value, d.HER2pos)))
    with pytest.raises(DataError, match=problem) as e:
        load_breastdcedl(cohort.root, cohort.metadata_csv)
    assert str(cohort.metadata_csv) in str(e.value) and pid in str(e.value)


def test_label_column_configurable(cohort):
    records = load_breastdcedl(cohort.root, cohort.metadata_csv, label_col="HR")
    hr = pd.read_csv(cohort.metadata_csv).set_index("pid")["HR"]
    assert [r.label for r in records] == [hr[r.pid] for r in records]


def test_duplicate_pid(cohort):
    _edit_csv(cohort.metadata_csv, lambda d: pd.concat([d, d.iloc[:1]]))
    with pytest.raises(DataError, match="duplicate pid") as e:
        load_breastdcedl(cohort.root, cohort.metadata_csv)
    assert str(cohort.metadata_csv) in str(e.value)


def test_duplicate_file_for_one_acquisition(cohort):
    pid = cohort.pids[0]
    src = cohort.root / "dce" / f"{pid}_spy2_vis1_dce_aqc_0.nii.gz"
    (cohort.root / "copy").mkdir()
    dup = cohort.root / "copy" / src.name
    dup.write_bytes(src.read_bytes())
    with pytest.raises(DataError, match="found twice") as e:
        load_breastdcedl(cohort.root, cohort.metadata_csv)
    assert src.name in str(e.value)


def test_pid_in_two_splits(tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"k": 2, "folds": {"0": {"train": ["a", "b"], "val": [], "test": ["b"]}}}))
    with pytest.raises(DataError, match="pid b is in two splits") as e:
        load_split(split, 0)
    assert str(split) in str(e.value)


def test_pid_in_two_splits_rgb_index(tmp_path):
    for i in range(2):
        (tmp_path / f"s{i}.png").write_bytes(b"")
    csv = tmp_path / "index.csv"
    rows = {"filename": ["s0.png", "s1.png"], "pid": ["p", "p"], "her2": [1, 1], "split": ["val", "test"]}
    pd.DataFrame({**rows, "slice_index": [0, 1]}).to_csv(csv, index=False)
    with pytest.raises(DataError, match="pid p is in two splits") as e:
        read_rgb_slices(csv)
    assert str(csv) in str(e.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_gzip"])
def test_unreadable_or_corrupt_volume(cohort, damage):
    rec = load_breastdcedl(cohort.root, cohort.metadata_csv)[0]
    path = rec.phase_paths[1]
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(gzip.compress(b"this is not a nifti file" * 20))
    else:
        path.write_bytes(b"\x00\x01 plain bytes")
    with pytest.raises(DataError, match="cannot read volume") as e:
        load_case_arrays(rec)
    assert str(path) in str(e.value)


def test_unreadable_mask_and_image(tmp_path):
    bad = tmp_path / "m.nii.gz"
    bad.write_bytes(b"nope")
    with pytest.raises(DataError, match="cannot read") as e:
        read_mask(bad)
    assert str(bad) in str(e.value)
    png = tmp_path / "x.png"
    png.write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image") as e:
        read_rgb(png)
    assert str(png) in str(e.value)
    with pytest.raises(DataError, match="file not found") as e:
        read_volume(tmp_path / "absent.nii.gz")
    assert "absent.nii.gz" in str(e.value)


@pytest.mark.parametrize("column", ["xy_spacing", "slice_thick", "HER2pos", "pid"])
def test_missing_metadata_column(cohort, column):
    _edit_csv(cohort.metadata_csv, lambda d: d.drop(columns=[column]))
    with pytest.raises(DataError, match="missing metadata column") as e:
        load_breastdcedl(cohort.root, cohort.metadata_csv)
    assert str(cohort.metadata_csv) in str(e.value) and column in str(e.value)


def test_nonfinite_volume(tmp_path):
    arr = np.ones((4, 8, 8), np.float32)
    arr[0, 0, 0] = np.nan
    path = tmp_path / "v.nii.gz"
    _save(arr, path)
    with pytest.raises(DataError, match="NaN") as e:
        read_volume(path)
    assert str(path) in str(e.value)


def test_manifest_errors(tmp_path, cohort):
    rec = load_breastdcedl(cohort.root, cohort.metadata_csv)[0]
    csv = tmp_path / "m.csv"
    row = {"case_id": "a", "label": 1, "pre": str(rec.phase_paths[0]), "early": str(rec.phase_paths[1]),
           "late": str(tmp_path / "nope.nii.gz")}  # fmt: skip
    pd.DataFrame([row]).to_csv(csv, index=False)
    with pytest.raises(DataError, match="file not found") as e:
        read_manifest(csv)
    assert "nope.nii.gz" in str(e.value) and str(csv) in str(e.value)
    row["late"] = str(rec.phase_paths[2])
    pd.DataFrame([row, row]).to_csv(csv, index=False)
    with pytest.raises(DataError, match="duplicate case_id") as e:
        read_manifest(csv)
    assert str(csv) in str(e.value)
    pd.DataFrame([{k: v for k, v in row.items() if k != "late"}]).to_csv(csv, index=False)
    with pytest.raises(DataError, match="missing manifest column") as e:
        read_manifest(csv)
    assert str(csv) in str(e.value)
