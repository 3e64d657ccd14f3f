"""Multirun sweeps through the real CLI (subprocesses): grid sweeps, fault tolerance, Optuna resume,
summaries.

Every job is tiny (ResNet34 or THDA-ResNet18 at 32 px, 2 slices per patient, fast_dev_run or one short
epoch on
the 12-patient synthetic cohort of conftest.py). The default set runs one seed sweep with a failing setting;
each sweep config of her2mri/conf/ with two jobs and the Optuna resume are marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import TINY_CPU, synthetic_overrides

from her2mri.runs.summary import collect_runs, summarize

TIMEOUT = 600
TINY = TINY_CPU


def _data(synthetic_cohort, tmp_path: Path) -> list[str]:
    """The synthetic-cohort overrides without data.progress / data.num_workers (TINY sets them)."""
    return synthetic_overrides(synthetic_cohort, tmp_path, progress=False, num_workers=False, cache="c")


def _cli(app: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", f"her2mri.cli.{app}", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def _jobs(sweep_dir: Path) -> list[dict]:
    """metrics.json of every job of a multirun, in job order."""
    dirs = sorted(
        (d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name)
    )
    return [json.loads((d / "metrics.json").read_text()) for d in dirs]


def test_seed_sweep_goes_on_after_a_failed_job_and_is_summarised(synthetic_cohort, tmp_path):
    """sweep=seeds (2 seeds) x a batch size that fails: the multirun finishes, failures are listed."""
    mr = tmp_path / "mr"
    _cli(
        "train",
        [
            "-m",
            "sweep=seeds",
            "seed=0,1",
            "data.batch_size=4,0",
            "debug=fdr",
            "model=resnet34",
            *TINY,
            *_data(synthetic_cohort, tmp_path),
            f"hydra.sweep.dir={mr}",
        ],
        tmp_path,
    )
    jobs = _jobs(mr)
    assert len(jobs) == 4
    # every job keeps its resolved config (Hydra's .hydra/ and inside metrics.json)
    assert all((mr / str(i) / ".hydra" / "config.yaml").is_file() for i in range(4))
    assert all(j["config"]["model"]["name"] == "resnet34" for j in jobs)
    ok = [j for j in jobs if j["status"] == "ok"]
    failed = [j for j in jobs if j["status"] == "failed"]
    assert sorted(j["config"]["seed"] for j in ok) == [0, 1]
    assert len(failed) == 2 and all("batch_size=0" in j["error"] for j in failed)
    _, groups, text = summarize([mr])
    good = next(g for g in groups if g.setting == "data.batch_size=4")
    assert good.n_runs == 2 and good.seeds == [0, 1]
    assert "Failed or unfinished runs (2)" in text and "batch_size=0" in text
    assert (mr / "summary.csv").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["sweep=seeds", "seed=3,4"], "seed"),
        (["sweep=norms", "preprocess=minmax_global,clip_channel_q98"], "preprocess"),
        (["sweep=folds", "data.fold=0,1", "data.n_folds=3"], "data.fold"),
    ],
    ids=["seeds", "norms", "folds"],
)
def test_each_sweep_config_with_two_jobs(synthetic_cohort, tmp_path, args, key):
    mr = tmp_path / "mr"
    _cli(
        "train",
        [
            "-m",
            *args,
            "debug=fdr",
            "model=resnet34",
            *TINY,
            *_data(synthetic_cohort, tmp_path),
            f"hydra.sweep.dir={mr}",
            f"paths.log_dir={tmp_path}",
        ],
        tmp_path,
    )
    jobs = _jobs(mr)
    assert [j["status"] for j in jobs] == ["ok", "ok"]
    runs = collect_runs([mr])
    assert len({r.overrides[key] for r in runs}) == 2
    if key == "data.fold":
        split_file = tmp_path / "splits" / "breastdcedl_k3_seed0.json"
        assert split_file.is_file()  # written once by the Hydra callback before the jobs
        assert {j["config"]["data"]["split_file"] for j in jobs} == {str(split_file)}
        folds = json.loads(split_file.read_text())["folds"]
        assert not set(folds["0"]["test"]) & set(folds["1"]["test"])
    if key == "preprocess":
        assert sorted(j["config"]["preprocess"]["normalization"] for j in jobs) == [
            "clip_channel_q98",
            "minmax_global",
        ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("experiment", "params", "model"),
    [
        (
            "norm_ablation",
            ["preprocess=zscore", "preprocess.n4=false,true"],
            "thda_resnet18",
        ),
        ("aggregation_ablation", ["module.aggregation=mean,max"], "thda_resnet18"),
    ],
    ids=["norm_ablation", "aggregation_ablation"],
)
def test_ablation_experiments_with_two_jobs(synthetic_cohort, tmp_path, experiment, params, model):
    mr = tmp_path / "mr"
    _cli(
        "train",
        [
            "-m",
            f"experiment={experiment}",
            *params,
            "debug=fdr",
            f"model.name={model}",
            "model.pretrained=false",
            *TINY,
            *_data(synthetic_cohort, tmp_path),
            f"hydra.sweep.dir={mr}",
        ],
        tmp_path,
    )
    jobs = _jobs(mr)
    assert [j["status"] for j in jobs] == ["ok", "ok"]
    assert all("paper" in j["config"]["tags"] for j in jobs)
    if experiment == "norm_ablation":
        assert [j["config"]["preprocess"]["n4"] for j in jobs] == [False, True]
    else:
        assert [j["config"]["module"]["aggregation"] for j in jobs] == ["mean", "max"]


@pytest.mark.slow
def test_optuna_study_resumes_from_its_sqlite_storage(synthetic_cohort, tmp_path):
    optuna = pytest.importorskip("optuna")
    db = tmp_path / "study.db"
    args = [
        "sweep=optuna_thda",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage=sqlite:///{db}",
        "hydra.sweeper.study_name=tiny",
        "model.name=thda_resnet18",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "data.eval_batch_size=64",
        "callbacks.progress_bar=null",
        *TINY,
        *_data(synthetic_cohort, tmp_path),
    ]
    _cli("train", [*args, f"hydra.sweep.dir={tmp_path / 'first'}"], tmp_path)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2
    # a second invocation (as after a killed search) loads the study and adds n_trials more
    _cli("train", [*args, f"hydra.sweep.dir={tmp_path / 'second'}"], tmp_path)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    assert len(study.trials) == 4
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert {"module.optimizer.lr", "model.fusion"} <= set(study.trials[0].params)
    assert study.direction.name == "MAXIMIZE"
    lrs = [t.params["module.optimizer.lr"] for t in study.trials]
    jobs = _jobs(tmp_path / "first") + _jobs(tmp_path / "second")
    assert [j["config"]["module"]["optimizer"]["lr"] for j in jobs] == pytest.approx(lrs)
