"""Sections ``cpu`` and ``cohort`` of tools/bench.py (kept here so that each file stays one concern).

* ``cpu``: CPU speed options for training and evaluation of ``thda_resnet34`` and ``resnet34`` on the real
  RGB slices of ``../shared/data/real/fedsubtype_ispy_rgb`` (224 px, batch 16, ImageNet-normalised; THDA gets
  three views: the slice and its two neighbours among the patient's saved slices).

  - Training: for each option (``default`` = her2mri's module config, ``channels_first``, ``channels_last``,
    ``compile`` = ``torch.compile`` with the CPU inductor, ``threads=2``; each on top of the module config),
    in its own subprocess with its peak RSS (retried at half the batch when it runs out of memory), one
    her2mri fit (Lightning ``Trainer`` + ``HER2Classifier`` with that option) is alternated step by step
    with a plain torch loop of the same model (1 thread, eager, NCHW), as in the ``train`` section. Each
    option's speed-up is the ratio of its her2mri/plain ratio to the default's: a ratio of ratios, each
    measured side by side, so the machine's load cancels out.
  - Evaluation: forward passes of batch 16 in eval mode, ``no_grad`` vs ``inference_mode`` and each option
    under ``inference_mode``, round-robin (one pass of each variant in turn, the order alternating), median.
  - Same results: every variant's eval probabilities against the default's on the same weights
    (max |delta p|), and for the eager options the loss and gradients of one training step (train mode,
    same dropout seed) against the default (relative max gradient difference). ``torch.compile`` draws its
    dropout masks from its own generator, so its training step is compared through the eval outputs only.

* ``cohort``: ``data.num_preprocess_workers`` 1 vs 2 on a BreastDCEDL-shaped synthetic cohort (6 acquisitions
  per patient, 80x256x256 by default), each in a fresh subprocess with an empty cache: time from the
  DataModule's creation to the first training batch (``prepare_data`` + ``setup`` + first batch), and the
  peak memory of the process tree (RSS of the process and of its worker processes, sampled every 50 ms).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RGB_INDEX = ROOT.parent / "shared" / "data" / "real" / "fedsubtype_ispy_rgb" / "subset_index.csv"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: training options: HER2Classifier keyword arguments plus ``threads`` (torch intra-op threads), each on top
#: of her2mri's module defaults (her2mri/conf/module/default.yaml: ``channels_last: auto`` = NHWC on the CPU)
TRAIN_OPTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "channels_first": {"channels_last": False},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "threads=2": {"threads": 2},
}
#: evaluation variants: options plus the autograd mode of the forward pass
EVAL_VARIANTS: dict[str, dict[str, Any]] = {
    "no_grad": {"mode": "no_grad"},
    "default": {"mode": "inference_mode"},
    "channels_first": {"mode": "inference_mode", "channels_last": False},
    "channels_last": {"mode": "inference_mode", "channels_last": True},
    "compile": {"mode": "inference_mode", "compile": True},
    "threads=2": {"mode": "inference_mode", "threads": 2},
}


def module_defaults() -> dict[str, Any]:
    """``channels_last`` and ``compile`` of her2mri's module config (her2mri/conf/module/default.yaml)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / "her2mri" / "conf" / "module" / "default.yaml")
    return {"channels_last": cfg.get("channels_last", False), "compile": bool(cfg.get("compile", False))}


