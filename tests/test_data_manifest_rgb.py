"""Manifest CSV, RGB slice reader (real fedsubtype slices) and volume/NRRD reading."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2mri.data.io import read_header_spacing, read_mask, read_rgb, read_volume
from her2mri.data.manifest import read_manifest
from her2mri.data.readers import load_breastdcedl
from her2mri.data.rgb import read_rgb_slices

RGB_INDEX = Path("fedsubtype_ispy_rgb/subset_index.csv")


def test_manifest_relative_paths_and_options(synthetic_cohort, tmp_path):
    root, csv = synthetic_cohort
    recs = load_breastdcedl(root, csv)[:3]
    rows = []
    for i, r in enumerate(recs):
        row = {"case_id": r.pid, "label": r.label}
        for col, p in zip(("pre", "early", "late"), r.phase_paths, strict=True):
            row[col] = str(p) if i == 0 else os.path.relpath(p, tmp_path)  # absolute and relative
        row.update(mask=str(r.mask_path), split=["train", "val", 1][i], site="X", age=40 + i)
        row.update(spacing_z=r.spacing[0], spacing_y=r.spacing[1], spacing_x=r.spacing[2])
        rows.append(row)
    rows[2]["spacing_z"] = rows[2]["spacing_y"] = rows[2]["spacing_x"] = None
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    out = read_manifest(manifest)
    assert [o.pid for o in out] == [r.pid for r in recs]
    assert [o.split for o in out] == ["train", "val", "test"]
    assert all(a.samefile(b) for a, b in zip(out[1].phase_paths, recs[1].phase_paths, strict=True))
    assert not rows[1]["pre"].startswith("/") and out[1].phase_paths[0].is_absolute()
    assert out[0].spacing == recs[0].spacing and out[2].spacing is None
    assert out[0].site == "X" and out[0].extra["age"] == 40 and out[0].dataset == "manifest"
    assert [o.label for o in out] == [r.label for r in recs]


def test_manifest_rgb_rows_group_by_case(tmp_path):
    rng = np.random.default_rng(0)
    from PIL import Image

    rows = []
    for cid, lab in (("a", 1), ("b", 0)):
        for s in (3, 1):
            p = tmp_path / "img" / f"{cid}_{s}.png"
            p.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(p)
            rows.append({"case_id": cid, "label": lab, "rgb": f"img/{p.name}", "slice_idx": s})
    csv = tmp_path / "m.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    out = read_manifest(csv, require_label=True)
    assert [o.pid for o in out] == ["a", "b"]
    assert out[0].rgb_slice_index == (3, 1) and len(out[0].rgb_paths) == 2 and out[0].label == 1
    unlabelled = tmp_path / "u.csv"
    pd.DataFrame(rows).drop(columns=["label"]).to_csv(unlabelled, index=False)
    assert [o.label for o in read_manifest(unlabelled, require_label=False)] == [None, None]


def test_real_rgb_slices_load_with_labels(real_data_dir):
    records = read_rgb_slices(real_data_dir / RGB_INDEX)
    assert len(records) == 96
    assert sum(r.label for r in records) == 48
    assert sum(len(r.rgb_paths) for r in records) == 766
    assert {r.split for r in records} == {"test", "val"}
    assert {r.site for r in records} == {"spy1", "spy2"}
    first = next(r for r in records if r.pid == "ACRIN-6698-102212")
    assert first.label == 0 and first.rgb_slice_index == (7, 11, 15, 19, 22, 26, 30, 34)
    assert first.extra["rgb_bboxes"][0] == (62, 37, 62, 139)
    img = read_rgb(first.rgb_paths[0])
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    assert not (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]))
    index = pd.read_csv(real_data_dir / RGB_INDEX)
    her2 = index.groupby("pid")["her2"].first()
    assert all(her2[r.pid] == r.label for r in records)


def test_rgb_split_map(real_data_dir):
    records = read_rgb_slices(real_data_dir / RGB_INDEX, split_map={"test": "test", "val": "train"})
    assert {r.split for r in records} == {"test", "train"}
    with pytest.raises(ValueError, match="split_map"):
        read_rgb_slices(real_data_dir / RGB_INDEX, split_map={"val": "validation"})


def test_nrrd_reader(real_data_dir):
    img = real_data_dir / "pyradiomics_breast1/data/breast1_image.nrrd"
    lab = real_data_dir / "pyradiomics_breast1/data/breast1_label.nrrd"
    vol = read_volume(img, axis_order="xyz")
    assert vol.shape == (21, 120, 45) and vol.dtype == np.float32
    assert 6 <= vol.min() and vol.max() <= 248
    mask = read_mask(lab, axis_order="xyz")
    assert int(mask.sum()) == 143
    assert set(np.flatnonzero(mask.any(axis=(1, 2)))) == {8, 9, 10}
    sp = read_header_spacing(img, axis_order="xyz")
    assert sp[0] == pytest.approx(2.1, abs=1e-3) and sp[1] == pytest.approx(0.664, abs=1e-3)


def test_float64_nifti_is_read_as_float32(tmp_path):
    import nibabel as nib

    arr = np.arange(4 * 5 * 6, dtype=np.float64).reshape(4, 5, 6) * 100  # uint16 values stored as float64
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))
    out = read_volume(path)
    assert out.dtype == np.float32 and out.shape == (4, 5, 6)
    np.testing.assert_array_equal(out, arr.astype(np.float32))
    assert read_volume(path, dtype="uint16").dtype == np.uint16
    with pytest.raises(ValueError, match="float64"):
        read_volume(path, dtype="float64")
