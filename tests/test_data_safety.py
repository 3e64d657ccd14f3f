"""Nothing lost, nothing run that the user did not ask for (issue 13 items 1, 5-9), via the run entry points.

Tiny trainings on the session's synthetic cohort (12 patients, 32 px, 1 epoch, one thread).
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from _helpers import TINY_PREPROCESS, compose_config, synthetic_overrides

from her2mri.data.build import build_datamodule, ensure_synthetic_cohort
from her2mri.data.errors import DataError
from her2mri.runs.evaluate import evaluate
from her2mri.runs.train import metric_value, train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TINY_PREPROCESS


def _train_args(cohort, tmp_path: Path, *extra: str) -> list[str]:
    return [
        *synthetic_overrides(cohort, tmp_path, extra=["data.batch_size=4"]),
        "model=resnet34",
        *TINY,
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
        "stats_n_boot=0",
        "seed=3",
        *extra,
    ]


def _status(run: Path) -> str:
    return json.loads((run / "metrics.json").read_text())["status"]


# ---------------------------------------------------------------------- item 1
def test_config_slip_never_deletes_user_data(tmp_path):
    """data.root=X without data=breastdcedl: X (real data, notes) is kept and the error says what to add."""
    user = tmp_path / "MyCohort"
    (user / "dce").mkdir(parents=True)
    (user / "dce" / "p1_spy2_vis1_acq0.nii.gz").write_bytes(b"real scan")
    (user / "notes.txt").write_text("my notes")
    cfg = compose_config(
        "train",
        ["data.root=" + str(user), f"data.metadata_csv={user}/meta.csv", f"paths.cache_dir={tmp_path}/c"],
    )
    with pytest.raises(ValueError, match="data=breastdcedl") as err:
        build_datamodule(cfg.data, {"image_size": 32}, cache_dir=cfg.paths.cache_dir)
    assert "nothing was changed" in str(err.value)
    assert (user / "notes.txt").read_text() == "my notes"
    assert (user / "dce" / "p1_spy2_vis1_acq0.nii.gz").read_bytes() == b"real scan"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MyCohort"]


def test_synthetic_cohort_only_replaces_what_her2mri_owns(tmp_path):
    kw = {"n": 4, "seed": 0, "shape": [8, 32, 32]}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (ensure_synthetic_cohort(empty, **kw) / ".her2mri_complete").is_file()
    # a cohort of her2mri with other arguments is rebuilt (it carries the marker)
    ensure_synthetic_cohort(empty, n=4, seed=1, shape=[8, 32, 32])
    assert '"seed": 1' in (empty / ".her2mri_complete").read_text()
    # inside the managed cache folder, an unmarked leftover (e.g. an old build) may be replaced
    managed = tmp_path / "cache" / "synthetic_n4_s0"
    managed.mkdir(parents=True)
    (managed / "junk").write_text("x")
    ensure_synthetic_cohort(managed, managed_dir=tmp_path / "cache", **kw)
    assert not (managed / "junk").exists() and (managed / ".her2mri_complete").is_file()
    # a build folder of a killed run (dead pid) is removed at the next start
    stale = tmp_path / "cache" / "synthetic_n4_s0.tmp999999999"
    stale.mkdir()
    ensure_synthetic_cohort(managed, managed_dir=tmp_path / "cache", **kw)
    assert not stale.exists()
    # outside: an unmarked, non-empty folder is the user's
    user = tmp_path / "user"
    user.mkdir()
    (user / "a.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a synthetic cohort made by her2mri"):
        ensure_synthetic_cohort(user, managed_dir=tmp_path / "cache", **kw)
    assert (user / "a.txt").read_text() == "keep"


# ---------------------------------------------------------------------- items 5, 7, 9 (hparams.yaml)
@pytest.fixture(scope="module")
def trained(synthetic_cohort, tmp_path_factory, one_thread_module) -> tuple[Path, dict, list[str]]:
    tmp = tmp_path_factory.mktemp("trained")
    args = _train_args(synthetic_cohort, tmp)
    run = tmp / "run"
    metrics = train(compose_config("train", [*args, f"paths.output_dir={run}"]))
    return run, metrics, args


def test_train_false_scores_the_given_checkpoint(trained, tmp_path):
    run, metrics, args = trained
    ckpt = json.loads((run / "metrics.json").read_text())["ckpt_path"]
    out = tmp_path / "rescore"
    again = train(
        compose_config("train", [*args, "train=false", f"ckpt_path={ckpt}", f"paths.output_dir={out}"])
    )
    assert _status(out) == "ok"
    for name in ("val_slices.csv", "test_slices.csv", "test_patients.csv"):
        assert (out / "predictions" / name).read_text() == (run / "predictions" / name).read_text(), name
    assert again["test/auroc_slice"] == metrics["test/auroc_slice"]
    assert "val/auroc_patient_best" in again
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").glob("*.ckpt"))


def test_train_false_without_checkpoint_fails_before_scoring(trained, tmp_path):
    _, _, args = trained
    out = tmp_path / "nockpt"
    with pytest.raises(ValueError, match="train=false needs a checkpoint"):
        train(compose_config("train", [*args, "train=false", f"paths.output_dir={out}"]))
    assert _status(out) == "failed" and not (out / "predictions").exists()


def test_wrong_optimized_metric_is_a_failed_run_not_ok(trained, tmp_path):
    _, _, args = trained
    out = tmp_path / "badmetric"
    with pytest.raises(KeyError, match="optimized_metric"):
        train(compose_config("train", [*args, "optimized_metric=val/nope", f"paths.output_dir={out}"]))
    assert _status(out) == "failed"


def test_hparams_yaml_holds_data_spec(trained):
    run, _, _ = trained
    text = (run / "csv" / "hparams.yaml").read_text()
    assert "data_spec: null" not in text and "image_size: 32" in text


def test_checkpoints_load_safely_and_carry_data_spec(trained):
    from her2mri.training.module import load_classifier

    run, _, _ = trained
    module = load_classifier(run / "checkpoints" / "last.ckpt")
    assert module.hparams.data_spec["preprocess"]["image_size"] == 32
    names = [p.name for p in (run / "checkpoints").iterdir()]
    assert "last.ckpt" in names and not [n for n in names if "tmp" in n], names  # no temporary leftovers


def test_one_class_validation_warns_at_setup_and_logs_nan_best(synthetic_cohort, tmp_path):
    root, csv = synthetic_cohort
    meta = pd.read_csv(csv)  # BreastDCEDL split column "test": 0 train, 1 test, 2 val
    neg_train = meta.index[(meta["HER2pos"] == 0) & (meta["test"] == 0)].tolist()
    meta.loc[meta["test"] == 2, "test"] = 0
    meta.loc[neg_train[:2], "test"] = 2
    assert (meta["test"] == 2).sum() == 2 and meta.loc[meta["test"] == 2, "HER2pos"].nunique() == 1
    one_class = tmp_path / "meta_one_class.csv"
    meta.to_csv(one_class, index=False)
    args = _train_args((root, one_class), tmp_path)
    out = tmp_path / "oneclass"
    with pytest.warns(UserWarning, match="val split holds one class only"):
        metrics = train(compose_config("train", [*args, f"paths.output_dir={out}"]))
    assert math.isnan(metrics["val/auroc_patient_best"])
    assert math.isnan(metric_value(metrics, "val/auroc_patient_best"))
    assert _status(out) == "ok"
    assert json.loads((out / "metrics.json").read_text())["metrics"]["val/auroc_patient_best"] is None

    from her2mri.runs.faults import failure_value

    assert failure_value("maximize") == -math.inf  # what run_task returns to a maximising sweeper for NaN


# ---------------------------------------------------------------------- items 8, 9 (eval)
def _tiny_vit_ckpt(tmp_path: Path, data_spec) -> Path:
    from her2mri.training.module import HER2Classifier

    spec = {
        "name": "vit_small",
        "img_size": 32,
        "depth": 1,
        "embed_dim": 32,
        "num_heads": 2,
        "pretrained": False,
    }
    module = HER2Classifier(spec, data_spec=data_spec, class_weights=None)
    path = tmp_path / "vit.ckpt"
    torch.save(
        {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "epoch": 0}, path
    )
    return path


def test_checkpoint_without_data_spec_is_not_scored_silently(synthetic_cohort, tmp_path):
    from her2mri.runs.scoring import load_for_eval

    ckpt = _tiny_vit_ckpt(tmp_path, None)
    base = [
        *synthetic_overrides(synthetic_cohort, tmp_path),
        f"ckpt_path={ckpt}",
        f"paths.output_dir={tmp_path}",
    ]
    with pytest.raises(DataError, match="stores no preprocessing"):
        load_for_eval(compose_config("eval", base), ckpt)
    with pytest.warns(UserWarning, match="stores no preprocessing"):
        load_for_eval(compose_config("eval", [*base, *TINY]), ckpt)


def test_vit_at_another_image_size_fails_at_once(synthetic_cohort, tmp_path):
    from her2mri.runs.scoring import load_for_eval

    ckpt = _tiny_vit_ckpt(tmp_path, {"preprocess": {"image_size": 32, "n_slices": 2, "crop_size": 32}})
    cfg = compose_config(
        "eval",
        [*synthetic_overrides(synthetic_cohort, tmp_path), f"ckpt_path={ckpt}", "preprocess.image_size=64"],
    )
    with pytest.raises(ValueError, match="preprocess.image_size=64 .* takes 32 px"):
        load_for_eval(cfg, ckpt)


def test_eval_accepts_an_export_folder(trained, synthetic_cohort, tmp_path):
    from her2mri.training.export import export_classifier

    run, metrics, _ = trained
    ckpt = json.loads((run / "metrics.json").read_text())["ckpt_path"]
    export = export_classifier(ckpt, tmp_path / "export")
    out = tmp_path / "eval"
    cfg = compose_config(
        "eval",
        [
            *synthetic_overrides(synthetic_cohort, tmp_path),
            f"ckpt_path={export}",
            "trainer.accelerator=cpu",
            "stats_n_boot=0",
            f"paths.output_dir={out}",
        ],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scored = evaluate(cfg)
    assert _status(out) == "ok"
    assert scored["test/auroc_slice"] == metrics["test/auroc_slice"]
    assert (out / "predictions" / "test_slices.csv").read_text() == (
        run / "predictions" / "test_slices.csv"
    ).read_text()
    shutil.rmtree(out)


# ------------------------------------------------------------ item 9: cache, N4, axes, report, splits
def test_bad_cache_entries_are_recomputed_with_a_warning(synthetic_cohort, tmp_path):
    import numpy as np

    from her2mri.data.cache import CaseCache, atomic_save_npz
    from her2mri.data.prepare import preprocess_record
    from her2mri.data.preprocess_config import PreprocessConfig
    from her2mri.data.readers import load_breastdcedl

    cfg = PreprocessConfig(image_size=32, crop_size=32.0, n_slices=2)
    rec = load_breastdcedl(*synthetic_cohort)[0]
    cache = CaseCache(tmp_path, cfg)
    good = cache.save(rec, preprocess_record(rec, cfg))
    path = cache.path(rec)
    atomic_save_npz(path, {"slice_idx": good["slice_idx"]})  # no 'images' key
    with pytest.warns(UserWarning, match=r"invalid cache entry \(no 'images' array"):
        assert cache.load(rec) is None
    atomic_save_npz(path, {"images": np.zeros((2, 3, 48, 48), np.uint8), "slice_idx": good["slice_idx"]})
    with pytest.warns(UserWarning, match=r"images have shape \(2, 3, 48, 48\), expected \(S, 3, 32, 32\)"):
        assert cache.load(rec) is None
    cache.save(rec, good)
    assert cache.load(rec) is not None
    stale = cache.dir / f".{path.name}.999999999.0123abcd.tmp"
    stale.write_bytes(b"partial")
    CaseCache(tmp_path, cfg)
    assert not stale.exists()


def test_corrupt_n4_cache_entry_is_recomputed(tmp_path, caplog):
    import numpy as np

    from her2mri.data.n4 import N4BiasCorrection

    rng = np.random.default_rng(0)
    vol = (rng.random((6, 16, 16)) * 100 + 50).astype(np.float32)
    n4 = N4BiasCorrection(shrink_factor=2, iterations=(2,), cache_dir=tmp_path)
    first = n4(vol, (2.0, 1.0, 1.0))
    entries = list(tmp_path.rglob("output.pkl"))  # joblib.Memory's entry
    assert len(entries) == 1 and n4.cache_misses == 1
    entries[0].write_bytes(b"garbage")
    with caplog.at_level("WARNING"):
        again = n4(vol, (2.0, 1.0, 1.0))
    assert "Exception while loading results" in caplog.text  # joblib's message: logged, then recomputed
    np.testing.assert_allclose(again, first)
    assert n4.cache_hits == 1 and list(tmp_path.rglob("output.pkl")) == entries
    np.testing.assert_allclose(
        N4BiasCorrection(shrink_factor=2, iterations=(2,), cache_dir=tmp_path)(vol, (2.0, 1.0, 1.0)), first
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore", "joblib"]  # joblib.Memory's own


def test_axes_that_look_swapped_are_warned(tmp_path):
    import nibabel as nib
    import numpy as np

    from her2mri.data.io import read_volume, warn_if_axes_look_swapped

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_axes_look_swapped((60, 128, 128), "a.nii", "zyx")
    path = tmp_path / "xyz.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 12), np.float32), np.eye(4)), path)  # stored (x, y, z)
    with pytest.warns(UserWarning, match=r"xyz\.nii\.gz: volume read with axis_order='zyx'.*axis_order=xyz"):
        read_volume(path, axis_order="zyx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_volume(path, axis_order="xyz").shape == (12, 40, 40)


def test_report_refuses_a_failed_run(tmp_path):
    from her2mri.report.collect import load_source

    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    (run / "predictions" / "test_patients.csv").write_text("pid,label,prob,n_slices\na,0,0.2,1\nb,1,0.7,1\n")
    (run / "metrics.json").write_text(json.dumps({"metrics": {}, "status": "failed", "error": "KeyError: x"}))
    with pytest.raises(DataError, match=r"status is 'failed'.*KeyError: x"):
        load_source(run)
    (run / "metrics.json").write_text(json.dumps({"metrics": {}, "status": "ok"}))
    assert list(load_source(run).test.pids) == ["a", "b"]


def test_cohort_without_split_column_suggests_split_all():
    from her2mri.data.splits import official_split

    with pytest.warns(UserWarning, match="split=all"):
        out = official_split(["a", "b"], [None, None], [0, 1], 0.2, 0)
    assert out["test"] == []


def test_run_folders_are_unique_per_process(tmp_path):
    import os
    import subprocess
    import sys

    from omegaconf import OmegaConf

    from her2mri.runs.resolvers import register_resolvers, run_uid

    register_resolvers()
    cfg = compose_config("train", [], return_hydra_config=True)
    assert cfg.hydra.run.dir.endswith(f"_{run_uid()}") and cfg.hydra.sweep.dir.endswith(f"_{run_uid()}")
    assert OmegaConf.create({"a": "${run_uid:}"}).a == run_uid() == run_uid()
    assert run_uid().startswith(f"p{os.getpid()}-")
    code = "from her2mri.runs.resolvers import run_uid; print(run_uid())"
    uids = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(3)
    }
    assert len(uids) == 3 and run_uid() not in uids
