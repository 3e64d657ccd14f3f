"""her2mri-predict (issue 14 item 6): NIfTI folder, DICOM study and manifest inputs; two checkpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _helpers import compose_config, synthetic_overrides

from her2mri.runs.outputs import read_patient_predictions
from her2mri.runs.predict import build_input_manifest, parse_bbox, predict
from her2mri.viz.case_gradcam import save_case_gradcams

pytestmark = pytest.mark.usefixtures("one_thread")


def _case(synthetic_cohort, run: Path) -> tuple[str, list[int]]:
    """The first test patient of the tiny run and its (pre, early, late) acquisition indices."""
    test = read_patient_predictions(run / "predictions" / "test_patients.csv")
    meta = pd.read_csv(synthetic_cohort[1]).set_index("pid")
    pid = test.pids[0]
    return pid, [int(meta.loc[pid, c]) for c in ("pre", "post_early", "post_late")]


def _nifti_folder(synthetic_cohort, pid: str, dest: Path) -> Path:
    root = synthetic_cohort[0]
    dest.mkdir(parents=True)
    for f in sorted(root.rglob(f"{pid}_*.nii.gz")):
        shutil.copy(f, dest / f.name)
    return dest


def test_parse_bbox_and_input_errors(tmp_path):
    assert parse_bbox("3,5, 10,20,11,21") == [3, 5, 10, 20, 11, 21]
    assert parse_bbox([1, 2, 3, 4, 5, 6]) == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="bbox='1,2,3'"):
        parse_bbox("1,2,3")
    with pytest.raises(FileNotFoundError, match="input="):
        build_input_manifest(tmp_path / "nothere", tmp_path / "o")
    csv = tmp_path / "m.csv"
    csv.write_text("case_id,pre,early,late\n")
    with pytest.raises(ValueError, match="manifest CSV"):
        build_input_manifest(csv, tmp_path / "o", bbox="1,2,3,4,5,6")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="empty folder"):
        build_input_manifest(tmp_path / "empty", tmp_path / "o")


def test_nifti_folder_equals_eval_and_tta(tiny_run, synthetic_cohort, tmp_path):
    from her2mri.runs.evaluate import evaluate

    run, ckpt = tiny_run
    pid, phases = _case(synthetic_cohort, run)
    folder = _nifti_folder(synthetic_cohort, pid, tmp_path / pid)
    # tta=none: the probability her2mri-train's evaluation of the best checkpoint gave this test patient
    p0 = predict(str(ckpt), folder, tmp_path / "p0", phases=phases, axis_order="zyx", tta="none",
                 gradcam=None, progress=False)  # fmt: skip
    test = read_patient_predictions(run / "predictions" / "test_patients.csv")
    assert p0["cases"][0]["prob"] == pytest.approx(float(test.probs[0]), abs=1e-6)
    assert p0["input_kind"] == "nifti_folder" and p0["cases"][0]["case_id"] == pid
    # default tta=flip against her2mri-eval tta=flip on the same case (its manifest, split=all)
    pf = predict(str(ckpt), folder, tmp_path / "pf", phases=phases, axis_order="zyx", progress=False,
                 gradcam=save_case_gradcams)  # fmt: skip
    ev, manifest = tmp_path / "ev", tmp_path / "pf" / "input_manifest.csv"
    evaluate(compose_config("eval", [
        "data=manifest", f"data.manifest_csv={manifest}", "data.require_label=false", "data.axis_order=zyx",
        "data.num_workers=0", "data.progress=false", f"paths.cache_dir={tmp_path / 'c'}",
        f"ckpt_path={ckpt}", "split=all", "tta=flip", "trainer.accelerator=cpu", "stats_n_boot=0",
        f"paths.output_dir={ev}",
    ]))  # fmt: skip
    eval_prob = read_patient_predictions(ev / "predictions" / "all_patients.csv").probs[0]
    row = pf["cases"][0]
    assert row["prob"] == pytest.approx(float(eval_prob), abs=1e-6)
    assert row["prob"] != pytest.approx(p0["cases"][0]["prob"], abs=1e-9)  # TTA changed it
    per_t = np.asarray(row["per_checkpoint"][0]["per_transform"])
    assert per_t.shape == (3,) and row["uncertainty"] == pytest.approx(float(per_t.std()))
    # locked threshold, call and the outputs
    locked = json.loads((run / "metrics.json").read_text())["locked_threshold"]["value"]
    assert row["threshold"] == pytest.approx(locked)
    assert row["call"] == ("positive" if row["prob"] >= locked else "negative")
    df = pd.read_csv(tmp_path / "pf" / "predictions.csv")
    assert list(df.columns[:8]) == ["case_id", "prob", "threshold", "call", "uncertainty",
                                    "uncertainty_source", "n_slices", "model_card_id"]  # fmt: skip
    card = json.loads((ckpt.parent / "model_card.json").read_text())
    assert df.loc[0, "model_card_id"] == card["id"] and df.loc[0, "n_slices"] == 2
    png = tmp_path / "pf" / df.loc[0, "gradcam_png"]
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_checkpoints_report_their_spread(tiny_run, synthetic_cohort, tmp_path):
    run, ckpt = tiny_run
    pid, phases = _case(synthetic_cohort, run)
    folder = _nifti_folder(synthetic_cohort, pid, tmp_path / pid)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(0)
    for k, v in state["state_dict"].items():
        if k.endswith("fc.weight") or k.endswith("head.weight"):
            state["state_dict"][k] = v + 0.5 * torch.randn(v.shape, generator=gen)
    other = tmp_path / "other.ckpt"
    torch.save(state, other)
    kw = {"phases": phases, "axis_order": "zyx", "tta": "none", "gradcam": None, "progress": False}
    a = predict(str(ckpt), folder, tmp_path / "a", **kw)["cases"][0]["prob"]
    b = predict(str(other), folder, tmp_path / "b", **kw)["cases"][0]["prob"]
    assert abs(a - b) > 1e-4  # the perturbed head changes the prediction
    both = predict([str(ckpt), str(other)], folder, tmp_path / "ab", **kw)["cases"][0]
    assert both["prob"] == pytest.approx((a + b) / 2, abs=1e-9)
    assert both["uncertainty"] == pytest.approx(abs(a - b) / 2, abs=1e-9)  # SD of two values
    assert both["uncertainty_source"] == "sd over 2 checkpoints"
    assert len(both["model_card_id"].split(";")) == 2


def test_dicom_study_gives_the_same_probability(tiny_run, synthetic_cohort, tmp_path):
    import nibabel as nib

    from her2mri.data.dicom_write import write_dicom_study
    from her2mri.data.geometry import dicom_affine_lps, lps_to_ras
    from her2mri.data.io import read_mask, read_volume

    run, ckpt = tiny_run
    pid, phases = _case(synthetic_cohort, run)
    root = synthetic_cohort[0]
    meta = pd.read_csv(synthetic_cohort[1]).set_index("pid")
    files = sorted(root.rglob(f"{pid}_spy2_vis1_dce_aqc_*.nii.gz"), key=lambda p: int(p.name[-8]))
    vols = [read_volume(f, dtype=None) for f in files]
    spacing = (float(meta.loc[pid, "slice_thick"]),) + (float(meta.loc[pid, "xy_spacing"]),) * 2
    study = tmp_path / "dicom" / pid
    write_dicom_study(vols, study, times_s=[90.0 * k for k in range(len(vols))], spacing_zyx=spacing,
                      layout="times", patient={"PatientID": pid, "PatientName": "DOE^JANE"}, seed=3,
                      nested=True)  # fmt: skip
    mask = read_mask(next(root.rglob(f"{pid}_spy2_vis1_mask.nii.gz")))
    affine = lps_to_ras(dicom_affine_lps((0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0), spacing[1:], spacing[0]))
    nib.save(
        nib.Nifti1Image(np.ascontiguousarray(mask.transpose(2, 1, 0)), affine),
        str(study / "tumour_mask.nii.gz"),
    )
    res = subprocess.run(
        [sys.executable, "-m", "her2mri.cli.predict", f"ckpt_path={ckpt}", f"input={study}",
         f"out={tmp_path / 'pd'}", f"phases=[{','.join(map(str, phases))}]", "tta=none", "progress=false",
         "num_threads=1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    payload = json.loads((tmp_path / "pd" / "predictions.json").read_text())
    assert (tmp_path / "pd" / ".hydra" / "config.yaml").is_file()  # the log and .hydra/ go into out/
    assert not (tmp_path / "outputs").exists()
    assert payload["input_kind"] == "dicom"
    test = read_patient_predictions(run / "predictions" / "test_patients.csv")
    assert payload["cases"][0]["prob"] == pytest.approx(float(test.probs[0]), abs=1e-6)
    assert payload["cases"][0]["case_id"] == pid
    for f in (tmp_path / "pd").rglob("*"):  # no identifying header value reaches an output
        if f.is_file() and f.suffix in (".csv", ".json", ".log"):
            assert "DOE^JANE" not in f.read_text(errors="ignore")


def test_saved_calibration_is_applied_by_predict(tiny_run, synthetic_cohort, tmp_path):
    """Issue 16: <ckpt>.calibration.json (her2mri-eval recalibrate=/conformal_alpha=) used by prediction."""
    from her2mri.stats import fit_conformal, fit_recalibrator
    from her2mri.training.calibrator import CalibrationBundle, calibration_path, save_calibration

    run, ckpt = tiny_run
    pid, phases = _case(synthetic_cohort, run)
    folder = _nifti_folder(synthetic_cohort, pid, tmp_path / pid)
    own = tmp_path / "ck" / ckpt.name  # a copy: the shared run stays untouched
    own.parent.mkdir()
    shutil.copy(ckpt, own)
    if (ckpt.parent / "model_card.json").is_file():
        shutil.copy(ckpt.parent / "model_card.json", own.parent / "model_card.json")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    p = np.clip(0.2 + 0.6 * y + rng.normal(0, 0.2, 80), 0.01, 0.99)
    rec = fit_recalibrator(y, p, "platt")
    bundle = CalibrationBundle(rec, fit_conformal(y, rec.apply(p), 0.2), str(own), {"source": "test"})
    save_calibration(bundle, calibration_path(own))
    kw = {"phases": phases, "axis_order": "zyx", "tta": "none", "gradcam": None, "progress": False}
    auto = predict(str(own), folder, tmp_path / "auto", **kw)
    row = auto["cases"][0]
    expected = bundle.apply([row["prob"]])
    assert row["prob_recalibrated"] == pytest.approx(float(expected["prob"][0]), abs=1e-12)
    assert row["conformal_call"] == expected["call"][0]
    assert auto["calibration"]["recalibration"] == "platt" and auto["calibration"]["conformal_alpha"] == 0.2
    df = pd.read_csv(tmp_path / "auto" / "predictions.csv")
    assert {"prob_recalibrated", "conformal_call"} <= set(df.columns)
    assert row["call"] == ("positive" if row["prob"] > row["threshold"] else "negative")  # raw scale kept
    off = predict(str(own), folder, tmp_path / "off", calibration="none", **kw)
    assert off["calibration"] is None and "prob_recalibrated" not in off["cases"][0]
    with pytest.raises(ValueError, match="2 checkpoints"):
        predict([str(own), str(own)], folder, tmp_path / "x", calibration=calibration_path(own), **kw)


def test_predict_and_eval_resolve_the_checkpoint_preprocessing_alike(tiny_run, synthetic_cohort, tmp_path):
    """One function (runs.scoring.checkpoint_preprocess) gives her2mri-eval and her2mri-predict the same
    preprocessing, overrides and refusals."""
    from her2mri.data.errors import DataError
    from her2mri.runs.predict import load_checkpoint, score_checkpoint
    from her2mri.runs.scoring import checkpoint_preprocess, load_for_eval

    _, ckpt = tiny_run
    module = load_checkpoint(ckpt)
    pre = checkpoint_preprocess(module, ckpt)
    data = synthetic_overrides(synthetic_cohort, tmp_path)
    setup = load_for_eval(compose_config("eval", [*data, f"ckpt_path={ckpt}"]), ckpt)
    assert setup.datamodule.cfg.key() == pre.key()  # what eval builds its datamodule with
    assert checkpoint_preprocess(module, ckpt, {"n_slices": 1, "crop_size": None}).n_slices == 1
    module.hparams.data_spec = None  # a checkpoint not written by her2mri-train: stated, never guessed
    with pytest.raises(DataError, match="stores no preprocessing"):
        score_checkpoint(module, str(ckpt), [], progress=False)
    with pytest.warns(UserWarning, match="stores no preprocessing"):
        assert checkpoint_preprocess(module, ckpt, {"image_size": 32}).image_size == 32