# ---------------------------------------------------------------------------------------------- data
def real_rgb_batches(
    model_name: str, size: int, n_batches: int, batch: int, index_csv: Path = RGB_INDEX
) -> list[dict[str, Any]]:
    """In-memory batches of real RGB slices, as the DataModule yields them.

    Raises:
        FileNotFoundError: ``index_csv`` does not exist (no ``../shared`` beside the project).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from her2mri.data.rgb import read_rgb_slices

    if not Path(index_csv).is_file():
        raise FileNotFoundError(f"{index_csv}: the real RGB slices are needed (../shared/data/real)")
    records = read_rgb_slices(index_csv, split_col=None)
    three = model_name.startswith("thda")
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def load(path: Path) -> torch.Tensor:
        arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        t = torch.from_numpy(arr).permute(2, 0, 1)
        if t.shape[-1] != size:
            t = F.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False)[0]
        return (t - mean) / std

    images, labels, pids, sidx = [], [], [], []
    for rec in records:
        slices = [load(p) for p in rec.rgb_paths or ()]
        for i, img in enumerate(slices):
            if three:
                img = torch.stack([slices[max(i - 1, 0)], img, slices[min(i + 1, len(slices) - 1)]])
            images.append(img)
            labels.append(int(rec.label or 0))
            pids.append(rec.pid)
            sidx.append(i)
            if len(images) == n_batches * batch:
                break
        if len(images) == n_batches * batch:
            break
    return [
        {
            "image": torch.stack(images[b * batch : (b + 1) * batch]),
            "label": torch.tensor(labels[b * batch : (b + 1) * batch]),
            "pid": pids[b * batch : (b + 1) * batch],
            "slice_idx": torch.tensor(sidx[b * batch : (b + 1) * batch]),
        }
        for b in range(n_batches)
    ]


# ---------------------------------------------------------------------------------------------- helpers
def make_module(name: str, option: dict[str, Any]) -> Any:
    """A ``HER2Classifier`` of ``name`` (random weights, seed 0): her2mri's module defaults + the option."""
    import torch

    from her2mri.training.module import HER2Classifier

    kw = {**module_defaults(), **{k: v for k, v in option.items() if k in ("channels_last", "compile")}}
    torch.manual_seed(0)
    return HER2Classifier({"name": name, "pretrained": False}, class_weights=None, **kw)


class Threads:
    """Context manager: torch intra-op threads set to ``n`` (``None`` = unchanged), restored on exit."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.prev = 0

    def __enter__(self) -> None:
        import torch

        self.prev = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(int(self.n))

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.prev)


def grad_check(module: Any, ref: Any, batch: dict[str, Any], threads: int | None) -> dict[str, float]:
    """One training step's loss and gradients of ``module`` vs ``ref`` (same weights, same dropout seed)."""
    import torch
    import torch.nn.functional as F

    out: dict[str, Any] = {}
    for tag, m in (("ref", ref), ("opt", module)):
        m.train()
        m.zero_grad(set_to_none=True)
        torch.manual_seed(123)
        with Threads(threads if tag == "opt" else None):
            loss = F.cross_entropy(m(batch["image"]).float(), batch["label"])
            loss.backward()
        grads = [p.grad.detach().flatten() for p in m.parameters() if p.grad is not None]
        out[tag] = (float(loss), torch.cat(grads))
        m.zero_grad(set_to_none=True)
    (l_ref, g_ref), (l_opt, g_opt) = out["ref"], out["opt"]
    return {
        "loss_abs_diff": abs(l_opt - l_ref),
        "grad_rel_max_diff": float((g_opt - g_ref).abs().max() / g_ref.abs().max().clamp_min(1e-30)),
    }


