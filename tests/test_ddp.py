"""Multi-process evaluation: 2 CPU processes (DDP, gloo) give the same patient predictions and AUC as 1
process.

The 2-process run is the real ``her2mri-eval`` CLI with ``trainer=ddp`` on the CPU, as a subprocess with a
timeout (Lightning's ``ddp`` relaunches the script for rank 1, which must never be pytest itself). The cohort
has 11 patients x 3 slices = 33 slices, so the DistributedSampler pads one rank with a repeated slice, and the
evaluation batch of 4 splits patients across ranks: the patient scores are only right when the slice
predictions of both ranks are gathered and de-duplicated before the median.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import compose_config, synthetic_overrides

from her2mri.runs.evaluate import evaluate
from her2mri.runs.train import train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def _patients(path: Path) -> dict[str, tuple[int, float, int]]:
    with path.open() as fh:
        return {r["pid"]: (int(r["label"]), float(r["prob"]), int(r["n_slices"])) for r in csv.DictReader(fh)}


def test_two_process_eval_equals_one_process(tmp_path):
    from her2mri.data.synth import make_synthetic_cohort

    cohort = make_synthetic_cohort(tmp_path / "cohort", n=11, seed=3, shape=(24, 48, 48), n_times=(6, 7))
    data = synthetic_overrides((cohort.root, cohort.metadata_csv), tmp_path)
    tiny = ["preprocess.image_size=32", "preprocess.crop_size=32", "preprocess.n_slices=3"]
    train_cfg = compose_config(
        "train",
        [
            *data,
            *tiny,
            "model=resnet34",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "test=false",
            "validate=false",
            "callbacks.progress_bar=null",
            f"paths.output_dir={tmp_path / 'train'}",
        ],
    )
    train(train_cfg)
    ckpt = tmp_path / "train" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()

    common = [*data, f"ckpt_path={ckpt}", "split=all", "data.eval_batch_size=4", "num_threads=1"]
    one = evaluate(
        compose_config("eval", [*common, "trainer.accelerator=cpu", f"paths.output_dir={tmp_path / 'one'}"])
    )

    two_dir = tmp_path / "two"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "her2mri.cli.eval",
        *common,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "trainer.sync_batchnorm=false",
        f"hydra.run.dir={two_dir}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert "distributed_backend=gloo" in log and "MEMBER: 2/2" in log  # really two processes

    two = json.loads((two_dir / "metrics.json").read_text())["metrics"]
    assert one["all/n_patients"] == two["all/n_patients"] == 11
    assert one["all/n_slices"] == two["all/n_slices"] == 33
    assert two["all/auroc_patient"] == pytest.approx(one["all/auroc_patient"], abs=1e-9)
    assert two["all/auroc_slice"] == pytest.approx(one["all/auroc_slice"], abs=1e-9)
    p1 = _patients(tmp_path / "one" / "predictions" / "all_patients.csv")
    p2 = _patients(two_dir / "predictions" / "all_patients.csv")
    assert p1.keys() == p2.keys()
    for pid in p1:
        assert p1[pid][0] == p2[pid][0] and p1[pid][2] == p2[pid][2] == 3
        assert p2[pid][1] == pytest.approx(p1[pid][1], rel=1e-5, abs=1e-6)
