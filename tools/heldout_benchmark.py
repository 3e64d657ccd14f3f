"""Held-out synthetic benchmark: do the recipes learn on cohorts they were not tuned on?

The main job and its recipe were developed on ``data/synthetic.yaml`` (seed 0, difficulty 0.5, sites A/B/C
with gains 0.6/1.0/1.6). This benchmark never uses those cohorts: for every benchmark seed ``s`` it writes

* an **internal** cohort (seed ``1000 + s``): harder kinetics (``--difficulty``, default 0.8), more
  vessels (4-7 instead of 2-4) and other scanner sites (gains 0.8 / 1.3 / 2.0 with their own offsets); the
  model trains on its official train split, picks its checkpoint on val, and is scored on its test split;
* an **external** cohort (seed ``2000 + s``): the same kinetics but two sites the training never saw (gains
  0.45 and 2.6), every patient scored with ``her2mri-eval split=all`` (the checkpoint's preprocessing,
  including cohort statistics, applied unchanged).

Every recipe (``RECIPES``, one set of Hydra overrides each) is trained once per seed; the table reports the
patient-level AUC (internal test, external) as mean +- sd over the seeds, beside the hand-crafted baseline:
the tumour-mean late/early enhancement ratio ``mean_T(late - pre) / mean_T(early - pre)`` (true tumour mask),
scored as ``-ratio`` because wash-out (late below early) is the HER2-enriched pattern; it has no parameter.

Runs already finished (``metrics.json`` with status ok) are reused, so the benchmark can be stopped and
resumed. Everything goes under ``--out``: ``cohorts/``, ``runs/<recipe>/seed<s>/``, ``results.json`` and
``table.md`` (written atomically after every run).

Usage::

    python tools/heldout_benchmark.py --out runs/heldout --seeds 0 1 2 --recipes scratch paper_lr
    python tools/heldout_benchmark.py --list          # the recipes and their overrides
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: held-out cohorts: other gains/offsets than data.synth.SITES (A 0.6, B 1.0, C 1.6)
INTERNAL_SITES: dict[str, tuple[float, float]] = {"H1": (0.8, 40.0), "H2": (1.3, 10.0), "H3": (2.0, 80.0)}
EXTERNAL_SITES: dict[str, tuple[float, float]] = {"X1": (0.45, 5.0), "X2": (2.6, 120.0)}

#: the tiny CPU setting shared by every recipe (32-px crops of 64-px slices, a few epochs)
BASE: tuple[str, ...] = (
    "model=thda_resnet34",
    "preprocess=clip_channel_q98",
    "preprocess.crop_size=32",
    "preprocess.image_size=32",
    "preprocess.n_slices=3",
    "trainer.accelerator=cpu",
    "data.num_workers=0",
    "data.progress=false",
    "data.batch_size=16",
    "stats_n_boot=0",
    "num_threads=1",
    "~logger",  # no CSV/TensorBoard logs: the benchmark only reads metrics.json
    # the from-scratch recipe of the main job (conf/demo/synthetic.yaml; the demo file itself only applies
    # to data=synthetic): lr 1e-3, flips/rotations plus joint intensity jitter
    "module.optimizer.lr=1e-3",
    "data.augment_kwargs={gamma_range:[0.7,1.4],brightness:0.1,prob_intensity:0.8}",
    "callbacks.early_stopping.patience=10",
)

#: recipe name -> (description, overrides on top of BASE); "scratch" is the main job's from-scratch recipe
RECIPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "scratch": ("THDA-ResNet34, heads=adjacent, from-scratch recipe (lr 1e-3, joint intensity jitter)", ()),
    "paper_lr": (
        "THDA-ResNet34, the paper_thda recipe without ImageNet (lr 1e-4, no intensity jitter)",
        ("module.optimizer.lr=1e-4", "data.augment_kwargs=null"),
    ),
    "heads_scales": ("THDA-ResNet34, heads=scales (3 crop sizes)", ("preprocess.views=scales",)),
    "heads_phases": (
        "THDA-ResNet34, heads=phases (one phase per head, 1 channel)",
        ("preprocess.views=phases", "preprocess.phase_channels=1", "model.in_chans=1"),
    ),
    "global_q99": ("THDA-ResNet34, channels=phases, clip_global_q99", ("preprocess=clip_global_q99",)),
    "subtraction": (
        "THDA-ResNet34, channels=subtraction, clip_global_q99",
        ("preprocess=clip_global_q99", "preprocess.channels=subtraction"),
    ),
    "kinetic": (
        "THDA-ResNet34, channels=kinetic, clip_global_q99",
        ("preprocess=clip_global_q99", "preprocess.channels=kinetic"),
    ),
    "cohort_norm": (
        "THDA-ResNet34, clip_channel_q98 with cohort statistics (training split)",
        ("preprocess.stats_scope=cohort",),
    ),
    "cohort_global": (
        "THDA-ResNet34, clip_global_q99 with cohort statistics (training split)",
        ("preprocess=clip_global_q99", "preprocess.stats_scope=cohort"),
    ),
    "resnet34": ("ResNet34, single view", ("model=resnet34",)),
    "volume3d": (
        "3-D MONAI ResNet-10 (width 16) on a 16 x 32 x 32 tumour box, channels=kinetic, clip_global_q99, "
        "30 epochs (experiment=baseline_3d)",
        (
            "experiment=baseline_3d",
            "model=resnet3d",
            "preprocess=clip_global_q99",
            "preprocess.channels=kinetic",
            "model.base_width=16",
            "data.batch_size=8",
            "data.imagenet_norm=false",
            "trainer.max_epochs=30",
            "callbacks.early_stopping.patience=30",
        ),
    ),  # fmt: skip
    "volume3d_v0": (
        "3-D MONAI ResNet-10 (width 64) on a 16 x 32 x 32 tumour box, the first recipe (did not learn)",
        (
            "experiment=baseline_3d",
            "model=resnet3d",
            "preprocess=clip_channel_q98",
            "preprocess.channels=phases",
            "model.base_width=64",
            "data.batch_size=8",
            "data.imagenet_norm=false",
            "trainer.max_epochs=10",
            "callbacks.early_stopping.patience=10",
        ),
    ),  # fmt: skip
}

log = logging.getLogger("heldout_benchmark")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def make_cohorts(
    out: Path, seed: int, n: int, n_external: int, difficulty: float, shape: Sequence[int]
) -> dict:
    """Write (once) the internal and external held-out cohorts of ``seed``; returns their roots and CSVs."""
    from her2mri.data.build import ensure_synthetic_cohort

    common = {"shape": list(shape), "n_times": [6, 7], "difficulty": difficulty, "n_vessels": [4, 8]}
    internal = ensure_synthetic_cohort(
        out / "cohorts" / f"internal_s{seed}", n=n, seed=1000 + seed, sites=INTERNAL_SITES,
        test_fraction=0.25, val_fraction=0.2, **common,
    )  # fmt: skip
    external = ensure_synthetic_cohort(
        out / "cohorts" / f"external_s{seed}", n=n_external, seed=2000 + seed, sites=EXTERNAL_SITES, **common
    )
    return {
        "internal": (internal, internal / "metadata.csv"),
        "external": (external, external / "metadata.csv"),
    }


def _auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels)
    if len(set(y.tolist())) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(scores, dtype=float)))


def handcrafted_baseline(root: Path, csv: Path, split: str | None) -> float:
    """Patient AUC of ``-mean_T(late - pre) / mean_T(early - pre)`` on ``split`` (None = all)."""
    from her2mri.data.io import load_case_arrays
    from her2mri.data.readers import load_breastdcedl

    records = load_breastdcedl(root, csv, label_col="HER2pos")
    labels, scores = [], []
    for rec in records:
        if split is not None and rec.split != split:
            continue
        phases, mask, _ = load_case_arrays(rec, dtype="float32")
        tum = mask.astype(bool)
        pre, early, late = (float(phases[c][tum].mean()) for c in range(3))
        ratio = (late - pre) / max(early - pre, 1e-6)
        labels.append(int(rec.label))
        scores.append(-ratio)
    return _auc(labels, scores)


def _data_overrides(root: Path, csv: Path) -> list[str]:
    return ["data=breastdcedl", f"data.root={root}", f"data.metadata_csv={csv}", "data.datasets=null"]


def run_recipe(
    name: str, seed: int, cohorts: dict, out: Path, epochs: int, tta: str | None
) -> dict[str, float]:
    """Train one recipe on the internal cohort; score its internal test split and the external cohort."""
    from hydra import compose, initialize_config_dir

    from her2mri.cli._config import config_dir
    from her2mri.runs.evaluate import evaluate
    from her2mri.runs.train import train

    run_dir = out / "runs" / name / f"seed{seed}"
    ext_dir = run_dir / "external"
    done = run_dir / "metrics.json"
    _, overrides = RECIPES[name]
    keys = {o.split("=", 1)[0] for o in overrides}
    base = [o for o in BASE if o.split("=", 1)[0] not in keys]  # a recipe's own value replaces the base's
    # --epochs unless the recipe sets its own (the 3-D recipe: one volume per patient, 30 epochs)
    epoch_over = [] if "trainer.max_epochs" in keys else [f"trainer.max_epochs={epochs}"]
    train_over = [*base, *overrides, *_data_overrides(*cohorts["internal"]), f"seed={seed}", *epoch_over,
                  f"paths.output_dir={run_dir}", f"paths.cache_dir={out / 'cache'}"]  # fmt: skip
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        if not (done.is_file() and json.loads(done.read_text()).get("status") == "ok"):
            train(compose(config_name="train", overrides=train_over))
        payload = json.loads(done.read_text())
        result = {
            "internal_auc": float(payload["metrics"].get("test/auroc_patient", float("nan"))),
            "val_auc": float(payload["metrics"].get("val/auroc_patient", float("nan"))),
            "wall_s": float(payload.get("wall_time_s", float("nan"))),
        }
        eval_over = [*_data_overrides(*cohorts["external"]), f"ckpt_path={payload['ckpt_path']}", "split=all",
                     "data.num_workers=0", "data.progress=false", "trainer.accelerator=cpu", "stats_n_boot=0",
                     f"paths.output_dir={ext_dir}", f"paths.cache_dir={out / 'cache'}"]  # fmt: skip
        ext_done = ext_dir / "metrics.json"
        if not (ext_done.is_file() and json.loads(ext_done.read_text()).get("status") == "ok"):
            evaluate(compose(config_name="eval", overrides=eval_over))
        result["external_auc"] = float(json.loads(ext_done.read_text())["metrics"]["all/auroc_patient"])
        if tta:
            tta_dir = run_dir / f"external_tta_{tta}"
            tta_done = tta_dir / "metrics.json"
            if not (tta_done.is_file() and json.loads(tta_done.read_text()).get("status") == "ok"):
                over = [o for o in eval_over if not o.startswith("paths.output_dir=")]
                evaluate(
                    compose(
                        config_name="eval", overrides=[*over, f"tta={tta}", f"paths.output_dir={tta_dir}"]
                    )
                )
            result[f"external_auc_tta_{tta}"] = float(
                json.loads(tta_done.read_text())["metrics"]["all/auroc_patient"]
            )
    return result


def _fmt(values: Sequence[float]) -> str:
    vals = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    if not vals:
        return "n/a"
    sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return f"{np.mean(vals):.3f} ± {sd:.3f} (n={len(vals)})"


def write_table(results: dict[str, Any], path: Path) -> str:
    """Markdown table: one row per recipe (and the baseline), internal/external AUC mean +- sd over seeds."""
    lines = [
        "| recipe | what | internal test AUC | external AUC | seeds | mean train+eval s |",
        "|---|---|---|---|---|---|",
    ]
    base = results.get("baseline", {})
    internal = _fmt([b["internal_auc"] for b in base.values()])
    external = _fmt([b["external_auc"] for b in base.values()])
    lines.append(
        f"| baseline | tumour-mean late/early enhancement ratio (no training) | {internal} | {external}"
        f" | {','.join(sorted(base))} | 0 |"
    )
    extra_keys = sorted({k for r in results.get("runs", {}).values() for s in r.values() for k in s
                         if k.startswith("external_auc_tta")})  # fmt: skip
    for name, per_seed in results.get("runs", {}).items():
        desc = RECIPES[name][0] if name in RECIPES else name
        walls = [s["wall_s"] for s in per_seed.values() if math.isfinite(s.get("wall_s", float("nan")))]
        lines.append(
            f"| {name} | {desc} | {_fmt([s['internal_auc'] for s in per_seed.values()])} | "
            f"{_fmt([s['external_auc'] for s in per_seed.values()])} | {','.join(sorted(per_seed))} | "
            f"{np.mean(walls):.0f} |"
            if walls
            else f"| {name} | {desc} | {_fmt([s['internal_auc'] for s in per_seed.values()])} | "
            f"{_fmt([s['external_auc'] for s in per_seed.values()])} | {','.join(sorted(per_seed))} | n/a |"
        )
        for key in extra_keys:
            vals = [s[key] for s in per_seed.values() if key in s]
            if vals:
                lines.append(
                    f"| {name} + {key[len('external_auc_') :]} | {desc}, eval with TTA | | {_fmt(vals)} | | |"
                )
    text = "\n".join(lines) + "\n"
    _atomic_write(path, text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/heldout_benchmark"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--n", type=int, default=80, help="patients of each internal cohort")
    ap.add_argument("--n-external", type=int, default=40, help="patients of each external cohort")
    ap.add_argument("--difficulty", type=float, default=0.8)
    ap.add_argument("--shape", type=int, nargs=3, default=[16, 64, 64], help="(Z, Y, X) of the volumes")
    ap.add_argument("--epochs", type=int, default=8, help="epochs of every recipe that does not set its own")
    ap.add_argument("--tta", default=None, help="also score the external cohort with eval tta=<mode>")
    ap.add_argument("--list", action="store_true", help="print the recipes and exit")
    args = ap.parse_args(argv)
    if args.list:
        for name, (desc, over) in RECIPES.items():
            print(f"{name:14s} {desc}\n{'':14s} {' '.join(over) or '(main job recipe)'}")  # noqa: T201
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    results: dict[str, Any] = json.loads(res_path.read_text()) if res_path.is_file() else {}
    results.setdefault("runs", {})
    results.setdefault("baseline", {})
    results["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    for seed in args.seeds:
        cohorts = make_cohorts(out, seed, args.n, args.n_external, args.difficulty, args.shape)
        if str(seed) not in results["baseline"]:
            results["baseline"][str(seed)] = {
                "internal_auc": handcrafted_baseline(*cohorts["internal"], split="test"),
                "external_auc": handcrafted_baseline(*cohorts["external"], split=None),
            }
        for name in args.recipes:
            t0 = time.perf_counter()
            try:
                res = run_recipe(name, seed, cohorts, out, args.epochs, args.tta)
            except Exception as exc:  # noqa: BLE001 - one failing recipe must not stop the benchmark
                log.error("recipe %s seed %d failed: %s: %s", name, seed, type(exc).__name__, exc)
                continue
            results["runs"].setdefault(name, {})[str(seed)] = res
            log.info("%s seed %d: %s (%.0f s)", name, seed, res, time.perf_counter() - t0)
            _atomic_write(res_path, json.dumps(results, indent=1, sort_keys=True))
            write_table(results, out / "table.md")
    _atomic_write(res_path, json.dumps(results, indent=1, sort_keys=True))
    print(write_table(results, out / "table.md"))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
