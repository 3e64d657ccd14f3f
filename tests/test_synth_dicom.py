"""her2mri-synth --format dicom -> her2mri-import: the NIfTI cohort's voxels, phases, masks and labels."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from her2mri.data.io import load_case_arrays, read_mask, read_volume
from her2mri.data.manifest import read_manifest
from her2mri.data.synth import make_synthetic_cohort

pytest.importorskip("pydicom", reason="pydicom is not installed (pip install 'her2mri[dicom]')")


def test_synth_dicom_roundtrip_through_import(tmp_path):
    env = os.environ.copy()
    synth = [
        sys.executable,
        "-m",
        "her2mri.cli.synth",
        str(tmp_path / "dicom"),
        "--n",
        "3",
        "--seed",
        "4",
        "--shape",
        "4",
        "16",
        "16",
        "--n-times",
        "4",
        "--dicom",
        "--dicom-layout",
        "mixed",
        "--quiet",
    ]
    res = subprocess.run(synth, capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0, res.stderr
    imp = [
        sys.executable,
        "-m",
        "her2mri.cli.import_dicom",
        str(tmp_path / "dicom"),
        str(tmp_path / "cohort"),
        "--labels",
        str(tmp_path / "dicom" / "labels.csv"),
        "--quiet",
    ]
    res = subprocess.run(imp, capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0, res.stderr
    assert "imported 3 case(s) (3 with a mask)" in res.stdout
    ref = make_synthetic_cohort(
        tmp_path / "nifti", n=3, seed=4, shape=(4, 16, 16), n_times=4, layout="patient"
    )
    meta = pd.read_csv(ref.metadata_csv).set_index("pid")
    manifest = tmp_path / "cohort" / "manifest.csv"
    assert sorted(pd.read_csv(manifest)["layout"]) == ["series", "temporal", "times"]
    for rec in read_manifest(manifest):
        m = meta.loc[rec.pid]
        assert rec.label == m["HER2pos"] and rec.site == m["site"]
        assert rec.spacing == pytest.approx((m["slice_thick"], m["xy_spacing"], m["xy_spacing"]))
        phases, mask, _ = load_case_arrays(rec, dtype=None)
        src = ref.root / rec.pid
        for c, k in enumerate((m["pre"], m["post_early"], m["post_late"])):
            np.testing.assert_array_equal(
                phases[c], read_volume(src / f"{rec.pid}_spy2_vis1_dce_aqc_{k}.nii.gz", dtype=None)
            )
        np.testing.assert_array_equal(mask, read_mask(src / f"{rec.pid}_spy2_vis1_mask.nii.gz"))
