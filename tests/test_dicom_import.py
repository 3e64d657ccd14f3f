"""her2mri-import: DICOM studies in three layouts -> NIfTI + manifest, geometry, phase order, PHI, errors."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from her2mri.data.dicom import PhaseRule, import_cohort, import_study, parse_phases, pseudonym
from her2mri.data.dicom_write import write_dicom_study
from her2mri.data.errors import DataError
from her2mri.data.io import load_case_arrays, read_volume
from her2mri.data.manifest import read_manifest

pydicom = pytest.importorskip("pydicom", reason="pydicom is not installed (pip install 'her2mri[dicom]')")

PHI = {
    "PatientName": "DOE^JANE^Q",
    "PatientBirthDate": "19611231",
    "InstitutionName": "Saint Example Hospital",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "PerformingPhysicianName": "CUDDY^LISA",
    "OtherPatientIDs": "OTHERID-98765",
    "AccessionNumber": "ACC55501",
    "PatientAddress": "12 Elm Street Springfield",
}
PHI_STRINGS = [
    "DOE^JANE",
    "DOE",
    "19611231",
    "Saint Example",
    "HOUSE",
    "GREGORY",
    "CUDDY",
    "OTHERID-98765",
    "ACC55501",
    "Elm Street",
]
SPACING = (2.5, 0.7, 0.8)  # (slice step, row spacing, column spacing) mm
ORIGIN = (-40.0, -30.0, 12.5)
TIMES = [140.0, 0.0, 420.0, 70.0, 280.0]  # acquisitions written out of time order (series numbers too)


def _volumes(seed: int = 0, shape=(5, 6, 7)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4000, shape).astype(np.uint16) for _ in TIMES]


def _write(tmp: Path, layout: str, row_dir=(1.0, 0.0, 0.0), pid="PAT-001", seed=0, **kw) -> tuple[Path, list]:
    vols = _volumes(seed)
    study = tmp / "src" / f"study_{layout}"
    args = dict(
        times_s=TIMES,
        spacing_zyx=SPACING,
        origin_lps=ORIGIN,
        row_dir=row_dir,
        layout=layout,
        seed=seed,
        patient={"PatientID": pid, **PHI},
        nested=True,
    )
    args.update(kw)
    write_dicom_study(vols, study, **args)
    return study, vols


def _world_lps(shape, row_dir, col_dir=(0.0, 1.0, 0.0)) -> np.ndarray:
    """LPS world coordinates (k, r, c, 3) of every written voxel, from the writer's documented geometry."""
    row, col = np.asarray(row_dir), np.asarray(col_dir)
    normal = np.cross(row, col)
    k, r, c = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (
        np.asarray(ORIGIN)
        + k[..., None] * SPACING[0] * normal
        + c[..., None] * SPACING[2] * row
        + r[..., None] * SPACING[1] * col
    )


def _scan_phi(paths: list[Path], texts: list[str] = ()) -> list[str]:
    found = []
    blobs = [(str(p), p.read_bytes()) for p in paths] + [("<stream>", t.encode()) for t in texts]
    for name, data in blobs:
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        for s in PHI_STRINGS:
            if s.encode() in data:
                found.append(f"{s} in {name}")
    return found


CASES = [  # layout, row direction, column direction, canonical (z, y, x) array from the written (k, r, c) one
    ("series", (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), lambda v: v),
    (
        "temporal",
        (-1.0, 0.0, 0.0),
        (0.0, 1.0, 0.0),
        lambda v: v[::-1, :, ::-1],
    ),  # rows along -x: slices go down
    ("times", (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), lambda v: v),
    # one multi-frame file; rows along +y (posterior), columns along -x: r runs to the right, c to posterior
    ("enhanced", (0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), lambda v: v.transpose(0, 2, 1)[:, :, ::-1]),
]


