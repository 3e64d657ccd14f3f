"""External validation: her2mri-eval over several checkpoints, ensembles, per-site metrics."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import compose_config, synthetic_overrides

from her2mri.runs.evaluate import evaluate_ensemble
from her2mri.runs.train import train
from her2mri.training.metrics import binary_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def two_checkpoints(synthetic_cohort, tmp_path_factory) -> tuple[list[Path], Path]:
    """Two tiny ResNet34 checkpoints (different seeds and slice counts) trained on the synthetic cohort."""
    tmp = tmp_path_factory.mktemp("ens")
    torch.set_num_threads(1)
    paths = []
    for i, n_slices in enumerate((2, 3)):
        cfg = compose_config(
            "train",
            [
                *synthetic_overrides(synthetic_cohort, tmp),
                "model=resnet34",
                "preprocess.image_size=32",
                "preprocess.crop_size=32",
                f"preprocess.n_slices={n_slices}",
                "trainer.accelerator=cpu",
                "trainer.max_epochs=1",
                "trainer.limit_train_batches=2",
                "validate=false",
                "test=false",
                "callbacks.progress_bar=null",
                f"seed={i}",
                f"paths.output_dir={tmp / f'm{i}'}",
            ],
        )
        train(cfg)
        paths.append(tmp / f"m{i}" / "checkpoints" / "last.ckpt")
    return paths, tmp


def _read(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as fh:
        return {r["pid"]: r for r in csv.DictReader(fh)}


def test_ensemble_is_the_mean_of_members_with_site_metrics(synthetic_cohort, two_checkpoints, tmp_path):
    ckpts, _ = two_checkpoints
    out = tmp_path / "ens"
    cfg = compose_config(
        "eval",
        [
            *synthetic_overrides(synthetic_cohort, tmp_path),
            "ensemble=true",
            f"ckpt_paths=[{ckpts[0]},{ckpts[1]}]",
            "split=all",
            "trainer.accelerator=cpu",
            f"paths.output_dir={out}",
        ],
    )
    metrics = evaluate_ensemble(cfg)
    members = [_read(out / "members" / str(i) / "predictions" / "all_patients.csv") for i in range(2)]
    ens = _read(out / "predictions" / "all_patients.csv")
    assert len(ens) == 12 and ens.keys() == members[0].keys() == members[1].keys()
    pids = sorted(ens)
    mean = np.mean([[float(m[p]["prob"]) for p in pids] for m in members], axis=0)
    probs = np.asarray([float(ens[p]["prob"]) for p in pids])
    labels = np.asarray([int(ens[p]["label"]) for p in pids])
    np.testing.assert_allclose(probs, mean, rtol=0, atol=1e-12)
    assert metrics["all/auroc_patient"] == pytest.approx(binary_metrics(probs, labels)["auroc"])
    for i, m in enumerate(members):
        p_i = np.asarray([float(m[p]["prob"]) for p in pids])
        assert metrics[f"all/member{i}/auroc_patient"] == pytest.approx(binary_metrics(p_i, labels)["auroc"])
    # members scored 2 and 3 slices per patient: no slice-level ensemble
    assert "all/auroc_slice" not in metrics
    # the synthetic cohort has a site column: per-site metrics of the ensemble
    sites = {p: ens[p]["site"] for p in pids}
    for site in set(sites.values()):
        sel = np.asarray([sites[p] == site for p in pids])
        ref = binary_metrics(probs[sel], labels[sel])["auroc"]
        got = metrics[f"all/site_{site}/auroc_patient"]
        assert got == pytest.approx(ref, nan_ok=True)
        assert metrics[f"all/site_{site}/n_patients"] == sel.sum()
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["ensemble"] is True and payload["ckpt_paths"] == [str(c) for c in ckpts]
    assert payload["status"] == "ok"


def test_ensemble_needs_two_existing_checkpoints(synthetic_cohort, two_checkpoints, tmp_path):
    ckpts, _ = two_checkpoints
    base = [*synthetic_overrides(synthetic_cohort, tmp_path), "ensemble=true", "trainer.accelerator=cpu"]
    with pytest.raises(ValueError, match="at least two checkpoints"):
        evaluate_ensemble(
            compose_config("eval", [*base, f"ckpt_paths=[{ckpts[0]}]", f"paths.output_dir={tmp_path}/a"])
        )
    cfg = compose_config(
        "eval", [*base, f"ckpt_paths=[{ckpts[0]},{tmp_path}/nope.ckpt]", f"paths.output_dir={tmp_path}/b"]
    )
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        evaluate_ensemble(cfg)
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_eval_multirun_over_checkpoints_and_ensemble_cli(synthetic_cohort, two_checkpoints, tmp_path):
    """`her2mri-eval -m ckpt_path=a,b` (one job per checkpoint) and `ensemble=true` through the CLI."""
    ckpts, _ = two_checkpoints
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    app = [sys.executable, "-m", "her2mri.cli.eval"]
    base = [
        *synthetic_overrides(synthetic_cohort, tmp_path),
        "split=all",
        "trainer.accelerator=cpu",
        "num_threads=1",
    ]
    mr = tmp_path / "mr"
    proc = subprocess.run(
        [*app, "-m", *base, f"ckpt_path={ckpts[0]},{ckpts[1]}", f"hydra.sweep.dir={mr}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    singles = [json.loads((mr / str(i) / "metrics.json").read_text()) for i in range(2)]
    assert [s["ckpt_path"] for s in singles] == [str(c) for c in ckpts]
    run = tmp_path / "ens"
    proc = subprocess.run(
        [*app, *base, "ensemble=true", f"ckpt_paths=[{ckpts[0]},{ckpts[1]}]", f"hydra.run.dir={run}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ens = json.loads((run / "metrics.json").read_text())["metrics"]
    for i in range(2):
        assert ens[f"all/member{i}/auroc_patient"] == pytest.approx(
            singles[i]["metrics"]["all/auroc_patient"]
        )
    assert any(
        k.startswith("all/site_") for k in singles[0]["metrics"]
    )  # per-site metrics in single evals too