# ---------------------------------------------------------------------------------------------- cpu
def eval_variants(name: str, batch: dict[str, Any], reps: int) -> dict[str, Any]:
    """Eval forward passes of every variant on the same weights: seconds per pass and max |delta p|."""
    import torch

    ref = make_module(name, {})
    mods: dict[str, Any] = {}
    for vname, v in EVAL_VARIANTS.items():
        m = make_module(name, v)
        m.model.load_state_dict(ref.model.state_dict())
        mods[vname] = m.eval()
    x = batch["image"]

    def run(vname: str) -> tuple[float, torch.Tensor]:
        v = EVAL_VARIANTS[vname]
        ctx = torch.no_grad() if v["mode"] == "no_grad" else torch.inference_mode()
        with Threads(v.get("threads")), ctx:
            t0 = time.perf_counter()
            probs = torch.softmax(mods[vname](x).float(), dim=-1)[:, 1]
            return time.perf_counter() - t0, probs.clone()

    first = {vname: run(vname) for vname in mods}  # warm-up (compiles)
    times: dict[str, list[float]] = {vname: [] for vname in mods}
    order = list(mods)
    for rep in range(reps):
        for vname in order if rep % 2 == 0 else order[::-1]:
            times[vname].append(run(vname)[0])
    base = first["default"][1]
    rows = {}
    for vname in mods:
        med = sorted(times[vname])[len(times[vname]) // 2]
        rows[vname] = {
            "seconds_per_batch": med,
            "samples_per_s": x.shape[0] / med,
            "first_pass_s": first[vname][0],
            "max_abs_prob_diff": float((first[vname][1] - base).abs().max()),
            "times": times[vname],
        }
    for vname, r in rows.items():
        r["speedup_vs_default"] = rows["default"]["seconds_per_batch"] / r["seconds_per_batch"]
        # per-repetition ratios (each pair of passes ran within seconds of each other)
        r["speedups"] = [d / t for d, t in zip(times["default"], times[vname], strict=True)]
    return rows


def train_option(
    bench: Any, name: str, oname: str, size: int, batch: int, steps: tuple[int, int], work: Path
) -> dict[str, Any]:
    """One training option of ``name`` paired step by step with a plain torch loop (this process).

    Returns:
        samples/s of both loops, their median ratio and the per-step ratios, the same-results check and this
        process's peak RSS (MiB, ``getrusage``: the largest resident size the process ever had).
    """
    import resource

    import torch

    from her2mri.models import create_model

    if oname not in TRAIN_OPTIONS:
        raise ValueError(f"cpu option {oname!r} is not valid. Valid: {', '.join(TRAIN_OPTIONS)}")
    warmup, n_meas = steps
    opt = TRAIN_OPTIONS[oname]
    batches = real_rgb_batches(name, size, 4, batch)
    module = make_module(name, opt)
    torch.manual_seed(0)
    plain = create_model(name, pretrained=False)
    check = None
    if not opt.get("compile"):
        ref = create_model(name, pretrained=False)
        ref.load_state_dict(module.model.state_dict())
        check = grad_check(module, ref, batches[0], opt.get("threads"))
        del ref
    w = warmup + (1 if opt.get("compile") else 0)  # the first compiled step compiles
    t0 = time.perf_counter()
    pairs = bench.paired_steps(module, plain, batches, w + n_meas, work / "pl", threads=opt.get("threads"))
    fit_s = time.perf_counter() - t0
    meas = pairs[w:]
    ratios = [pl / li for pl, li in meas]
    return {
        "batch": batch,
        "plain_samples_per_s": batch / bench.median([pl for pl, _ in meas]),
        "her2mri_samples_per_s": batch / bench.median([li for _, li in meas]),
        "ratio_her2mri_vs_plain": bench.median(ratios),
        "ratios": ratios,
        "warmup_steps": w,
        "first_step_s": pairs[0][1],
        "fit_wall_s": fit_s,
        "same_results": check,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "loadavg": os.getloadavg(),
    }


def train_child(name: str, oname: str, size: int, batch: int, warmup: int, n_meas: int, out: str) -> None:
    """Entry point of ``tools/bench.py --cpu-train-child``: one option in a fresh process, JSON to ``out``."""
    import importlib

    bench = importlib.import_module("bench")
    res = train_option(bench, name, oname, size, batch, (warmup, n_meas), Path(out).parent)
    Path(out).write_text(json.dumps(res, default=float))


def train_isolated(name: str, oname: str, size: int, batch: int, steps: tuple[int, int], work: Path) -> dict:
    """:func:`train_option` in its own subprocess (its memory is returned when it ends).

    When the process is killed by a signal (the out-of-memory killer on a shared machine) or runs out of
    memory at ``batch``, the option is run again at half the batch, with a printed note; the result says which
    batch it ran at. Any other failure is returned as ``{"error": ...}``.
    """
    b, reason = batch, ""
    while True:
        out = work / f"train_{name}_{oname}_b{b}.json"
        cmd = [sys.executable, str(ROOT / "tools" / "bench.py"), "--cpu-train-child"]
        cmd += [name, oname, str(size), str(b), str(steps[0]), str(steps[1]), str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0 and out.is_file():
            res = json.loads(out.read_text())
            if b != batch:
                res["note"] = f"batch {batch} did not complete ({reason}); measured at batch {b}"
            return res
        oom = proc.returncode < 0 or "MemoryError" in proc.stderr or "DefaultCPUAllocator" in proc.stderr
        reason = f"exit status {proc.returncode}" + (" (killed or out of memory)" if oom else "")
        if not oom or b <= 2:  # another error: halving the batch would not help
            return {"batch": b, "error": f"{reason}: {proc.stderr[-800:]}"}
        print(f"  NOTE cpu train {name} {oname}: batch {b} {reason}; retrying at batch {b // 2}", flush=True)
        b //= 2


def section_cpu(bench: Any, work: Path, p: dict[str, Any]) -> dict[str, Any]:
    """Training and evaluation speed options on the CPU (see the module docstring)."""
    import torch

    size, batch = p["cpu_size"], bench.BATCH
    steps = tuple(p["cpu_steps"])
    isolate = bool(p.get("cpu_isolate", True))
    out: dict[str, Any] = {"image_size": size, "batch": batch, "threads_default": torch.get_num_threads()}
    out["module_defaults"] = module_defaults()
    out["models"] = {}
    for name in p["cpu_models"]:
        evals: dict[str, Any] = {}
        if p.get("cpu_eval", True):
            evals = eval_variants(name, real_rgb_batches(name, size, 1, batch)[0], p["cpu_eval_reps"])
        res: dict[str, Any] = {"eval": evals, "train": {}}
        for vname, r in res["eval"].items():
            print(
                f"  cpu eval {name} {vname}: {r['samples_per_s']:.2f} samples/s, "
                f"x{r['speedup_vs_default']:.2f} "
                f"{[round(s, 2) for s in r['speedups']]} |dp| {r['max_abs_prob_diff']:.1e}",
                flush=True,
            )
        options = p.get("cpu_options") or tuple(TRAIN_OPTIONS)
        if "default" not in options:
            options = ("default", *options)  # every speed-up is relative to the default
        for oname in options:
            if oname not in TRAIN_OPTIONS:
                raise ValueError(f"cpu option {oname!r} is not valid. Valid: {', '.join(TRAIN_OPTIONS)}")
            if isolate:
                r = train_isolated(name, oname, size, batch, steps, work)
            else:
                r = train_option(bench, name, oname, size, batch, steps, work)
            res["train"][oname] = r
            if "error" in r:
                print(f"  cpu train {name} {oname}: FAILED {r['error'][:300]}", flush=True)
                continue
            print(
                f"  cpu train {name} {oname} (batch {r['batch']}): her2mri {r['her2mri_samples_per_s']:.2f} "
                f"plain {r['plain_samples_per_s']:.2f} samples/s, "
                f"her2mri/plain {r['ratio_her2mri_vs_plain']:.3f} "
                f"{[round(x, 2) for x in r['ratios']]} check {r['same_results']} "
                f"peak RSS {r['peak_rss_mb']:.0f} MiB, load {r['loadavg'][0]:.1f}",
                flush=True,
            )
        d = res["train"].get("default", {}).get("ratio_her2mri_vs_plain")
        for r in res["train"].values():
            if d and "ratio_her2mri_vs_plain" in r and r["batch"] == res["train"]["default"]["batch"]:
                r["speedup_vs_default"] = r["ratio_her2mri_vs_plain"] / d
        out["models"][name] = res
    return out


def cpu_rows(r: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(measure, value, format) rows of the printed table for the ``cpu`` section."""
    rows: list[tuple[str, float, str]] = []
    for name, res in r["models"].items():
        tag = f"cpu: {name} {r['image_size']}px"
        tr = {k: v for k, v in res["train"].items() if "error" not in v}
        if "default" in tr:
            b = tr["default"]["batch"]
            rows.append(
                (f"{tag} b{b} train plain loop, samples/s", tr["default"]["plain_samples_per_s"], ".2f")
            )
        for oname, row in tr.items():
            t = f"{tag} b{row['batch']} train"
            rows.append((f"{t} her2mri {oname}, samples/s", row["her2mri_samples_per_s"], ".2f"))
            rows.append((f"{t} her2mri {oname} / plain (x)", row["ratio_her2mri_vs_plain"], ".3f"))
            if oname != "default" and "speedup_vs_default" in row:
                rows.append((f"{t} {oname} / default (x)", row["speedup_vs_default"], ".3f"))
            chk = row.get("same_results")
            if chk:
                rows.append((f"{t} {oname} grad rel. diff", chk["grad_rel_max_diff"], ".1e"))
            if "peak_rss_mb" in row:
                rows.append((f"{t} {oname} peak RSS, MiB", row["peak_rss_mb"], ".0f"))
        e = f"{tag} b{r['batch']} eval"
        for vname, row in res["eval"].items():
            rows.append((f"{e} {vname}, samples/s", row["samples_per_s"], ".2f"))
            if vname != "default":
                rows.append((f"{e} {vname} / default (x)", row["speedup_vs_default"], ".3f"))
                rows.append((f"{e} {vname} max |delta p|", row["max_abs_prob_diff"], ".1e"))
    return rows


# ---------------------------------------------------------------------------------------------- cohort
class PeakTreeRSS:
    """Samples the summed RSS of this process and all its descendants every ``interval`` s; keeps the peak.

    Also keeps the last CPU time (user + system) seen of each descendant, so that ``cpu_s()`` is the CPU time
    of the whole tree: on a shared machine, CPU seconds per patient do not depend on the other jobs' load
    the way wall time does.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._child_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> float:
        import psutil

        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
                if proc.pid != me.pid:
                    t = proc.cpu_times()
                    self._child_cpu[proc.pid] = t.user + t.system
            except psutil.Error:
                continue
        return total / (1024.0 * 1024.0)

    def cpu_s(self) -> float:
        """CPU seconds of this process plus those sampled of its descendants (alive or ended)."""
        t = os.times()
        return t.user + t.system + sum(self._child_cpu.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakTreeRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._sample())


def cohort_child(root: str, csv: str, cache: str, workers: int, size: int) -> None:
    """Subprocess body: time to the first training batch with ``workers`` preprocessing processes (JSON)."""
    from her2mri.data.datamodule import DCEDataModule

    with PeakTreeRSS() as peak:
        t0 = time.perf_counter()
        dm = DCEDataModule(
            root=root, metadata_csv=csv, preprocess={"views": "adjacent", "image_size": size},
            cache_dir=cache, batch_size=16, num_workers=0, num_preprocess_workers=workers, progress=False,
        )  # fmt: skip
        dm.prepare_data()
        t_prep = time.perf_counter() - t0
        dm.setup("fit")
        next(iter(dm.train_dataloader()))
        t_first = time.perf_counter() - t0
        cpu = peak.cpu_s()
    out = {
        "cpu_s": cpu,
        "workers": workers,
        "patients": len(dm.records) if hasattr(dm, "records") else None,
        "prepare_s": t_prep,
        "first_batch_s": t_first,
        "peak_tree_rss_mb": peak.peak_mb,
    }
    print("COHORT " + json.dumps(out), flush=True)


def section_cohort(bench: Any, work: Path, p: dict[str, Any]) -> dict[str, Any]:
    """``num_preprocess_workers`` 1 vs 2 on a BreastDCEDL-shaped cohort, alternated, fresh caches."""
    import shutil

    n, shape = p["cohort_patients"], p["cohort_shape"]
    root, csv = bench.make_cohort(work, n, shape, p["unique"])
    rows: list[dict[str, Any]] = []
    for rep in range(p["cohort_repeats"]):
        order = (1, 2) if rep % 2 == 0 else (2, 1)
        for workers in order:
            cache = work / f"cohort-cache-w{workers}"
            shutil.rmtree(cache, ignore_errors=True)
            cmd = [sys.executable, str(ROOT / "tools" / "bench.py"), "--cohort-child", str(root), str(csv)]
            cmd += [str(cache), str(workers), str(p["cohort_size"])]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=dict(os.environ))
            line = [x for x in res.stdout.splitlines() if x.startswith("COHORT ")]
            if res.returncode != 0 or not line:
                raise RuntimeError(f"cohort child ({workers} workers) failed:\n{res.stderr[-2000:]}")
            row = json.loads(line[-1][len("COHORT ") :])
            row["repeat"] = rep
            row["cache_mb"] = bench.dir_bytes(cache) / bench.MB
            rows.append(row)
            print(
                f"  cohort {n} patients, {workers} workers: first batch {row['first_batch_s']:.1f} s, "
                f"peak tree RSS {row['peak_tree_rss_mb']:.0f} MiB",
                flush=True,
            )
            shutil.rmtree(cache, ignore_errors=True)
    summary: dict[str, Any] = {}
    for workers in (1, 2):
        mine = [r for r in rows if r["workers"] == workers]
        summary[workers] = {
            "first_batch_s": bench.median([r["first_batch_s"] for r in mine]),
            "prepare_s": bench.median([r["prepare_s"] for r in mine]),
            "peak_tree_rss_mb": max(r["peak_tree_rss_mb"] for r in mine),
            "cache_mb": bench.median([r["cache_mb"] for r in mine]),
            "cpu_s": bench.median([r.get("cpu_s", float("nan")) for r in mine]),
        }
    pairs = [
        (a["first_batch_s"], b["first_batch_s"])
        for a, b in zip(
            [r for r in rows if r["workers"] == 1], [r for r in rows if r["workers"] == 2], strict=True
        )
    ]
    one, two = summary[1], summary[2]
    per_patient = {w: s["prepare_s"] / n for w, s in summary.items()}
    cpu_per_patient = {w: s["cpu_s"] / n for w, s in summary.items()}
    return {
        "patients": n,
        "shape": list(shape),
        "acquisitions": 6,
        "image_size": p["cohort_size"],
        "rows": rows,
        "summary": {str(k): v for k, v in summary.items()},
        "speedup_2_vs_1": bench.median([a / b for a, b in pairs]),
        "speedups_2_vs_1": [a / b for a, b in pairs],
        "peak_ratio_2_vs_1": two["peak_tree_rss_mb"] / one["peak_tree_rss_mb"],
        "prepare_s_per_patient": {str(k): v for k, v in per_patient.items()},
        "cpu_s_per_patient": {str(k): v for k, v in cpu_per_patient.items()},
        "projection_1149": {
            str(w): {
                "prepare_h": per_patient[w] * 1149 / 3600.0,
                "cpu_h": cpu_per_patient[w] * 1149 / 3600.0,
                "cache_gib": summary[w]["cache_mb"] / n * 1149 / 1024.0,
            }
            for w in (1, 2)
        },
    }


def cohort_rows(r: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(measure, value, format) rows of the printed table for the ``cohort`` section."""
    tag = f"cohort: {r['patients']} x {tuple(r['shape'])}, 6 acq."
    rows: list[tuple[str, float, str]] = []
    for w, s in r["summary"].items():
        rows.append((f"{tag} workers={w} time to first batch, s", s["first_batch_s"], ".1f"))
        rows.append((f"{tag} workers={w} peak RSS (process tree), MiB", s["peak_tree_rss_mb"], ".0f"))
        rows.append((f"{tag} workers={w} CPU time to first batch, s", s["cpu_s"], ".1f"))
        hours = r["projection_1149"][w]["prepare_h"]
        rows.append((f"{tag} workers={w} projected 1,149 patients, h", hours, ".2f"))
    rows.append((f"{tag} workers=2 / workers=1 speed-up (x)", r["speedup_2_vs_1"], ".2f"))
    rows.append((f"{tag} workers=2 / workers=1 peak RSS (x)", r["peak_ratio_2_vs_1"], ".2f"))
    return rows
