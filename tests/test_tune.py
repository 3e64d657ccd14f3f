"""her2mri-tune: search space, storage URLs, trial pruning, resume, and a real PostgreSQL server.

The pruning test runs 6 tiny trials (ResNet34 at 32 px, 2 slices per patient, the 12-patient
synthetic cohort of conftest.py, 2 epochs) in two invocations of 3 trials on one SQLite study. It monitors the
per-epoch validation loss (continuous, so the median pruner has no ties to break) and minimises the last
training loss. The PostgreSQL test starts its own server with ``initdb`` / ``pg_ctl`` when they are installed
(as the ``postgres`` user when the tests run as root) and skips with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from _helpers import TINY_CPU, compose_config, synthetic_overrides

optuna = pytest.importorskip("optuna")

from her2mri.runs.tune import (  # noqa: E402
    make_pruner,
    mask_url,
    run_tune,
    search_space,
    suggest,
    trial_config,
)
from her2mri.training.pruning import OptunaPruning  # noqa: E402

TINY = [*TINY_CPU, "callbacks.progress_bar=null", "stats_n_boot=0", "test=false"]
PRUNE = [
    "model=resnet34",
    "trainer.max_epochs=2",
    "tune.direction=minimize",
    "optimized_metric=train/loss_epoch",
    "tune.monitor=val/loss",
    "tune.pruner.name=median",
    "tune.pruner.n_startup_trials=1",
    "tune.pruner.n_warmup_steps=0",
    "~tune.params",
    "+tune.params={module.optimizer.lr: 'tag(log, interval(1e-5, 1e-1))'}",
]


def test_search_space_reads_the_sweeper_syntax_and_suggests_within_bounds():
    space = search_space(
        {
            "module.optimizer.lr": "tag(log, interval(1.0e-5, 3.0e-3))",
            "model.drop_rate": "interval(0.0, 0.7)",
            "model.fusion": "choice(attention, concat, mean)",
            "data.batch_size": "choice(16, 32)",
            "trainer.max_epochs": "range(2, 10, 2)",
        }
    )
    assert type(space["module.optimizer.lr"]).__name__ == "LogUniformDistribution"
    assert type(space["model.drop_rate"]).__name__ == "UniformDistribution"
    assert space["model.fusion"].choices == ("attention", "concat", "mean")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        params = suggest(study.ask(), space)
        assert 1e-5 <= params["module.optimizer.lr"] <= 3e-3
        assert 0.0 <= params["model.drop_rate"] <= 0.7
        assert params["model.fusion"] in ("attention", "concat", "mean")
        assert params["data.batch_size"] in (16, 32)
        assert params["trainer.max_epochs"] in (2, 4, 6, 8, 10)  # inclusive, as in the sweeper
    with pytest.raises(ValueError, match="fixed values"):
        search_space({"model.drop_rate": "0.3"})


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="tune.pruner.name='hyperband'"):
        make_pruner({"name": "hyperband"})
    assert type(make_pruner({"name": "successive_halving"})).__name__ == "SuccessiveHalvingPruner"
    cfg = compose_config("tune", [f"paths.output_dir={tmp_path}"])
    with pytest.raises(ValueError, match="'model.no_such_key' is not in the config"):
        trial_config(cfg, {"model.no_such_key": 1}, tmp_path / "t")
    tcfg = trial_config(cfg, {"module.optimizer.lr": 0.01}, tmp_path / "t")
    assert tcfg.module.optimizer.lr == 0.01 and cfg.module.optimizer.lr != 0.01
    assert tcfg.paths.output_dir == str(tmp_path / "t")
    assert mask_url("postgresql://optuna:s3cret@db:5432/x") == "postgresql://optuna:***@db:5432/x"
    assert str(cfg.tune.storage).startswith("sqlite:///")


def test_pruning_callback_reports_each_epoch_and_stops_when_told():
    class Trial:
        number = 7

        def __init__(self) -> None:
            self.reports: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reports.append((value, step))

        def should_prune(self) -> bool:
            return len(self.reports) >= 2

    trial = Trial()
    cb = OptunaPruning(trial, monitor="val/loss")
    trainer = SimpleNamespace(
        sanity_checking=False,
        state=SimpleNamespace(fn="fit"),
        callback_metrics={"val/loss": 0.9},
        current_epoch=0,
        should_stop=False,
    )
    cb.on_validation_end(trainer, None)
    assert trial.reports == [(0.9, 0)] and not trainer.should_stop and cb.pruned_epoch is None
    trainer.current_epoch, trainer.callback_metrics = 1, {"val/loss": 0.8}
    cb.on_validation_end(trainer, None)
    assert trainer.should_stop and cb.pruned_epoch == 1 and cb.reported == [(0, 0.9), (1, 0.8)]
    trainer.state.fn = "validate"  # scoring the best checkpoint after fit reports nothing
    cb.on_validation_end(trainer, None)
    assert len(trial.reports) == 2
    with pytest.raises(ValueError, match="monitor=''"):
        OptunaPruning(trial, monitor="")


def test_six_trial_search_prunes_some_trials_and_resumes(synthetic_cohort, tmp_path):
    db = tmp_path / "study.db"
    base = [
        *TINY,
        *PRUNE,
        "tune.n_trials=3",
        f"tune.storage=sqlite:///{db}",
        "tune.study_name=tiny",
        *synthetic_overrides(synthetic_cohort, tmp_path, progress=False, num_workers=False, cache="c"),
    ]
    first = run_tune(compose_config("tune", [*base, f"paths.output_dir={tmp_path / 'first'}"]))
    assert first["n_trials"] == 3
    # a second invocation (as after a killed search) loads the study and adds 3 more trials
    second = run_tune(compose_config("tune", [*base, f"paths.output_dir={tmp_path / 'second'}"]))
    assert second["n_trials"] == 6
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    states = [t.state.name for t in study.trials]
    assert len(states) == 6 and set(states) <= {"COMPLETE", "PRUNED"}, states
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert pruned and complete, states
    # some trials were stopped early: fewer reported epochs than the 2 of a full trial
    assert any(len(t.intermediate_values) < 2 for t in pruned), [t.intermediate_values for t in pruned]
    assert all(len(t.intermediate_values) == 2 for t in complete)
    assert all(t.user_attrs["pruned_epoch"] == max(t.intermediate_values) for t in pruned)
    # the resumed invocation's trials ran in the new run directory, with new parameters
    assert all(Path(t.user_attrs["output_dir"]).parent.name == "second" for t in study.trials[3:])
    lrs = [t.params["module.optimizer.lr"] for t in study.trials]
    assert len(set(lrs)) == 6
    assert second["best"]["value"] == pytest.approx(min(t.value for t in complete))
    for out in ("tune_summary.json", "trials.csv", "intermediate_values.png"):
        assert (tmp_path / "second" / out).is_file()


# ---------------------------------------------------------------------- PostgreSQL
def _pg_bin(name: str) -> str | None:
    for cand in (f"/usr/local/bin/{name}", shutil.which(name)):
        if cand and Path(cand).is_file():
            return cand
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1 (trust auth); its URL."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl and _pg_bin("postgres")):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed")
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed: pip install 'her2mri[postgres]'")
    prefix: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="her2mri-pg-", dir="/tmp"))
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(data, ignore_errors=True)
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        os.chown(data, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    log = data / "server.log"
    pgdata = data / "db"
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off"
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(pgdata), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(pgdata), "-m", "immediate", "stop"], capture_output=True, timeout=60
        )
        shutil.rmtree(data, ignore_errors=True)


def test_postgresql_storage_through_the_cli(postgres_url, synthetic_cohort, tmp_path):
    args = [
        *TINY,
        "model.name=thda_resnet18",
        "trainer.max_epochs=1",
        "tune.n_trials=2",
        "tune.study_name=pg",
        f"tune.storage={postgres_url}",
        "tune.heartbeat_s=30",
        *synthetic_overrides(synthetic_cohort, tmp_path, progress=False, num_workers=False, cache="c"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "her2mri.cli.tune", *args, f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert "study pg (postgresql://postgres@127.0.0.1" in proc.stdout
    # another client (this process) sees the study on the server
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    assert {"module.optimizer.lr", "model.drop_rate", "model.fusion"} <= set(study.trials[0].params)
    assert (tmp_path / "run" / "tune_summary.json").is_file()
