"""Synthetic cohort: layout, metadata, determinism, planted kinetic signal, CLI."""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from her2mri.cli.synth import main as synth_main
from her2mri.data.io import load_case_arrays
from her2mri.data.readers import load_breastdcedl
from her2mri.data.synth import METADATA_COLUMNS, make_synthetic_cohort


def _digest(root):
    h = hashlib.sha1()
    for p in sorted(root.rglob("*.nii.gz")):
        h.update(p.name.encode())
        h.update(np.asarray(nib.load(str(p)).dataobj).tobytes())
    h.update((root / "metadata.csv").read_bytes())
    return h.hexdigest()


def test_layout_and_metadata(synthetic_cohort):
    root, csv = synthetic_cohort
    meta = pd.read_csv(csv)
    assert list(meta.columns) == [*METADATA_COLUMNS, "site"]
    assert len(meta) == 12 and meta["HER2pos"].sum() == 5
    assert set(meta["dataset"]) == {"spy2"} and set(meta["test"]) == {0, 1, 2}
    assert set(meta["site"]) <= {"A", "B", "C"}
    for _, row in meta.iterrows():
        files = sorted((root / "dce").glob(f"{row.pid}_spy2_vis1_dce_aqc_*.nii.gz"))
        assert len(files) == row.n_times and row.post_late == row.n_times - 1
        mask_file = root / "mask" / f"{row.pid}_spy2_vis1_mask.nii.gz"
        img = nib.load(str(files[0]))
        assert img.shape == (row.n_z, row.n_xy, row.n_xy) == (24, 64, 64)
        assert np.array_equal(img.affine, np.eye(4)) and img.header.get_zooms() == (1.0, 1.0, 1.0)
        assert img.get_data_dtype() == np.uint16
        mask = np.asarray(nib.load(str(mask_file)).dataobj)
        assert set(np.unique(mask)) == {0, 1}
        zs, rs, cs = np.nonzero(mask)
        assert (zs.min(), zs.max(), rs.min(), rs.max(), cs.min(), cs.max()) == tuple(
            row[["mask_start", "mask_end", "sraw", "eraw", "scol", "ecol"]]
        )
        assert row.tum_vol == pytest.approx(mask.sum() * row.xy_spacing**2 * row.slice_thick / 1000)
        assert row.HER2 == row.HER2pos and row.HR_HER2_STATUS in {"HER2pos", "HRposHER2neg", "TripleNeg"}
        assert (row.HR_HER2_STATUS == "HER2pos") == bool(row.HER2pos)


def test_deterministic_per_seed(tmp_path):
    kw = {"n": 3, "shape": (6, 24, 24)}
    a = make_synthetic_cohort(tmp_path / "a", seed=5, **kw)
    b = make_synthetic_cohort(tmp_path / "b", seed=5, **kw)
    c = make_synthetic_cohort(tmp_path / "c", seed=6, **kw)
    assert _digest(a.root) == _digest(b.root) != _digest(c.root)


def test_planted_signal_is_learnable_not_trivial(tmp_path):
    cohort = make_synthetic_cohort(tmp_path, n=40, seed=0, shape=(10, 32, 32), n_times=(6, 7))
    washout = []
    for rec in load_breastdcedl(cohort.root, cohort.metadata_csv):
        phases, mask, _ = load_case_arrays(rec)
        pre, e, late = (float(np.median(p[mask > 0])) for p in phases)
        washout.append((e - late) / max(e - pre, 1.0))  # > 0: late lower than early
    auc = roc_auc_score(cohort.labels, washout)
    assert 0.7 <= auc < 1.0, auc  # learnable, not trivial
    # sites differ in gain: raw intensities are not comparable between sites
    truth = pd.read_csv(cohort.truth_csv)
    assert set(truth["site"]) == {"A", "B", "C"}


def test_per_patient_layout_and_float64(tmp_path):
    c = make_synthetic_cohort(tmp_path, n=2, seed=0, shape=(5, 16, 16), layout="patient", dtype="float64")
    files = sorted((tmp_path / c.pids[0]).glob("*.nii.gz"))
    assert len(files) == 7  # 6 acquisitions + mask
    img = nib.load(str(files[0]))
    assert img.get_data_dtype() == np.float64
    arr = np.asarray(img.dataobj)
    np.testing.assert_array_equal(arr, np.round(arr))  # uint16-valued, as the real release
    recs = load_breastdcedl(c.root, c.metadata_csv, nan_split="keep")
    assert len(recs) == 2 and load_case_arrays(recs[0])[0].dtype == np.float32


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n=1"):
        make_synthetic_cohort(tmp_path, n=1)
    with pytest.raises(ValueError, match="shape="):
        make_synthetic_cohort(tmp_path, n=2, shape=(2, 8, 8))
    with pytest.raises(ValueError, match="pos_fraction"):
        make_synthetic_cohort(tmp_path, n=2, pos_fraction=1.5)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert synth_main([str(out), "--n", "3", "--seed", "1", "--shape", "6", "20", "20", "--quiet"]) == 0
    assert "wrote 3 patients" in capsys.readouterr().out
    assert len(pd.read_csv(out / "metadata.csv")) == 3
    assert len(list((out / "dce").glob("*.nii.gz"))) == 18
    assert synth_main([str(out), "--n", "0"]) == 2
    assert "n=0" in capsys.readouterr().err