@pytest.mark.parametrize("layout,row_dir,col_dir,canonical", CASES, ids=[c[0] for c in CASES])
def test_layouts_order_values_world_coordinates(tmp_path, layout, row_dir, col_dir, canonical):
    study, vols = _write(tmp_path, layout, row_dir, col_dir=col_dir)
    row = import_study(study, tmp_path / "out")
    order = np.argsort(TIMES)
    files = row["phase_files"].split(";")
    assert row["case_id"] == "PAT-001" and len(files) == len(TIMES) and row["layout"] == layout
    assert [float(t) for t in row["acq_times_s"].split(";")] == sorted(TIMES)
    world = _world_lps(vols[0].shape, row_dir, col_dir)
    for k, f in enumerate(files):
        img = nib.load(tmp_path / "out" / f)
        data = np.asarray(img.dataobj)
        # every source voxel: its LPS position -> RAS -> voxel index of the NIfTI; the value there must match
        ras = world.reshape(-1, 3) * np.array([-1.0, -1.0, 1.0])
        ijk = np.c_[ras, np.ones(len(ras))] @ np.linalg.inv(img.affine).T
        idx = np.round(ijk[:, :3]).astype(int)
        assert np.abs(ijk[:, :3] - idx).max() < 1e-4
        np.testing.assert_array_equal(data[idx[:, 0], idx[:, 1], idx[:, 2]], vols[order[k]].reshape(-1))
    # canonical (z, y, x): x to the patient's left, y posterior, z superior
    canon = read_volume(tmp_path / "out" / row["pre"], axis_order="affine", dtype=None)
    np.testing.assert_array_equal(canon, canonical(vols[order[0]]))
    expected_spacing = SPACING if layout != "enhanced" else (SPACING[0], SPACING[2], SPACING[1])
    assert (row["spacing_z"], row["spacing_y"], row["spacing_x"]) == pytest.approx(expected_spacing)
    # default rule: pre = first, early = nearest 120 s after the first post-contrast (70 s -> 140 s),
    # late = last
    assert row["phase_indices"] == "0,2,4"
    assert _scan_phi([p for p in (tmp_path / "out").rglob("*") if p.is_file()]) == []


def test_phase_rule_and_overrides():
    times = [0.0, 60.0, 150.0, 240.0, 330.0, 420.0]
    assert PhaseRule().choose(times) == (0, 2, 5)  # 120 s after 60 s -> 180 s: 150 s is nearest
    assert parse_phases("0,2,-2").choose(times) == (0, 2, 4)
    assert parse_phases("0s").choose(times) == (0, 1, 5)
    assert parse_phases("90s,240s").choose(times) == (0, 2, 4)
    assert parse_phases(None).choose([None, None, None, None]) == (0, 1, 3)
    with pytest.raises(DataError, match="late phase index 9"):
        parse_phases((0, 1, 9)).choose(times, case="s1")
    for bad in ("0,1", "a,b,c", "-5s", (0, 1.5, 2)):
        with pytest.raises(ValueError, match="phases="):
            parse_phases(bad)


def test_cohort_manifest_reads_with_data_manifest_and_labels(tmp_path):
    _write(tmp_path, "series", pid="PAT-A", seed=1)
    _write(tmp_path, "temporal", pid="PAT-B", seed=2, row_dir=(-1.0, 0.0, 0.0))
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"patient_id": ["PAT-A", "PAT-B"], "label": [1, 0], "split": ["train", "val"]}).to_csv(
        labels, index=False
    )
    manifest = import_cohort(
        tmp_path / "src", tmp_path / "out", labels_csv=labels, site="H1", phases="0,1,-1"
    )
    recs = {r.pid: r for r in read_manifest(manifest, axis_order="affine")}
    assert set(recs) == {"PAT-A", "PAT-B"} and recs["PAT-A"].label == 1 and recs["PAT-B"].split == "val"
    assert recs["PAT-A"].site == "H1" and recs["PAT-A"].spacing == pytest.approx(SPACING)
    phases, mask, spacing = load_case_arrays(recs["PAT-A"])
    order = np.argsort(TIMES)
    vols = _volumes(1)
    np.testing.assert_array_equal(phases[1], vols[order[1]].astype(np.float32))
    np.testing.assert_array_equal(phases[2], vols[order[-1]].astype(np.float32))
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())
    assert [c["layout"] for c in report["cases"]] == ["series", "temporal"]


