"""her2mri performance benchmark: every figure is a ratio of two things measured side by side in one run.

Sections (``--sections``, default all):

* ``prep``: preprocessing per patient (three phases + mask -> normalised fused slices, default
  ``PreprocessConfig``) vs a bare nibabel read of the same four files (``np.asarray(img.dataobj)``); target
  <= 1.5x. Also her2mri's reader alone vs the bare read, and the traced peak memory of one patient.
* ``train``: her2mri's training loop (Lightning ``Trainer`` + ``HER2Classifier``, the project's trainer
  settings) vs a plain torch loop with the same model, batch, optimizer, scheduler and in-memory batches,
  alternated step by step, warm-up excluded, median over the steps; target >= 0.9x. Also the calls per
  step that copy device -> host on a GPU (``.item()``, ``bool(t)``, ``.cpu()``, ...), counted on any device.
* ``loader``: ``DCEDataModule`` samples/s (first epoch with a cold cache, preprocessing included, then
  cached epochs; ``num_workers`` 0 and 2, persistent workers, pinned memory on CUDA) vs the training
  throughput of ``thda_resnet34`` at the same image size; target >= 3x for cached epochs.
* ``growth``: preprocessing time, cache size and peak RSS for three cohort sizes, each in a fresh
  subprocess (one patient at a time, as ``DCEDataModule.prepare_data`` does); time and cache per patient
  must stay flat, and peak RSS must not grow with the cohort.
* ``gpu``: fp32 vs bf16 autocast vs channels_last vs ``torch.compile``: img/s and peak GPU memory (only when
  CUDA is available; otherwise the section prints "skipped: no CUDA device").
* ``cpu`` (not in the default list: ``--sections cpu``): CPU speed options for training and evaluation of
  THDA-ResNet34 and ResNet34 on the real RGB slices of ``../shared/data/real`` at 224 px, batch 16:
  her2mri's module default (``channels_last: auto``) vs channels-first, channels_last, ``torch.compile`` (CPU
  inductor), 2 threads, ``inference_mode`` vs ``no_grad``; her2mri's training samples/s beside a plain torch
  loop of the same model and batch, each training option in its own process with its peak RSS
  (tools/bench_cpu.py).
* ``cohort`` (``--sections cohort``): ``data.num_preprocess_workers`` 1 vs 2 on a BreastDCEDL-shaped cohort
  (6 acquisitions, 80x256x256): time to the first training batch and peak memory of the process tree, with
  the projection to 1,149 patients (tools/bench_cpu.py).

Synthetic cohorts come from :func:`her2mri.data.synth.make_synthetic_cohort` (uint16 NIfTI, I-SPY2 layout). A
few distinct patients are generated and larger cohorts are hard links of them under new pids (generating a
(80, 256, 256) patient takes about 6 s; reading it does not care whether its bytes were seen before).

Usage::

    python tools/bench.py --quick                  # < 5 min on 2 cores
    python tools/bench.py --json bench.json        # full run (about 14 min on 2 shared cores)
    python tools/bench.py --sections cpu --json cpu.json      # CPU speed options (about 25 min)
    python tools/bench.py --sections cohort --json cohort.json  # preprocessing workers (about 10 min)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MB = 1024.0 * 1024.0

TRAIN_MODELS_: tuple[str, ...] = ("thda_resnet34", "resnet34")
QUICK: dict[str, Any] = {
    "prep_shape": (48, 192, 192), "prep_patients": 3, "prep_repeats": 3,
    "train_plan": {96: (1, 6)}, "sync_size": 32, "sync_steps": 11,
    "loader_shape": (32, 128, 128), "loader_patients": 20, "loader_size": 96, "loader_epochs": 3,
    "growth_shape": (32, 128, 128), "growth_cohorts": (5, 10, 20), "unique": 5,
    "cpu_models": TRAIN_MODELS_, "cpu_size": 96, "cpu_steps": (1, 2), "cpu_eval_reps": 3,
    "cohort_patients": 10, "cohort_shape": (48, 192, 192), "cohort_size": 96, "cohort_repeats": 1,
}  # fmt: skip
FULL: dict[str, Any] = {
    "prep_shape": (80, 256, 256), "prep_patients": 4, "prep_repeats": 3,
    "train_plan": {96: (2, 10), 224: (1, 6)}, "sync_size": 32, "sync_steps": 11,
    "loader_shape": (80, 256, 256), "loader_patients": 40, "loader_size": 224, "loader_epochs": 3,
    "growth_shape": (80, 256, 256), "growth_cohorts": (20, 40, 80), "unique": 8,
    "cpu_models": TRAIN_MODELS_, "cpu_size": 224, "cpu_steps": (1, 3), "cpu_eval_reps": 5,
    "cohort_patients": 40, "cohort_shape": (80, 256, 256), "cohort_size": 224, "cohort_repeats": 2,
}  # fmt: skip
SECTIONS: tuple[str, ...] = ("prep", "train", "loader", "growth", "gpu", "cpu", "cohort")
DEFAULT_SECTIONS: tuple[str, ...] = ("prep", "train", "loader", "growth", "gpu")
THREAD_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
TRAIN_MODELS: tuple[str, ...] = TRAIN_MODELS_
BATCH = 16


# ---------------------------------------------------------------------------------------------- helpers
def bench_cpu() -> Any:
    """The ``cpu`` and ``cohort`` sections (tools/bench_cpu.py, imported from this file's folder)."""
    import importlib

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module("bench_cpu")


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / MB


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this program's own memory. Not
    ``getrusage``: its ``ru_maxrss`` survives ``exec`` and so includes the parent's RSS at ``fork``.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def dir_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds used by each thread of this process (Linux ``/proc``; empty elsewhere)."""
    out: dict[str, float] = {}
    task = Path("/proc/self/task")
    if not task.is_dir():
        return out
    tick = os.sysconf("SC_CLK_TCK")
    for t in task.iterdir():
        with contextlib.suppress(OSError):
            fields = (t / "stat").read_text().rsplit(")", 1)[1].split()
            out[t.name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def median(xs: list[float]) -> float:
    """Median, NaN for an empty list."""
    return float(statistics.median(xs)) if xs else float("nan")


def make_cohort(work: Path, n: int, shape: tuple[int, int, int], n_unique: int) -> tuple[Path, Path]:
    """A BreastDCEDL-layout cohort of ``n`` patients: ``n_unique`` synthetic ones, the rest hard links.

    Returns:
        ``(root, metadata_csv)``.
    """
    import pandas as pd

    from her2mri.data.synth import make_synthetic_cohort

    tag = "x".join(map(str, shape))
    uniq = work / f"unique-{tag}-{n_unique}"
    if not (uniq / "metadata.csv").is_file():
        make_synthetic_cohort(uniq, n=n_unique, seed=0, shape=shape)
    root = work / f"cohort-{tag}-{n}"
    csv = root / "metadata.csv"
    if csv.is_file():
        return root, csv
    meta = pd.read_csv(uniq / "metadata.csv")
    rows = []
    for i in range(n):
        src = meta.iloc[i % len(meta)].copy()
        pid = f"BENCH-{i:05d}"
        for sub in ("dce", "mask"):
            for f in sorted((uniq / sub).glob(f"{src['pid']}_*")):
                dst = root / sub / f.name.replace(str(src["pid"]), pid, 1)
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(f, dst)
                except OSError:
                    shutil.copyfile(f, dst)
        src["pid"] = pid
        rows.append(src)
    pd.DataFrame(rows).to_csv(csv, index=False)
    return root, csv


def load_records(root: Path, csv: Path) -> list[Any]:
    """Records of a synthetic cohort."""
    from her2mri.data.readers import load_breastdcedl

    return load_breastdcedl(root, csv)


# ---------------------------------------------------------------------------------------------- prep
def bare_read(record: Any) -> list[np.ndarray]:
    """The comparison baseline: nibabel ``np.asarray(img.dataobj)`` of the three phases and the mask."""
    import nibabel as nib

    return [np.asarray(nib.load(str(p)).dataobj) for p in (*record.phase_paths, record.mask_path)]


def section_prep(work: Path, p: dict[str, Any]) -> dict[str, Any]:
    """Preprocessing per patient vs the bare read, alternated patient by patient."""
    import tracemalloc

    from her2mri.data.io import load_case_arrays
    from her2mri.data.prepare import preprocess_record
    from her2mri.data.preprocess_config import PreprocessConfig

    cfg = PreprocessConfig()
    recs = load_records(*make_cohort(work, p["prep_patients"], p["prep_shape"], p["unique"]))
    ours = {
        "preprocess": lambda r: preprocess_record(r, cfg),
        "read_only": lambda r: load_case_arrays(r, dtype=None, contiguous=False),
    }
    for r in recs:  # warm-up: imports, page cache
        bare_read(r)
        ours["preprocess"](r)
    times: dict[str, list[float]] = {"bare": [], "preprocess": [], "read_only": []}
    ratios: dict[str, list[float]] = {"preprocess": [], "read_only": []}
    for rep in range(p["prep_repeats"]):
        for r in recs:
            order = ["bare", "preprocess", "read_only"]
            if rep % 2:
                order.reverse()
            got: dict[str, float] = {}
            for name in order:
                fn = bare_read if name == "bare" else ours[name]
                t0 = time.perf_counter()
                fn(r)
                got[name] = time.perf_counter() - t0
                times[name].append(got[name])
            for name in ratios:
                ratios[name].append(got[name] / got["bare"])
    raw_mb = sum(a.nbytes for a in bare_read(recs[0])) / MB
    tracemalloc.start()
    preprocess_record(recs[0], cfg)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "shape": list(p["prep_shape"]),
        "patients": len(recs),
        "repeats": p["prep_repeats"],
        "bare_read_s": median(times["bare"]),
        "preprocess_s": median(times["preprocess"]),
        "read_only_s": median(times["read_only"]),
        "ratio_preprocess_vs_bare": median(ratios["preprocess"]),
        "ratio_read_only_vs_bare": median(ratios["read_only"]),
        "raw_arrays_mb": raw_mb,
        "traced_peak_mb": traced_peak / MB,
        "ratio_traced_peak_vs_raw": traced_peak / MB / raw_mb,
    }


# ---------------------------------------------------------------------------------------------- train
class HostSyncCounter:
    """Counts tensor calls that copy device -> host on a GPU (``.item()``, ``bool(t)``, ``.cpu()``, ...).

    The methods of ``torch.Tensor`` are wrapped while the counter is entered and count while ``active``. On a
    CPU run the calls are cheap, but each one on a CUDA tensor is a host synchronisation, so the count per
    step (beyond the plain loop's, which has the same optimizer) tells what the loop would cost on a GPU.
    With ``sites=True`` the first frame outside torch of each call is recorded (slower; not for timing).
    """

    NAMES: tuple[str, ...] = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")

    def __init__(self, sites: bool = False) -> None:
        self.count = 0
        self.active = False
        self.record_sites = sites
        self.sites: dict[str, int] = {}
        self._orig: dict[str, Any] = {}

    def _site(self, name: str) -> str:
        import traceback

        for f in reversed(traceback.extract_stack(limit=12)[:-2]):
            if "/torch/" not in f.filename:
                return f"{name} {f.filename.split('site-packages/')[-1]}:{f.lineno} ({f.name})"
        return f"{name} torch"

    def __enter__(self) -> HostSyncCounter:
        import torch

        for name in self.NAMES:
            orig = getattr(torch.Tensor, name)
            self._orig[name] = orig

            def wrapper(t: Any, *a: Any, _orig: Any = orig, _name: str = name, **k: Any) -> Any:
                if self.active:
                    self.count += 1
                    if self.record_sites:
                        site = self._site(_name)
                        self.sites[site] = self.sites.get(site, 0) + 1
                return _orig(t, *a, **k)

            setattr(torch.Tensor, name, wrapper)
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        for name, orig in self._orig.items():
            setattr(torch.Tensor, name, orig)


def make_batches(model_name: str, size: int, n: int = 4) -> list[dict[str, Any]]:
    """In-memory batches as the DataModule yields them (``image``, ``label``, ``pid``, ``slice_idx``)."""
    import torch

    g = torch.Generator().manual_seed(0)
    views = (3,) if model_name.startswith("thda") else ()
    return [
        {
            "image": torch.randn(BATCH, *views, 3, size, size, generator=g),
            "label": torch.randint(0, 2, (BATCH,), generator=g),
            "pid": [f"p{j % 4}" for j in range(BATCH)],
            "slice_idx": torch.arange(BATCH),
        }
        for _ in range(n)
    ]


class PlainStepper:
    """A plain torch training loop, one step per call: AdamW + per-step cosine schedule, as the module."""

    def __init__(self, model: Any, total_steps: int) -> None:
        import torch

        from her2mri.training.schedulers import cosine_with_warmup

        self.model = model.train()
        self.opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
        self.sched = cosine_with_warmup(self.opt, total_steps=total_steps)

    def __call__(self, batch: dict[str, Any]) -> None:
        import torch.nn.functional as F

        loss = F.cross_entropy(self.model(batch["image"]).float(), batch["label"])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()


def plain_loop(
    model: Any, batches: list[dict[str, Any]], n_steps: int, warmup: int, sync: HostSyncCounter
) -> float:
    """Seconds of steps ``warmup .. n_steps - 1`` of a plain loop (counted by ``sync`` while active)."""
    step = PlainStepper(model, n_steps + 1)
    starts = []
    for i in range(n_steps + 1):
        starts.append(time.perf_counter())
        sync.active = warmup <= i < n_steps
        if i == n_steps:
            break
        step(batches[i % len(batches)])
    sync.active = False
    return starts[n_steps] - starts[warmup]


def trainer_kwargs() -> dict[str, Any]:
    """The project's trainer settings (her2mri/conf/trainer/default.yaml) and progress-bar refresh rate."""
    from omegaconf import OmegaConf

    t = OmegaConf.to_container(OmegaConf.load(ROOT / "her2mri" / "conf" / "trainer" / "default.yaml"))
    cb = OmegaConf.to_container(OmegaConf.load(ROOT / "her2mri" / "conf" / "callbacks" / "default.yaml"))
    set_here = ("_target_", "default_root_dir", "min_epochs", "max_epochs", "limit_train_batches",
                "limit_val_batches", "limit_test_batches", "fast_dev_run", "overfit_batches")  # fmt: skip
    kw = {k: v for k, v in t.items() if k not in set_here}
    kw["refresh_rate"] = int(cb.get("progress_bar", {}).get("refresh_rate", 1))
    return kw


def fit(module: Any, batches: list[dict[str, Any]], n_batches: int, callback: Any, out: Path) -> None:
    """``Trainer.fit`` over ``n_batches`` in-memory batches with the project's trainer settings."""
    import lightning as L
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, Dataset

    class Batches(Dataset):
        def __len__(self) -> int:
            return n_batches

        def __getitem__(self, i: int) -> dict[str, Any]:
            return batches[i % len(batches)]

    kw = trainer_kwargs()
    refresh = kw.pop("refresh_rate")
    trainer = L.Trainer(
        **kw,
        default_root_dir=str(out),
        max_epochs=1,
        limit_train_batches=n_batches,
        limit_val_batches=0,
        enable_checkpointing=False,
        logger=CSVLogger(str(out), name="csv"),
        callbacks=[TQDMProgressBar(refresh_rate=refresh), callback],
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # progress bar
        trainer.fit(module, train_dataloaders=DataLoader(Batches(), batch_size=None))


def lightning_loop(
    module: Any, batches: list[dict[str, Any]], n_steps: int, warmup: int, sync: HostSyncCounter, out: Path
) -> float:
    """Seconds of steps ``warmup .. n_steps - 1`` of her2mri's loop (counted by ``sync`` while active)."""
    import lightning as L

    starts: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            starts.append(time.perf_counter())
            sync.active = warmup <= batch_idx < n_steps

    fit(module, batches, n_steps + 1, Clock(), out)
    sync.active = False
    return starts[n_steps] - starts[warmup]


def paired_steps(
    module: Any,
    plain: Any,
    batches: list[dict[str, Any]],
    n_steps: int,
    out: Path,
    threads: int | None = None,
) -> list[tuple[float, float]]:
    """Alternate her2mri's loop and the plain loop step by step: ``(plain_s, her2mri_s)`` per step.

    A callback runs one plain step (its own model, optimizer and scheduler) with every Lightning batch, before
    its training step on odd batches and after it on even ones (so neither loop always follows the other);
    the her2mri step is the time between two Lightning batch starts minus that plain step. So both
    loops see the same machine load within seconds, which matters on a shared machine where the load comes
    in bursts. ``threads`` runs the her2mri steps at that many torch threads (the plain steps stay at the
    current setting, restored at the end); None leaves the setting alone.
    """
    import lightning as L
    import torch

    base = torch.get_num_threads()
    own = threads or base
    step = PlainStepper(plain, n_steps + 2)
    starts: list[float] = []
    plain_s: list[float] = []

    def plain_step(batch_idx: int) -> None:
        torch.set_num_threads(base)
        t0 = time.perf_counter()
        step(batches[batch_idx % len(batches)])
        plain_s.append(time.perf_counter() - t0)
        torch.set_num_threads(own)

    class Pair(L.Callback):  # the plain step goes before the her2mri step on odd batches, after on even ones
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            torch.set_num_threads(own)

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            starts.append(time.perf_counter())
            if batch_idx % 2:
                plain_step(batch_idx)

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            if not batch_idx % 2:
                plain_step(batch_idx)

    try:
        fit(module, batches, n_steps + 1, Pair(), out)
    finally:
        torch.set_num_threads(base)
    return [(plain_s[i], starts[i + 1] - starts[i] - plain_s[i]) for i in range(n_steps)]


def section_train(work: Path, p: dict[str, Any]) -> dict[str, Any]:
    """her2mri's loop (Lightning + HER2Classifier) vs a plain torch loop, alternated step by step.

    ``p["train_plan"]`` maps image size -> (warm-up steps, measured steps). The ratio is the median over the
    measured steps of plain step time / her2mri step time (a throughput ratio). Host syncs are counted in
    separate runs at ``p["sync_size"]`` px over ``p["sync_steps"]`` steps (more than ``log_every_n_steps``,
    so that a logging step is included; the count does not depend on the image size).
    """
    import torch

    from her2mri.models import create_model
    from her2mri.training.module import HER2Classifier

    rows = []
    for size, (warmup, n_meas) in p["train_plan"].items():
        for name in TRAIN_MODELS:
            torch.manual_seed(0)
            module = HER2Classifier({"name": name, "pretrained": False}, class_weights=None)
            torch.manual_seed(0)
            plain = create_model(name, pretrained=False)
            pairs = paired_steps(module, plain, make_batches(name, size), warmup + n_meas, work / "pl")[
                warmup:
            ]
            ratio = [pl / li for pl, li in pairs]
            rows.append(
                {
                    "model": name,
                    "image_size": size,
                    "warmup": warmup,
                    "steps": n_meas,
                    "plain_samples_per_s": BATCH / median([pl for pl, _ in pairs]),
                    "lightning_samples_per_s": BATCH / median([li for _, li in pairs]),
                    "ratio_lightning_vs_plain": median(ratio),
                    "ratios": ratio,
                    "step_pairs_s": pairs,
                }
            )
            print(
                f"  train {name} {size}px: her2mri/plain {median(ratio):.3f} {[round(r, 2) for r in ratio]}"
            )
            del module, plain
    syncs = []
    size, n_sync = p["sync_size"], p["sync_steps"]
    for name in TRAIN_MODELS:
        batches = make_batches(name, size)
        counts: dict[str, Any] = {}
        with HostSyncCounter() as sync:
            plain_loop(create_model(name, pretrained=False), batches, n_sync + 1, 1, sync)
            counts["plain"] = sync.count / n_sync
        with HostSyncCounter(sites=True) as sync:
            module = HER2Classifier({"name": name, "pretrained": False}, class_weights=None)
            lightning_loop(module, batches, n_sync + 1, 1, sync, work / "pl")
            counts["lightning"] = sync.count / n_sync
        counts["extra"] = counts["lightning"] - counts["plain"]
        counts["lightning_sites_outside_torch_optim"] = {
            k: v for k, v in sorted(sync.sites.items(), key=lambda kv: -kv[1]) if "torch/optim" not in k
        }
        syncs.append({"model": name, "image_size": size, "steps": n_sync, **counts})
    return {"batch": BATCH, "rows": rows, "host_syncs_per_step": syncs}


def model_throughput(name: str, size: int, steps: int = 3) -> float:
    """Samples/s of plain training steps (used when the train section did not run at this size)."""
    from her2mri.models import create_model

    model, batches = create_model(name, pretrained=False), make_batches(name, size)
    plain_loop(model, batches, 2, 0, HostSyncCounter())  # untimed warm-up
    return BATCH * steps / plain_loop(model, batches, steps + 1, 1, HostSyncCounter())


# ---------------------------------------------------------------------------------------------- loader
def section_loader(work: Path, p: dict[str, Any], train: dict[str, Any] | None) -> dict[str, Any]:
    """DCEDataModule samples/s (cold first epoch, cached epochs) vs THDA-ResNet34 training samples/s."""
    import torch

    from her2mri.data.datamodule import DCEDataModule

    root, csv = make_cohort(work, p["loader_patients"], p["loader_shape"], p["unique"])
    size = p["loader_size"]
    model_sps = None
    for row in (train or {}).get("rows", []):
        if row["model"] == "thda_resnet34" and row["image_size"] == size:
            model_sps = row["plain_samples_per_s"]
    if model_sps is None:
        model_sps = model_throughput("thda_resnet34", size)
    pin = torch.cuda.is_available()
    rows = []
    for workers in (0, 2):
        cache = work / f"loader-cache-w{workers}"
        shutil.rmtree(cache, ignore_errors=True)

        def datamodule(workers: int = workers, cache: Path = cache) -> DCEDataModule:
            return DCEDataModule(
                root=root, metadata_csv=csv, preprocess={"views": "adjacent", "image_size": size},
                cache_dir=cache, batch_size=BATCH, num_workers=workers, pin_memory=pin,
                persistent_workers=workers > 0, progress=False,
            )  # fmt: skip

        dm = datamodule()
        t0 = time.perf_counter()
        dm.prepare_data()
        dm.setup("fit")
        loader = dm.train_dataloader()
        n = sum(len(b["label"]) for b in loader)
        cold = n / (time.perf_counter() - t0)
        cached = []
        for _ in range(p["loader_epochs"]):
            t0 = time.perf_counter()
            n = sum(len(b["label"]) for b in loader)
            cached.append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        dm2 = datamodule()  # a second run on a filled cache: reads only the .npz files
        dm2.prepare_data()
        dm2.setup("fit")
        warm_setup = time.perf_counter() - t0
        rows.append(
            {
                "num_workers": workers,
                "train_samples": len(dm.train_dataset),
                "cold_epoch_samples_per_s": cold,
                "cached_epoch_samples_per_s": median(cached),
                "warm_cache_setup_s": warm_setup,
                "ratio_cached_vs_model": median(cached) / model_sps,
                "ratio_cold_vs_model": cold / model_sps,
            }
        )
        del loader, dm, dm2
    return {
        "image_size": size,
        "views": "adjacent",
        "patients": p["loader_patients"],
        "shape": list(p["loader_shape"]),
        "pin_memory": pin,
        "model_samples_per_s": model_sps,
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------------- growth
def growth_child(root: str, csv: str, cache: str) -> None:
    """Subprocess body: preprocess a cohort into an empty cache, print time, cache size and RSS as JSON."""
    import her2mri.data.pipeline  # noqa: F401  (imports torch: part of the baseline, not of the timing)
    from her2mri.data.prepare import prepare_cohort
    from her2mri.data.preprocess_config import PreprocessConfig

    recs = load_records(Path(root), Path(csv))
    cfg = PreprocessConfig()
    base_rss, base_peak = rss_mb(), peak_rss_mb()
    t0 = time.perf_counter()
    prepare_cohort(recs, cfg, cache, num_workers=0, progress=False, return_arrays=False)
    secs = time.perf_counter() - t0
    out = {"patients": len(recs), "seconds": secs, "cache_bytes": dir_bytes(Path(cache) / cfg.key())}
    out.update({"rss_after_imports_mb": base_rss, "peak_before_mb": base_peak, "peak_rss_mb": peak_rss_mb()})
    print("GROWTH " + json.dumps(out))


def section_growth(work: Path, p: dict[str, Any]) -> dict[str, Any]:
    """Each cohort size in a fresh subprocess, so that each peak RSS is its own."""
    rows = []
    for n in p["growth_cohorts"]:
        root, csv = make_cohort(work, n, p["growth_shape"], p["unique"])
        cache = work / f"growth-cache-{n}"
        shutil.rmtree(cache, ignore_errors=True)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--growth-child",
            str(root),
            str(csv),
            str(cache),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = [x for x in res.stdout.splitlines() if x.startswith("GROWTH ")]
        if res.returncode != 0 or not line:
            raise RuntimeError(f"growth child for {n} patients failed:\n{res.stderr[-2000:]}")
        row = json.loads(line[-1][len("GROWTH ") :])
        row["seconds_per_patient"] = row["seconds"] / n
        row["cache_mb_per_patient"] = row["cache_bytes"] / MB / n
        rows.append(row)
        print(f"  growth {n}: {row['seconds']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MiB", flush=True)
    first, last = rows[0], rows[-1]
    return {
        "shape": list(p["growth_shape"]),
        "rows": rows,
        "ratio_time_per_patient_last_vs_first": last["seconds_per_patient"] / first["seconds_per_patient"],
        "ratio_cache_per_patient_last_vs_first": last["cache_mb_per_patient"] / first["cache_mb_per_patient"],
        "ratio_peak_rss_last_vs_first": last["peak_rss_mb"] / first["peak_rss_mb"],
    }


# ---------------------------------------------------------------------------------------------- gpu
def section_gpu(p: dict[str, Any]) -> dict[str, Any]:
    """fp32 / bf16 autocast / channels_last / torch.compile training steps on CUDA: img/s and peak memory."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    import torch.nn.functional as F

    from her2mri.models import create_model

    variants = {
        "fp32": {"bf16": False, "channels_last": False, "compile": False},
        "bf16": {"bf16": True, "channels_last": False, "compile": False},
        "bf16+channels_last": {"bf16": True, "channels_last": True, "compile": False},
        "bf16+compile": {"bf16": True, "channels_last": False, "compile": True},
    }
    rows = []
    for name in TRAIN_MODELS:
        for vname, v in variants.items():
            try:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                model = create_model(name, pretrained=False).cuda()
                if v["channels_last"]:
                    model = model.to(memory_format=torch.channels_last)
                step_model = torch.compile(model) if v["compile"] else model
                opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
                b = make_batches(name, 224, n=1)[0]
                x, y = b["image"].cuda(), b["label"].cuda()
                if v["channels_last"] and x.ndim == 4:
                    x = x.contiguous(memory_format=torch.channels_last)

                def step(
                    x: Any = x, y: Any = y, m: Any = step_model, o: Any = opt, bf16: bool = v["bf16"]
                ) -> None:
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                        loss = F.cross_entropy(m(x).float(), y)
                    o.zero_grad(set_to_none=True)
                    loss.backward()
                    o.step()

                for _ in range(5 if v["compile"] else 3):
                    step()
                torch.cuda.synchronize()
                n = 20
                t0 = time.perf_counter()
                for _ in range(n):
                    step()
                torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                images = x.shape[0] * (x.shape[1] if x.ndim == 5 else 1) * n
                rows.append(
                    {
                        "model": name,
                        "variant": vname,
                        "images_per_s": images / dt,
                        "peak_gpu_mb": torch.cuda.max_memory_allocated() / MB,
                    }
                )
                del model, step_model, opt
            except Exception as exc:  # noqa: BLE001 - one failing variant must not hide the others
                rows.append({"model": name, "variant": vname, "error": f"{type(exc).__name__}: {exc}"})
        base = next(
            (r for r in rows if r["model"] == name and r["variant"] == "fp32" and "images_per_s" in r), None
        )
        for r in rows:
            if base is not None and r["model"] == name and "images_per_s" in r:
                r["ratio_vs_fp32"] = r["images_per_s"] / base["images_per_s"]
    return {"device": torch.cuda.get_device_name(0), "batch": BATCH, "image_size": 224, "rows": rows}


# ---------------------------------------------------------------------------------------------- report
def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, value, target, verdict) rows of the printed table."""
    rows: list[tuple[str, str, str, str]] = []

    def add(measure: str, value: float, fmt: str, target: str = "", ok: bool | None = None) -> None:
        rows.append((measure, format(value, fmt), target, "" if ok is None else ("met" if ok else "NOT MET")))

    if "prep" in results:
        r = results["prep"]
        add(f"prep: bare nibabel read, s/patient {tuple(r['shape'])}", r["bare_read_s"], ".3f")
        add("prep: preprocessing, s/patient", r["preprocess_s"], ".3f")
        v = r["ratio_preprocess_vs_bare"]
        add("prep: preprocessing / bare read (x)", v, ".2f", "<= 1.5", v <= 1.5)
        add("prep: her2mri read only / bare read (x)", r["ratio_read_only_vs_bare"], ".2f")
        add("prep: traced peak memory / raw arrays (x)", r["ratio_traced_peak_vs_raw"], ".2f")
    if "train" in results:
        for row in results["train"]["rows"]:
            tag = f"train: {row['model']} {row['image_size']}px"
            add(f"{tag} plain, samples/s", row["plain_samples_per_s"], ".2f")
            add(f"{tag} her2mri (Lightning), samples/s", row["lightning_samples_per_s"], ".2f")
            v = row["ratio_lightning_vs_plain"]
            add(f"{tag} her2mri / plain (x)", v, ".3f", ">= 0.9", v >= 0.9)
        for row in results["train"]["host_syncs_per_step"]:
            tag = f"train: {row['model']} host-sync calls/step"
            add(f"{tag}, plain", row["plain"], ".1f")
            add(f"{tag}, her2mri", row["lightning"], ".1f")
            add(f"{tag}, her2mri - plain", row["extra"], ".2f")
    if "loader" in results:
        r = results["loader"]
        add(f"loader: thda_resnet34 training {r['image_size']}px, samples/s", r["model_samples_per_s"], ".2f")
        for row in r["rows"]:
            tag = f"loader: workers={row['num_workers']}"
            add(f"{tag} cold first epoch, samples/s", row["cold_epoch_samples_per_s"], ".1f")
            add(f"{tag} cached epoch, samples/s", row["cached_epoch_samples_per_s"], ".1f")
            v = row["ratio_cached_vs_model"]
            add(f"{tag} cached / model training (x)", v, ".1f", ">= 3", v >= 3)
            add(f"{tag} cold / model training (x)", row["ratio_cold_vs_model"], ".1f")
            add(f"{tag} setup on a filled cache, s", row["warm_cache_setup_s"], ".2f")
    if "growth" in results:
        r = results["growth"]
        for row in r["rows"]:
            tag = f"growth: {row['patients']} patients"
            add(f"{tag} preprocessing, s/patient", row["seconds_per_patient"], ".3f")
            add(f"{tag} cache, MiB/patient", row["cache_mb_per_patient"], ".3f")
            add(
                f"{tag} peak RSS, MiB (after imports {row['rss_after_imports_mb']:.0f})",
                row["peak_rss_mb"],
                ".0f",
            )
        v = r["ratio_time_per_patient_last_vs_first"]
        add("growth: time/patient largest / smallest (x)", v, ".2f", "0.8-1.25", 0.8 <= v <= 1.25)
        v = r["ratio_cache_per_patient_last_vs_first"]
        add("growth: cache/patient largest / smallest (x)", v, ".3f", "0.95-1.05", 0.95 <= v <= 1.05)
        v = r["ratio_peak_rss_last_vs_first"]
        add("growth: peak RSS largest / smallest (x)", v, ".3f", "<= 1.1", v <= 1.1)
    if "gpu" in results:
        r = results["gpu"]
        if "skipped" in r:
            rows.append(("gpu: fp32 / bf16 / channels_last / compile", "skipped: " + r["skipped"], "", ""))
        for row in r.get("rows", []):
            tag = f"gpu: {row['model']} {row['variant']}"
            if "error" in row:
                rows.append((tag, "error: " + row["error"][:60], "", ""))
                continue
            add(
                f"{tag} img/s (x fp32 {row.get('ratio_vs_fp32', float('nan')):.2f})",
                row["images_per_s"],
                ".1f",
            )
            add(f"{tag} peak GPU MiB", row["peak_gpu_mb"], ".0f")
    for sec, fn in (("cpu", "cpu_rows"), ("cohort", "cohort_rows")):
        if sec in results:
            for measure, value, fmt in getattr(bench_cpu(), fn)(results[sec]):
                add(measure, value, fmt)
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    """Fixed-width table on stdout."""
    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'measure':<{w}}  {'value':>12}  {'target':>9}  verdict")
    print("-" * (w + 35))
    for m, v, t, ok in rows:
        print(f"{m:<{w}}  {v:>12}  {t:>9}  {ok}")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence Lightning's info logs and the expected warnings (few workers, no GPU, tiny epochs)."""
    import lightning  # noqa: F401  (it sets its loggers' levels on import: import first, then override)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the selected sections; returns the results dict (also written as JSON when asked)."""
    import torch

    p = dict(QUICK if args.quick else FULL)
    if getattr(args, "cpu_models", None):
        p["cpu_models"] = tuple(args.cpu_models)
    if getattr(args, "cpu_options", None):
        p["cpu_options"] = tuple(args.cpu_options)
    if getattr(args, "cpu_steps", None):
        p["cpu_steps"] = tuple(args.cpu_steps)
    p["cpu_eval"] = not getattr(args, "cpu_no_eval", False)
    p["cpu_isolate"] = not getattr(args, "cpu_in_process", False)
    for key in ("cohort_repeats", "cohort_patients"):
        if getattr(args, key, None):
            p[key] = int(getattr(args, key))
    torch.set_num_threads(args.threads)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="her2mri-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "torch": torch.__version__,
            "loadavg_start": os.getloadavg(),
        },
    }
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "prep": lambda: section_prep(work, p),
        "train": lambda: section_train(work, p),
        "loader": lambda: section_loader(work, p, results.get("train")),
        "growth": lambda: section_growth(work, p),
        "gpu": lambda: section_gpu(p),
        "cpu": lambda: bench_cpu().section_cpu(sys.modules[__name__], work, p),
        "cohort": lambda: bench_cpu().section_cohort(sys.modules[__name__], work, p),
    }
    t_all = time.perf_counter()
    with quiet():
        for name in SECTIONS:
            if name not in args.sections:
                continue
            print(f"[{name}] ...", flush=True)
            t0 = time.perf_counter()
            results[name] = steps[name]()
            results[name]["section_s"] = time.perf_counter() - t0
            print(f"[{name}] done in {results[name]['section_s']:.0f} s", flush=True)
    results["wall_s"] = time.perf_counter() - t_all
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["machine"]["thread_cpu_s"] = thread_cpu_s()  # a busy non-main thread would show here
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, fewer steps (< 5 min on 2 cores)")
    ap.add_argument("--json", metavar="OUT", help="write every figure to this JSON file")
    ap.add_argument(
        "--sections", nargs="+", choices=SECTIONS, default=list(DEFAULT_SECTIONS), metavar="NAME",
        help=f"sections to run (default {' '.join(DEFAULT_SECTIONS)}): any of {' '.join(SECTIONS)}",
    )  # fmt: skip
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of torch/OpenMP/BLAS (default 1: on a shared machine more threads oversubscribe)",
    )
    ap.add_argument("--workdir", help="keep cohorts and caches here (default: a temporary folder, removed)")
    ap.add_argument("--cpu-models", nargs="+", metavar="NAME", help="cpu section: models (default both)")
    ap.add_argument(
        "--cpu-options", nargs="+", metavar="NAME",
        help="cpu section: training options (default all: default channels_first channels_last compile"
        " threads=2)",
    )  # fmt: skip
    ap.add_argument("--cpu-no-eval", action="store_true", help="cpu section: skip the evaluation variants")
    ap.add_argument("--cohort-repeats", type=int, help="cohort section: runs per worker count (default 2)")
    ap.add_argument("--cohort-patients", type=int, help="cohort section: patients (40; --quick: 10)")
    ap.add_argument(
        "--cpu-steps", nargs=2, type=int, metavar=("WARMUP", "MEASURED"),
        help="cpu section: training steps per option (default 1 3; 1 2 with --quick)",
    )  # fmt: skip
    ap.add_argument("--growth-child", nargs=3, metavar=("ROOT", "CSV", "CACHE"), help=argparse.SUPPRESS)
    ap.add_argument("--cohort-child", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--cpu-train-child", nargs=7, help=argparse.SUPPRESS)
    ap.add_argument(
        "--cpu-in-process", action="store_true",
        help="cpu section: run every training option in this process (default: each in its own subprocess,"
        " with its peak RSS; a killed option is retried at half the batch)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    want = str(args.threads)
    if any(os.environ.get(v) != want for v in THREAD_VARS):
        # OpenMP/MKL/OpenBLAS read these when they load: re-run this process with them set, so that every
        # library and every subprocess (growth children, DataLoader workers) uses the same thread count. On a
        # shared 2-core machine, 2 threads made training steps erratic (OpenMP barriers spinning against the
        # other jobs: up to 5x slower at random); 1 thread gives stable side-by-side ratios.
        os.environ.update(dict.fromkeys(THREAD_VARS, want))
        os.execv(sys.executable, [sys.executable, str(Path(__file__).resolve()), *(argv or sys.argv[1:])])
    if args.growth_child:
        growth_child(*args.growth_child)
        return 0
    if args.cpu_train_child:
        name, oname, size, batch, warmup, n_meas, out = args.cpu_train_child
        with quiet():
            bench_cpu().train_child(name, oname, int(size), int(batch), int(warmup), int(n_meas), out)
        return 0
    if args.cohort_child:
        root, csv, cache, workers, size = args.cohort_child
        with quiet():
            bench_cpu().cohort_child(root, csv, cache, int(workers), int(size))
        return 0
    results = run(args)
    print()
    print_table(table(results))
    load = ", ".join(f"{x:.1f}" for x in results["machine"]["loadavg_end"])
    print(f"\nwall time {results['wall_s']:.0f} s ({results['mode']}), load average at the end {load}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
