"""A run killed in the middle of training and resumed with ``ckpt_path=last`` ends like an uninterrupted run.

CPU, same seed, default callbacks (which include her2mri.runs.resume.EpochSeed): 2 epochs straight vs.
a crash at the first batch of epoch 1 (after epoch 0's last.ckpt was written) and a resume from it. The final
weights, the training loss of the last epoch and the validation/test predictions must be identical.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _helpers import compose_config, synthetic_overrides

from her2mri.runs.faults import SimulatedCrash
from her2mri.runs.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _args(synthetic_cohort, tmp_path: Path) -> list[str]:
    return [
        *synthetic_overrides(synthetic_cohort, tmp_path, extra=["data.batch_size=4"]),
        "model=resnet34",
        "preprocess.image_size=32",
        "preprocess.crop_size=32",
        "preprocess.n_slices=2",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=2",
        "callbacks.progress_bar=null",
        "seed=7",
    ]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1
    return ckpt["state_dict"]


def _same_run(a: Path, b: Path, ma: dict, mb: dict) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    for key in ("train/loss_epoch", "val/auroc_patient", "val/auroc_slice", "test/auroc_slice"):
        va, vb = (math.nan if v is None else float(v) for v in (ma.get(key), mb.get(key)))
        assert va == vb or (math.isnan(va) and math.isnan(vb)), key
    for name in ("val_slices.csv", "test_slices.csv"):
        assert (a / "predictions" / name).read_text() == (b / "predictions" / name).read_text()


def test_resume_after_crash_equals_uninterrupted_run(synthetic_cohort, tmp_path):
    args = _args(synthetic_cohort, tmp_path)
    full = train(compose_config("train", [*args, f"paths.output_dir={tmp_path / 'full'}"]))

    run = tmp_path / "crashed"
    crash = [
        "+callbacks.crash._target_=her2mri.runs.faults.CrashAtEpoch",
        "+callbacks.crash.epoch=1",
        "+callbacks.crash.mode=raise",
    ]
    with pytest.raises(SimulatedCrash):
        train(compose_config("train", [*args, *crash, f"paths.output_dir={run}"]))
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"
    first = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert first["epoch"] == 0  # the crash came after epoch 0's checkpoint

    resumed = train(compose_config("train", [*args, "ckpt_path=last", f"paths.output_dir={run}"]))
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"
    _same_run(tmp_path / "full", run, full, resumed)


def test_ckpt_path_last_without_checkpoint_starts_fresh(synthetic_cohort, tmp_path):
    args = _args(synthetic_cohort, tmp_path)
    m = train(
        compose_config(
            "train", [*args, "trainer.max_epochs=1", "ckpt_path=last", f"paths.output_dir={tmp_path / 'r'}"]
        )
    )
    assert "val/auroc_patient" in m and (tmp_path / "r" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_resume_after_sigkill_cli(synthetic_cohort, tmp_path):
    """The real thing: the CLI is SIGKILLed in epoch 1; the same command with ckpt_path=last resumes."""
    args = _args(synthetic_cohort, tmp_path) + ["num_threads=1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "her2mri.cli.train", *args, f"hydra.run.dir={run}"]
    kill = ["+callbacks.crash._target_=her2mri.runs.faults.CrashAtEpoch", "+callbacks.crash.epoch=1"]
    proc = subprocess.run([*cmd, *kill], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-3000:]  # SIGKILL: nothing ran after it
    assert not (run / "metrics.json").exists()
    proc = subprocess.run(
        [*cmd, "ckpt_path=last"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads((run / "metrics.json").read_text())["metrics"]
    full = train(
        compose_config("train", [*_args(synthetic_cohort, tmp_path), f"paths.output_dir={tmp_path / 'full'}"])
    )
    _same_run(tmp_path / "full", run, full, resumed)