def test_pseudonymize_cli_no_phi_anywhere(tmp_path):
    _write(tmp_path, "times", pid="MRN-7788")
    key = tmp_path / "secure" / "key.json"
    cmd = [
        sys.executable,
        "-m",
        "her2mri.cli.import_dicom",
        str(tmp_path / "src"),
        str(tmp_path / "out"),
        "--pseudonymize",
        "--salt",
        "s3cret",
        "--key-file",
        str(key),
        "--quiet",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), check=False)
    assert res.returncode == 0, res.stderr
    cid = pseudonym("MRN-7788", "s3cret")
    df = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype=str)
    assert list(df["case_id"]) == [cid] and cid.startswith("anon-")
    assert json.loads(key.read_text())["cases"] == {cid: "MRN-7788"}
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(written) >= 7  # manifest, report, 5 acquisitions (+ marker)
    assert _scan_phi(written, [res.stdout, res.stderr]) == []
    assert all(
        b"MRN-7788" not in (gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes())
        for p in written
    )
    # stable: a second import with the same key file gives the same case id
    res2 = subprocess.run(
        cmd[:-5] + ["--key-file", str(key), "--quiet"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    assert res2.returncode == 0, res2.stderr
    assert list(pd.read_csv(tmp_path / "out" / "manifest.csv", dtype=str)["case_id"]) == [cid]


def test_mask_found_by_pattern_resampled_by_world_coordinates(tmp_path):
    study, vols = _write(tmp_path, "series")
    # mask on a grid twice as fine in-plane, in RAS, covering voxel (k=2, r=3, c=4) of the images
    ras_aff = np.diag([-SPACING[2] / 2, -SPACING[1] / 2, SPACING[0], 1.0])
    ras_aff[:3, 3] = np.array(ORIGIN) * np.array([-1, -1, 1])
    m = np.zeros((14, 12, 5), np.uint8)
    m[8:10, 6:8, 2] = 1  # columns 8-9 -> image column 4, rows 6-7 -> image row 3
    nib.save(nib.Nifti1Image(m, ras_aff), study / "tumour_mask.nii.gz")
    row = import_study(study, tmp_path / "out")
    assert row["mask"] == "PAT-001/mask.nii.gz"
    rec = read_manifest(
        import_cohort(tmp_path / "src", tmp_path / "out2"), require_label=False, axis_order="affine"
    )[0]
    _, mask, _ = load_case_arrays(rec)
    assert mask is not None and list(zip(*np.nonzero(mask), strict=True)) == [(2, 3, 4)]
    far = ras_aff.copy()
    far[:3, 3] += 500.0
    nib.save(nib.Nifti1Image(m, far), study / "tumour_mask.nii.gz")
    with pytest.raises(DataError, match="does not overlap"):
        import_study(study, tmp_path / "out3")


def _files(study: Path) -> list[Path]:
    return sorted(p for p in study.rglob("IM*"))


def _errs(tmp_path, study, match):
    with pytest.raises(DataError, match=match) as err:
        import_study(study, tmp_path / "out")
    msg = str(err.value)
    assert str(study) in msg and "IM" in msg.replace(str(study), "", 1), msg
    assert not (tmp_path / "out" / "PAT-001").exists()  # nothing half-written


def test_error_no_dce_series(tmp_path):
    study, _ = _write(tmp_path, "series")
    for p in _files(study):  # keep only two acquisitions
        if pydicom.dcmread(p, stop_before_pixels=True).SeriesNumber > 101:
            p.unlink()
    _errs(tmp_path, study, "no DCE series found")


def test_error_duplicated_slice(tmp_path):
    study, _ = _write(tmp_path, "temporal")
    f = _files(study)[0]
    shutil.copy(f, f.with_name(f.name + "copy"))
    _errs(tmp_path, study, "duplicated slice")


def _edit(study: Path, pred, change) -> None:
    for p in _files(study):
        ds = pydicom.dcmread(p)
        if pred(ds):
            change(ds)
            ds.save_as(p)


def test_error_missing_slice(tmp_path):
    study, _ = _write(tmp_path, "temporal")
    _edit(
        study,
        lambda ds: abs(float(ds.ImagePositionPatient[2]) - (ORIGIN[2] + 2 * SPACING[0])) < 1e-3,
        lambda ds: ds.__setattr__("TemporalPositionIdentifier", 99),
    )
    for p in _files(study):
        if pydicom.dcmread(p, stop_before_pixels=True).TemporalPositionIdentifier == 99:
            p.unlink()
    _errs(tmp_path, study, "missing slice position")


def test_error_uneven_spacing(tmp_path):
    study, _ = _write(tmp_path, "temporal")
    top = ORIGIN[2] + 4 * SPACING[0]
    _edit(
        study,
        lambda ds: abs(float(ds.ImagePositionPatient[2]) - top) < 1e-3,
        lambda ds: ds.__setattr__("ImagePositionPatient", [ORIGIN[0], ORIGIN[1], top + 0.9]),
    )
    _errs(tmp_path, study, "uneven slice spacing")


def test_error_mixed_orientations(tmp_path):
    study, _ = _write(tmp_path, "series")
    target = _files(study)[3]
    ds = pydicom.dcmread(target)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9950042, 0.0998334]
    ds.save_as(target)
    _errs(tmp_path, study, "mixed orientations")


def test_error_acquisition_on_another_grid(tmp_path):
    study, _ = _write(tmp_path, "series")
    extra = _volumes(5)[:1]
    write_dicom_study(
        extra,
        study / "late",
        times_s=[900.0],
        spacing_zyx=SPACING,
        origin_lps=(ORIGIN[0] + 3.0, ORIGIN[1], ORIGIN[2]),
        patient={"PatientID": "PAT-001"},
        seed=9,
    )
    _errs(tmp_path, study, "another grid")


def test_dce_found_among_other_series(tmp_path):
    study, vols = _write(tmp_path, "series")
    rng = np.random.default_rng(7)
    t2 = [rng.integers(0, 900, (8, 10, 10)).astype(np.uint16)]
    write_dicom_study(
        t2,
        study / "t2",
        times_s=[-300.0],
        spacing_zyx=(3.0, 1.0, 1.0),
        patient={"PatientID": "PAT-001"},
        seed=11,
        series_description="T2 TSE",
    )
    sub = [np.abs(v.astype(int) - vols[1]).astype(np.uint16) for v in vols[:3]]  # 3 subtractions, same grid
    write_dicom_study(
        sub,
        study / "sub",
        times_s=[1000.0, 1070.0, 1140.0],
        spacing_zyx=SPACING,
        origin_lps=ORIGIN,
        patient={"PatientID": "PAT-001"},
        seed=12,
        extra={"ImageType": ["DERIVED", "SECONDARY", "SUB"]},
    )
    row = import_study(study, tmp_path / "out")
    assert row["n_phases"] == len(TIMES) and [float(t) for t in row["acq_times_s"].split(";")] == sorted(
        TIMES
    )


def test_cohort_skip_bad_study_and_several_patients(tmp_path, caplog):
    _write(tmp_path, "series", pid="GOOD-1")
    bad, _ = _write(tmp_path, "temporal", pid="BAD-1")
    first = _files(bad)[0]
    ds = pydicom.dcmread(first)
    ds.PatientID = "OTHER-2"
    ds.save_as(first)
    with pytest.raises(DataError, match="different Patient IDs"):
        import_cohort(tmp_path / "src", tmp_path / "out")
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"patient_id": ["SOMEONE-ELSE"], "label": [1]}).to_csv(labels, index=False)
    manifest = import_cohort(tmp_path / "src", tmp_path / "out", on_error="skip", labels_csv=labels)
    assert list(pd.read_csv(manifest)["case_id"]) == ["GOOD-1"]
    assert "1 case(s) have no row in" in caplog.text and "GOOD-1" in caplog.text
    assert "skipped:" in caplog.text and "different Patient IDs" in caplog.text
    assert json.loads((tmp_path / "out" / "import_report.json").read_text())["failed"] == 1
    with pytest.raises(ValueError, match="on_error="):
        import_cohort(tmp_path / "src", tmp_path / "out", on_error="ignore")
    with pytest.raises(ValueError, match="must not be inside src"):
        import_cohort(tmp_path / "src", tmp_path / "src" / "out")
