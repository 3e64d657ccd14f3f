"""Fault injection: kill -9 at random points, a full disk, concurrent runs (issue 13; docs/reliability.md).

Each kill is a real ``SIGKILL`` of a child process at a time drawn from a seeded generator; afterwards the
same command is run again (``ckpt_path=last`` for training) and its outputs are compared with those of an
uninterrupted run. A full disk is a private tmpfs of a few hundred KiB (``unshare -rm`` + ``mount``; skipped
where that is not allowed) and, in-process, a writer patched to fail with ENOSPC. The long cases are
``slow``; the default suite keeps one kill seed per fast case.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import compose_config, synthetic_overrides

from her2mri.training.checkpoint_io import is_readable_checkpoint, read_checkpoint

WORKERS = Path(__file__).with_name("_fault_workers.py")
SEEDS = (0, 1, 2)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    )
    env.update(extra)
    return env


def _start(args: list[str], cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=cwd
    )


def _kill_after(proc: subprocess.Popen, delay: float, wait_ready: bool = True) -> bool:
    """SIGKILL ``proc`` ``delay`` s after it printed READY (or after start); False when it ended first."""
    if wait_ready:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("READY"):
                break
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".her2mri-tmp", ".tmp")) or ".tmp" in p.name]


# ---------------------------------------------------------------------- checkpoint saving
@pytest.mark.parametrize(
    "seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]
)
def test_kill_during_checkpoint_saves_keeps_a_readable_checkpoint(tmp_path, seed):
    """A process saving 16 MiB checkpoints in a loop is killed at a random moment: last.ckpt stays whole."""
    from her2mri.io_utils import clean_stale_temps
    from her2mri.training.checkpoint_io import AtomicCheckpointIO, resolve_resume_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    AtomicCheckpointIO().save_checkpoint({"step": 0, "w": torch.zeros(4)}, folder / "last.ckpt")
    proc = _start([sys.executable, str(WORKERS), "save_loop", str(folder), "16"])
    assert _kill_after(proc, random.Random(seed).uniform(0.5, 3.0))
    assert is_readable_checkpoint(folder / "last.ckpt")
    ckpt = read_checkpoint(folder / "last.ckpt")
    n_temps = len(_temps(folder))
    print(f"KILL checkpoint saves seed={seed}: last.ckpt holds save #{ckpt['step']}, temps {n_temps}")
    if ckpt["step"] > 0:
        assert torch.equal(ckpt["w"], torch.full_like(ckpt["w"], float(ckpt["step"])))
    assert resolve_resume_checkpoint("last", folder) == str(folder / "last.ckpt")
    clean_stale_temps(folder)  # what the next run does at start
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]


# ---------------------------------------------------------------------- full disk
def _can_unshare_mount() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d"],
        capture_output=True,
        text=True,
    )
    return None if probe.returncode == 0 else f"cannot mount a private tmpfs here: {probe.stderr.strip()}"


def test_full_disk_for_cache_checkpoints_and_outputs(tmp_path):
    """A 384 KiB tmpfs: every writer fails with a clear ENOSPC and leaves the previous file and no temp."""
    reason = _can_unshare_mount()
    if reason:
        pytest.skip(reason)
    mount = tmp_path / "small_disk"
    mount.mkdir()
    script = f"mount -t tmpfs -o size=384k tmpfs {mount} && exec {sys.executable} {WORKERS} full_disk {mount}"
    run = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=_env())
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    res = json.loads(run.stdout.strip().splitlines()[-1])
    ck = res["checkpoint"]
    assert ck["outcome"] == "ENOSPC" and "is full" in ck["message"]
    assert ck["previous_intact"] and ck["reloaded"] and ck["files"] == ["last.ckpt"]
    cache = res["cache"]
    assert cache["outcome"] == "ENOSPC" and cache["previous_intact"]
    assert cache["complete_entries"] == cache["npz_files"] > 1  # every .npz left is complete
    assert not [f for f in cache["files"] if f.endswith(".tmp")]
    met = res["metrics"]
    assert met["outcome"] == "ENOSPC" and met["previous_intact"] and met["json_ok"]
    assert met["files"] == ["metrics.json"]


def _tiny_train_args(cohort, tmp_path: Path, epochs: int = 2) -> list[str]:
    return [
        *synthetic_overrides(cohort, tmp_path, extra=["data.batch_size=4"]),
        "model=vit_small",
        "+model.depth=1",
        "+model.embed_dim=32",
        "+model.num_heads=2",
        "model.drop_path_rate=0.0",
        "preprocess.image_size=32",
        "preprocess.crop_size=32",
        "preprocess.n_slices=2",
        "trainer.accelerator=cpu",
        f"trainer.max_epochs={epochs}",
        "trainer.log_every_n_steps=1",
        "callbacks.progress_bar=null",
        "callbacks.early_stopping=null",
        "stats_n_boot=0",
        "num_threads=1",
        "seed=11",
    ]


def test_full_disk_during_training_fails_cleanly(synthetic_cohort, tmp_path, monkeypatch):
    """Checkpoint writes fail with ENOSPC: the run fails (status failed), no partial checkpoint, no temp."""
    import her2mri.io_utils as atomic
    from her2mri.runs.train import train

    real_open = open

    class _FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def patched_open(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)
        return _FullDisk(fh) if ".ckpt." in str(path) and "w" in mode else fh

    monkeypatch.setattr(atomic, "open", patched_open, raising=False)
    run = tmp_path / "run"
    cfg = compose_config(
        "train", [*_tiny_train_args(synthetic_cohort, tmp_path, 1), f"paths.output_dir={run}"]
    )
    with pytest.raises(OSError, match="is full"):
        train(cfg)
    payload = json.loads((run / "metrics.json").read_text())
    assert payload["status"] == "failed" and "full" in payload["error"]
    assert list((run / "checkpoints").iterdir()) == []
    assert not (run / "predictions").exists()


# ---------------------------------------------------------------------- training, evaluation, preprocessing
def _cli(module: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _final_state(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]


def _same_outputs(a: Path, b: Path) -> None:
    wa, wb = _final_state(a), _final_state(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    for name in ("val_slices.csv", "test_slices.csv", "test_patients.csv"):
        assert (a / "predictions" / name).read_text() == (b / "predictions" / name).read_text(), name


@pytest.fixture(scope="module")
def reference_run(synthetic_cohort, tmp_path_factory) -> tuple[Path, list[str], float]:
    tmp = tmp_path_factory.mktemp("faults_ref")
    args = _tiny_train_args(synthetic_cohort, tmp)
    run = tmp / "ref"
    t0 = time.monotonic()
    done = subprocess.run(
        _cli("her2mri.cli.train", [*args, f"hydra.run.dir={run}"]), env=_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run, args, time.monotonic() - t0


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("seed", SEEDS)
def test_kill_during_training_then_resume_equals_uninterrupted(reference_run, tmp_path, seed):
    ref, args, wall = reference_run
    run = tmp_path / "killed"
    cmd = _cli("her2mri.cli.train", [*args, "ckpt_path=last", f"hydra.run.dir={run}"])
    delay = random.Random(seed).uniform(0.1 * wall, 0.6 * wall)
    assert _kill_after(_start(cmd), delay, wait_ready=False), "the run ended before the kill"
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*")) if (run / "checkpoints").is_dir() else []
    print(f"KILL training seed={seed} at {delay:.1f}s of {wall:.1f}s; checkpoints on disk: {ckpts}")
    if (run / "metrics.json").is_file():
        assert json.loads((run / "metrics.json").read_text())["status"] in ("ok", "failed")
    for ck in (run / "checkpoints").glob("*.ckpt") if (run / "checkpoints").is_dir() else []:
        if not ck.name.startswith("."):
            assert is_readable_checkpoint(ck), ck  # a kill never leaves a torn checkpoint
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"
    _same_outputs(ref, run)
    assert not _temps(run / "checkpoints")


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("seed", SEEDS)
def test_kill_during_evaluation_then_rerun_equals_uninterrupted(
    reference_run, synthetic_cohort, tmp_path, seed
):
    ref, _, _ = reference_run
    ckpt = json.loads((ref / "metrics.json").read_text())["ckpt_path"]
    args = [
        *synthetic_overrides(synthetic_cohort, tmp_path),
        f"ckpt_path={ckpt}",
        "trainer.accelerator=cpu",
        "stats_n_boot=0",
        "num_threads=1",
    ]
    full = tmp_path / "full"
    t0 = time.monotonic()
    assert (
        subprocess.run(
            _cli("her2mri.cli.eval", [*args, f"hydra.run.dir={full}"]), env=_env(), capture_output=True
        ).returncode
        == 0
    )
    wall = time.monotonic() - t0
    run = tmp_path / "killed"
    cmd = _cli("her2mri.cli.eval", [*args, f"hydra.run.dir={run}"])
    delay = random.Random(seed).uniform(0.1 * wall, 0.9 * wall)
    assert _kill_after(_start(cmd), delay, wait_ready=False), "the evaluation ended before the kill"
    outs = sorted(p.name for p in run.rglob("*") if p.is_file() and p.suffix in (".csv", ".json"))
    print(f"KILL evaluation seed={seed} at {delay:.1f}s of {wall:.1f}s; outputs on disk: {outs}")
    if (run / "metrics.json").is_file():
        json.loads((run / "metrics.json").read_text())  # complete JSON, never a torn file
    for csv in (run / "predictions").glob("*.csv") if (run / "predictions").is_dir() else []:
        assert csv.read_text() == (full / "predictions" / csv.name).read_text(), csv  # whole or absent
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("test_slices.csv", "test_patients.csv"):
        assert (run / "predictions" / name).read_text() == (full / "predictions" / name).read_text()
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("seed", SEEDS)
def test_kill_during_preprocessing_then_rerun_equals_uninterrupted(synthetic_cohort, tmp_path, seed):
    root, csv = synthetic_cohort
    ref_cache, cache = tmp_path / "ref", tmp_path / "cache"
    assert (
        subprocess.run(
            [sys.executable, str(WORKERS), "prepare", str(root), str(csv), str(ref_cache)],
            env=_env(),
            capture_output=True,
        ).returncode
        == 0
    )
    cmd = [sys.executable, str(WORKERS), "prepare", str(root), str(csv), str(cache)]
    delay = random.Random(seed).uniform(0.0, 2.0)
    assert _kill_after(_start(cmd), delay), "preprocessing ended before the kill"
    print(
        f"KILL preprocessing seed={seed} at {delay:.2f}s: {len(list(cache.rglob('*.npz')))} entries on disk"
    )
    for entry in cache.rglob("*.npz"):
        with np.load(entry) as z:  # every entry on disk is complete
            assert "images" in z.files
    assert subprocess.run(cmd, env=_env(), capture_output=True).returncode == 0
    ref_files = sorted(p.relative_to(ref_cache) for p in ref_cache.rglob("*.npz"))
    assert sorted(p.relative_to(cache) for p in cache.rglob("*.npz")) == ref_files
    for rel in ref_files:
        with np.load(ref_cache / rel) as a, np.load(cache / rel) as b:
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])
    assert not _temps(cache)


# ---------------------------------------------------------------------- concurrency
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_concurrent_runs_on_one_cache_and_output_root(reference_run, tmp_path):
    """Three trainings started together on one cache and one output root: three folders, same results."""
    _, args, _ = reference_run
    args = [a for a in args if not a.startswith("paths.cache_dir=")] + [
        f"paths.cache_dir={tmp_path / 'cache'}"
    ]
    cmd = _cli("her2mri.cli.train", [*args, f"paths.log_dir={tmp_path}"])
    procs = [_start(cmd, cwd=tmp_path) for _ in range(3)]
    outs = [p.communicate()[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs[0][-3000:]
    runs = sorted((tmp_path / "outputs" / "train").iterdir())
    assert len(runs) == 3
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    assert all(m["status"] == "ok" for m in metrics)
    assert metrics[0]["metrics"] == metrics[1]["metrics"] == metrics[2]["metrics"]
    for r in runs[1:]:
        _same_outputs(runs[0], r)
    assert not _temps(tmp_path / "cache")
