"""BreastDCEDL reader: synthetic round trip, both CSV forms, real masks, naming patterns and rules."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from her2mri.data.errors import DataError
from her2mri.data.io import load_case_arrays, read_mask
from her2mri.data.readers import discover_breastdcedl, load_breastdcedl
from her2mri.data.synth import METADATA_COLUMNS, make_synthetic_cohort

REAL_CSV = Path("breastdcedl_ispy2/ISPY2/metadata_spy2_vis1_for_modeling.csv")
REAL_MASKS = Path("breastdcedl_ispy2/ISPY2/data_sample/masks")


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_synthetic_round_trip(synthetic_cohort):
    root, csv = synthetic_cohort
    meta = pd.read_csv(csv)
    assert list(meta.columns[:29]) == list(METADATA_COLUMNS)
    records = load_breastdcedl(root, csv)
    assert [r.pid for r in records] == list(meta["pid"])
    codes = {0: "train", 1: "test", 2: "val"}
    for rec, (_, row) in zip(records, meta.iterrows(), strict=True):
        assert rec.label == row["HER2pos"]
        assert rec.split == codes[row["test"]]
        assert rec.dataset == "spy2"
        assert rec.site == row["site"]
        assert rec.spacing == (row["slice_thick"], row["xy_spacing"], row["xy_spacing"])
        idx = (row["pre"], row["post_early"], row["post_late"])
        assert rec.extra["phase_indices"] == idx
        assert [p.name for p in rec.phase_paths] == [f"{rec.pid}_spy2_vis1_dce_aqc_{k}.nii.gz" for k in idx]
        assert rec.mask_path.name == f"{rec.pid}_spy2_vis1_mask.nii.gz"
        assert rec.bbox == (row["sraw"], row["eraw"], row["scol"], row["ecol"])
    assert {r.extra["phase_indices"] for r in records} == {(0, 2, 5), (0, 2, 6)}

    # arrays: what synth wrote is what the reader returns; spacing from the CSV, not the (1 mm) header
    rec = records[0]
    phases, mask, spacing = load_case_arrays(rec)
    assert phases.dtype == np.float32 and phases.shape == (3, 24, 64, 64)
    raw = np.asarray(nib.load(str(rec.phase_paths[1])).dataobj)
    np.testing.assert_array_equal(phases[1], raw.astype(np.float32))
    assert nib.load(str(rec.phase_paths[0])).header.get_zooms() == (1.0, 1.0, 1.0)
    assert spacing == rec.spacing and spacing != (1.0, 1.0, 1.0)
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    row = meta.iloc[0]
    assert (zs[0], zs[-1]) == (row["mask_start"], row["mask_end"])


def test_real_25_column_csv(real_data_dir, tmp_path):
    csv = real_data_dir / REAL_CSV
    assert len(pd.read_csv(csv).columns) == 25
    pids = {
        "ACRIN-6698-102212": 8,  # phases 0, 2, 6; test = 1
        "ISPY2-550421": 7,  # test = 0
        "ISPY2-388581": 5,  # NaN phases -> fallback (0, 2, 4)
        "ACRIN-6698-635632": 8,  # NaN test -> excluded
    }
    for pid, n in pids.items():
        for k in range(n):
            _touch(tmp_path / "dce" / f"{pid}_spy2_vis1_dce_aqc_{k}.nii.gz")
    shutil.copy(real_data_dir / REAL_MASKS / "ISPY2-550421_spy2_vis1_mask.nii.gz", tmp_path / "dce")
    with pytest.warns(UserWarning) as rec_warn:
        records = load_breastdcedl(tmp_path, csv)
    messages = " | ".join(str(w.message) for w in rec_warn)
    assert "978 (" in messages and "no phase files" in messages  # 982 rows - 4 with files
    assert "ACRIN-6698-635632" in messages and "empty 'test' cell" in messages
    assert "ISPY2-388581" in messages and "fallback" in messages
    by = {r.pid: r for r in records}
    assert set(by) == {"ACRIN-6698-102212", "ISPY2-550421", "ISPY2-388581"}
    assert by["ACRIN-6698-102212"].extra["phase_indices"] == (0, 2, 6)
    assert by["ACRIN-6698-102212"].split == "test" and by["ACRIN-6698-102212"].label == 0
    assert by["ACRIN-6698-102212"].spacing == (2.0, 0.6055, 0.6055)
    assert by["ISPY2-388581"].extra["phase_indices"] == (0, 2, 4)
    assert by["ISPY2-388581"].label == 1
    assert by["ISPY2-550421"].mask_path is not None and by["ACRIN-6698-102212"].mask_path is None
    assert by["ISPY2-550421"].bbox is None  # the old CSV has no sraw/eraw/scol/ecol

    with pytest.raises(DataError, match="no phase files"):
        load_breastdcedl(tmp_path, csv, missing="error")


def test_combined_csv_and_spy1_duke_patterns(tmp_path):
    rows = []
    for pid, ds, n in (
        ("ISPY1_1001", "spy1", 3),
        ("Breast_MRI_001", "duke", 12),
        ("ISPY2-100001", "spy2", 6),
    ):
        folder = tmp_path / pid  # one folder per patient
        for k in range(n):
            name = {
                "spy1": f"{pid}_spy1_vis1_acq{k}.nii.gz",
                "duke": f"{pid}_duke_aqc_{k}.nii.gz",
                "spy2": f"{pid}_spy2_vis1_dce_aqc_{k}.nii.gz",
            }[ds]
            _touch(folder / name)
        if ds != "duke":
            _touch(folder / f"{pid}_{ds}_vis1_mask.nii.gz")
        row = dict.fromkeys(METADATA_COLUMNS, 0)
        row.update(pid=pid, dataset=ds, slice_thick=2.0, xy_spacing=0.7, mask_start=3, mask_end=9)
        row.update(
            sraw=10, eraw=40, scol=20, ecol=60, pre=0, post_early=1 if ds == "spy1" else 2, post_late=n - 1
        )
        rows.append(row)
    rows[1]["HER2pos"] = 1
    csv = tmp_path / "BreastDCEDL_metadata.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    recs = {r.pid: r for r in load_breastdcedl(tmp_path, csv)}
    assert recs["ISPY1_1001"].dataset == "spy1" and recs["ISPY1_1001"].phase_paths[2].name.endswith(
        "acq2.nii.gz"
    )
    duke = recs["Breast_MRI_001"]
    assert duke.dataset == "duke" and duke.mask_path is None and duke.label == 1
    assert duke.bbox == (10, 40, 20, 60)
    assert duke.phase_paths[2].name == "Breast_MRI_001_duke_aqc_11.nii.gz"  # numeric sort: 11 after 9
    found = discover_breastdcedl(tmp_path)
    assert list(found["Breast_MRI_001"].acquisitions) == list(range(12))


def test_orphan_files_and_datasets_filter(synthetic_cohort, tmp_path):
    root, csv = synthetic_cohort
    meta = pd.read_csv(csv)
    short = tmp_path / "short.csv"
    meta.iloc[2:].to_csv(short, index=False)
    with pytest.warns(UserWarning, match="have files but no row"):
        records = load_breastdcedl(root, short)
    assert len(records) == len(meta) - 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_breastdcedl(root, csv, datasets=("duke",)) == []


def test_axis_order_option(tmp_path):
    cohort = make_synthetic_cohort(tmp_path, n=2, seed=1, shape=(6, 20, 24))
    rec = load_breastdcedl(cohort.root, cohort.metadata_csv, nan_split="keep")[0]
    zyx, _, _ = load_case_arrays(rec)
    rec.extra["axis_order"] = "xyz"  # pretend the file is stored (x, y, z)
    phases, mask, _ = load_case_arrays(rec)
    assert phases.shape == (3, 24, 20, 6)
    np.testing.assert_array_equal(phases[0], np.transpose(zyx[0], (2, 1, 0)))
    with pytest.raises(ValueError, match="axis_order"):
        load_breastdcedl(cohort.root, cohort.metadata_csv, axis_order="zzy")


def test_real_masks_axis0_is_z(real_data_dir):
    meta = pd.read_csv(real_data_dir / REAL_CSV).set_index("pid")
    files = sorted((real_data_dir / REAL_MASKS).glob("*_mask.nii.gz"))
    assert len(files) == 3
    for f in files:
        pid = f.name.replace("_spy2_vis1_mask.nii.gz", "")
        mask = read_mask(f)
        assert mask.dtype == np.uint8 and mask.shape[1:] == (256, 256)
        assert mask.shape[0] == meta.loc[pid, "n_z"]
        zs = np.flatnonzero(mask.any(axis=(1, 2)))
        assert (zs[0], zs[-1]) == (meta.loc[pid, "mask_start"], meta.loc[pid, "mask_end"])
        assert int(mask.sum()) == meta.loc[pid, "mask_count"]


def test_duke_case_without_mask_uses_metadata_box(tmp_path):
    from her2mri.data.prepare import preprocess_record
    from her2mri.data.preprocess_config import PreprocessConfig

    cohort = make_synthetic_cohort(tmp_path / "s", n=2, seed=2, shape=(8, 32, 32))
    meta = pd.read_csv(cohort.metadata_csv)
    duke = tmp_path / "duke"
    duke.mkdir()
    for pid in cohort.pids:
        for f in (cohort.root / "dce").glob(f"{pid}_spy2_vis1_dce_aqc_*.nii.gz"):
            k = f.name.split("_")[-1]
            shutil.copy(f, duke / f"{pid}_duke_aqc_{k}")
    meta["dataset"] = "duke"
    csv = tmp_path / "duke.csv"
    meta.to_csv(csv, index=False)
    rec = load_breastdcedl(duke, csv, nan_split="keep")[0]
    assert rec.dataset == "duke" and rec.mask_path is None
    assert rec.bbox == tuple(meta.loc[0, ["sraw", "eraw", "scol", "ecol"]])
    out = preprocess_record(rec, PreprocessConfig(image_size=16, crop_size=16.0, n_slices=2))
    assert out["images"].shape == (2, 3, 16, 16) and "masks" not in out
    z0, z1 = meta.loc[0, ["mask_start", "mask_end"]]
    assert all(z0 <= z <= z1 for z in out["slice_idx"])
    meta.drop(columns=["sraw"]).to_csv(csv, index=False)
    with pytest.raises(DataError, match="no mask file and no tumour box"):
        load_breastdcedl(duke, csv, nan_split="keep")
