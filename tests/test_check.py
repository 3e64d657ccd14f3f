"""her2mri-check (issue 14 item 4) and the clear training errors for three malformed inputs."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from _helpers import TINY_PREPROCESS, compose_config

from her2mri.data.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = [*TINY_PREPROCESS, "data.progress=false", "data.num_workers=0"]


def _copy(synthetic_cohort, dest: Path) -> tuple[Path, Path]:
    root, csv_path = synthetic_cohort
    shutil.copytree(root, dest)
    return dest, dest / csv_path.relative_to(root)


def _edit(path: Path, fn) -> None:
    img = nib.load(path)
    nib.save(nib.Nifti1Image(fn(np.asarray(img.dataobj)), img.affine), path)


def _phase_file(root: Path, pid: str, k: int) -> Path:
    return next(root.rglob(f"{pid}_spy2_vis1_dce_aqc_{k}.nii.gz"))


def _mask_file(root: Path, pid: str) -> Path:
    return next(root.rglob(f"{pid}_spy2_vis1_mask.nii.gz"))


def _bad_mask(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.int16)
    a[a > 0] = 7
    a[0, 0, 0] = -3
    return a


def _non_numeric_phase(csv_path: Path, pid: str) -> None:
    df = pd.read_csv(csv_path, dtype=str)
    df.loc[df["pid"] == pid, "post_early"] = "two"
    df.to_csv(csv_path, index=False)


def _pids(csv_path: Path) -> list[str]:
    return pd.read_csv(csv_path, dtype=str)["pid"].tolist()


def test_one_check_lists_every_fault(synthetic_cohort, tmp_path):
    root, meta = _copy(synthetic_cohort, tmp_path / "bad")
    p = _pids(meta)
    _edit(_phase_file(root, p[0], 0), np.zeros_like)  # all-zero pre-contrast volume
    _edit(_mask_file(root, p[2]), _bad_mask)  # mask with values 7 and -3
    _edit(_phase_file(root, p[3], 0), lambda a: np.where(a > a.mean(), np.nan, a.astype(np.float32)))  # NaN
    _non_numeric_phase(meta, p[5])  # post_early = "two"
    _mask_file(root, p[6]).unlink()  # no mask: the tumour cannot be located
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "her2mri.cli.check", "data=breastdcedl", f"data.root={root}",
         f"data.metadata_csv={meta}", *TINY, f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={out}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    text = res.stdout
    expected = {
        p[0]: "is all zero",
        p[2]: "values other than 0 and 1 (-3, 7",
        p[3]: "NaN",
        p[5]: "column post_early='two' is not a number",
    }
    with (out / "problems.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for pid, phrase in expected.items():
        hits = [r for r in rows if r["case"] == pid and phrase in r["problem"] and r["severity"] == "error"]
        assert hits, (pid, phrase, rows)
        assert phrase in text and pid in text
    # the missing mask: the reader skips the case without a mask file, or the check names it
    assert any(p[6] in r["case"] or p[6] in r["problem"] for r in rows), rows
    # the file column names the broken file, the summary and the class balance are printed
    zero = next(r for r in rows if r["case"] == p[0])
    assert zero["file"].endswith(f"{p[0]}_spy2_vis1_dce_aqc_0.nii.gz")
    assert "per split" in text and "class balance per split and site" in text
    assert "case" in text.splitlines()[1] and "severity" in text.splitlines()[1]


def test_clean_cohort_passes(synthetic_cohort, tmp_path):
    from her2mri.runs.check import check

    root, meta = synthetic_cohort
    cfg = compose_config(
        "check", [*cfg_overrides(root, meta, tmp_path), f"paths.output_dir={tmp_path / 'o'}"]
    )
    report, code = check(cfg)
    assert report.n_errors == 0 and code == 0, report.problems
    assert report.n_cases == 12 and sum(s["patients"] for s in report.summary.values()) == 12
    assert (tmp_path / "o" / "check_report.json").is_file()
    cfg_strict = compose_config("check", [*cfg_overrides(root, meta, tmp_path), "strict=true",
                                          f"paths.output_dir={tmp_path / 'o2'}"])  # fmt: skip
    _, strict_code = check(cfg_strict)
    assert strict_code == int(report.n_warnings > 0)


def cfg_overrides(root: Path, meta: Path, tmp_path: Path) -> list[str]:
    return ["data=breastdcedl", f"data.root={root}", f"data.metadata_csv={meta}", *TINY,
            f"paths.cache_dir={tmp_path / 'c'}"]  # fmt: skip


def test_check_takes_the_train_options():
    train = compose_config("train", ["data=manifest", "data.manifest_csv=/m.csv", "preprocess=zscore"])
    check = compose_config("check", ["data=manifest", "data.manifest_csv=/m.csv", "preprocess=zscore"])
    assert check.data == train.data and check.preprocess == train.preprocess and check.task_name == "check"


@pytest.mark.parametrize("fault", ["zero", "mask", "phase"])
def test_training_gives_a_clear_error(fault, synthetic_cohort, tmp_path):
    from her2mri.runs.train import train

    root, meta = _copy(synthetic_cohort, tmp_path / "c")
    pid = _pids(meta)[0]
    if fault == "zero":
        _edit(_phase_file(root, pid, 0), np.zeros_like)
        match = rf"{pid}_spy2_vis1_dce_aqc_0\.nii\.gz: pre phase of case {pid} is all zero"
    elif fault == "mask":
        _edit(_mask_file(root, pid), _bad_mask)
        match = rf"{pid}_spy2_vis1_mask\.nii\.gz: mask has values other than 0 and 1 \(-3, 7"
    else:
        _non_numeric_phase(meta, pid)
        match = rf"pid {pid}: column post_early='two' is not a number"
    overrides = [*cfg_overrides(root, meta, tmp_path), "debug=fdr", f"paths.output_dir={tmp_path / 'run'}"]
    cfg = compose_config("train", overrides)
    with pytest.raises(DataError, match=match):
        train(cfg)
