"""Time radiomics: pyradiomics extraction per case, and whole experiments per stage.

``--mode extract`` (default): 3-D tumour with and without wavelets, on the real pyradiomics breast1 NRRD
(143-voxel lesion) and a synthetic 256x256x80 volume with an ellipsoidal tumour (spacing 2 x 0.7 x 0.7 mm),
with her2mri/conf/pyradiomics/mri_3d.yaml and mri_3d_wavelet.yaml.

``--mode experiments``: every ``radiomics_experiment`` (or those named) on synthetic cohorts of each size in
``--n`` (an experiment's sizes one after the other), each in its own ``her2mri-radiomics`` process with a
fresh cache (so extraction is timed) and a time limit; prints a markdown table (load average, wall and CPU
time, extraction per case, share of time per stage), the CPU-time growth of every stage from the smallest to
the largest cohort beside linear, the out-of-fold AUC of each signature, and writes ``bench_radiomics.json``
in ``--out``. A run that hits the
limit is reported as such. CPU time is the main process's (``n_jobs=1``): on a shared machine it is the
steadier figure.

Usage::

    python tools/bench_radiomics.py [--repeats 3]
    python tools/bench_radiomics.py --mode experiments --n 30 120 [--experiments uran hu2025] \
        [--timeout 1800] [--out bench_out] [--extra cv.outer_folds=5 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from her2mri.radiomics.cases import RadiomicsCase
from her2mri.radiomics.extract import RegionSpec, extract_case, load_params

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real" / "pyradiomics_breast1" / "data"


def synthetic_case(tmp: Path) -> RadiomicsCase:
    import nibabel as nib

    rng = np.random.default_rng(0)
    shape, sp = (80, 256, 256), (2.0, 0.7, 0.7)
    img = rng.normal(200, 20, shape).astype(np.float32)
    zz, yy, xx = np.indices(shape, sparse=True)
    mask = ((zz - 40) * sp[0] / 10) ** 2 + ((yy - 128) * sp[1] / 12) ** 2 + ((xx - 128) * sp[2] / 9) ** 2 <= 1
    img[mask] += 150
    nib.save(nib.Nifti1Image(img, np.eye(4)), str(tmp / "img.nii"))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), str(tmp / "mask.nii"))
    return RadiomicsCase("synthetic", {"early": tmp / "img.nii"}, tmp / "mask.nii", sp)


EXPERIMENTS = ("uran", "hu2025", "peritumoral", "multimodal_icc")


def run_experiment_timed(exp: str, n: int, out: Path, timeout: float, extra: list[str]) -> dict:
    """Run one experiment on a synthetic cohort of ``n`` patients in a subprocess; its timing record."""
    run = out / f"{exp}_n{n}"
    env = {**os.environ, "HER2MRI_CACHE": str(out / f"cache_{exp}_n{n}"), "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "her2mri.cli.radiomics",
        f"radiomics_experiment={exp}",
        f"cohort.n={n}",
        f"hydra.run.dir={run}",
        "extraction.progress=false",
        *extra,
    ]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        load = (load0, os.getloadavg()[0])
        status = f"timeout > {timeout:.0f} s"
        if (run / "experiment.json").is_file():  # the experiment itself had finished: keep its own timings
            return run_record(exp, n, run, None, load, status + " (process; the experiment had finished)")
        return {"experiment": exp, "n": n, "status": status, "loadavg": load}
    wall = time.perf_counter() - t0
    load = (load0, os.getloadavg()[0])
    if proc.returncode != 0:
        return {"experiment": exp, "n": n, "status": "failed", "stderr": proc.stderr[-2000:], "loadavg": load}
    return run_record(exp, n, run, wall, load)


def run_record(
    exp: str, n: int, run: Path, process_wall: float | None, load: tuple[float, float], note: str = ""
) -> dict:
    """The timing record of a finished run, from its ``experiment.json`` and the signatures' metrics."""
    info = json.loads((run / "experiment.json").read_text())
    summary = [json.loads((run / name / "metrics.json").read_text()) for name in _signatures(run)]
    return {
        "experiment": exp,
        "n": n,
        "status": "ok",
        "note": note,
        "process_wall_s": process_wall,
        "wall_s": info["wall_s"],
        "cpu_s": info.get("cpu_s"),
        "extraction_s_per_case": info.get("extraction_s_per_case"),
        "stage_s": info.get("stage_s", {}),
        "stage_cpu_s": info.get("stage_cpu_s", {}),
        "oof_auc": {m["signature"]: m["metrics"].get("val/auroc_patient") for m in summary},
        "n_train": info.get("n_train"),
        "loadavg": load,
    }


def _signatures(run: Path) -> list[str]:
    import pandas as pd

    return list(pd.read_csv(run / "summary.csv")["signature"])


def _stage_shares(rec: dict) -> str:
    """Share of the CPU time per stage (steadier than wall time on a shared machine)."""
    st = rec.get("stage_cpu_s") or {}
    total = rec.get("cpu_s") or sum(st.values()) or 1.0
    parts = [f"{k.removeprefix('signature:')} {100 * v / total:.0f} %" for k, v in st.items()]
    return ", ".join(parts)


TABLE_HEAD = (
    "| experiment | patients | load average (start-end) | wall s | CPU s "
    "| extraction CPU s/case (wall s/case) | share of CPU time per stage |\n"
    "|---|---|---|---|---|---|---|"
)


def _load(rec: dict) -> str:
    la = rec.get("loadavg")
    return f"{la[0]:.1f}-{la[1]:.1f}" if la else ""


def table_row(rec: dict) -> str:
    """One markdown row of a timing record."""
    if rec["status"] != "ok":
        return f"| {rec['experiment']} | {rec['n']} | {_load(rec)} | {rec['status']} | | | |"
    ex_cpu = (rec.get("stage_cpu_s") or {}).get("extraction", float("nan")) / rec["n"]
    return (
        f"| {rec['experiment']} | {rec['n']} | {_load(rec)} | {rec['wall_s']:.0f}"
        f"{' (' + rec['note'] + ')' if rec.get('note') else ''} | {rec['cpu_s']:.0f} | "
        f"{ex_cpu:.2f} ({rec['extraction_s_per_case']:.2f}) | {_stage_shares(rec)} |"
    )


def growth_lines(records: list[dict]) -> list[str]:
    """Per experiment, the CPU-time growth of each stage between the smallest and the largest cohort.

    The folds and grids are fixed, so "linear in patients x folds" means a growth of at most
    ``n_large / n_small``; each stage's factor is printed with its ratio to linear (<= 1: not faster).
    """
    out = []
    by_exp: dict[str, list[dict]] = {}
    for rec in records:
        if rec["status"] == "ok":
            by_exp.setdefault(rec["experiment"], []).append(rec)
    for exp, recs in by_exp.items():
        if len(recs) < 2:
            continue
        small, large = min(recs, key=lambda r: r["n"]), max(recs, key=lambda r: r["n"])
        linear = large["n"] / small["n"]
        parts = [f"total {large['cpu_s'] / small['cpu_s']:.2f}x"]
        for stage, c_small in (small.get("stage_cpu_s") or {}).items():
            c_large = (large.get("stage_cpu_s") or {}).get(stage)
            if c_large is None or c_small <= 0:
                continue
            g = c_large / c_small
            parts.append(f"{stage.removeprefix('signature:')} {g:.2f}x ({g / linear:.2f} of linear)")
        out.append(
            f"{exp} CPU growth {small['n']} -> {large['n']} patients (linear: {linear:.0f}x): "
            + ", ".join(parts)
        )
    return out


def experiments_main(args: argparse.Namespace) -> None:
    """Time every experiment x cohort size; print the markdown table; write bench_radiomics.json."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    if args.table_from:
        records = json.loads(Path(args.table_from).read_text())
        print(TABLE_HEAD)
        for rec in records:
            print(table_row(rec))
    else:
        print(TABLE_HEAD, flush=True)
        for exp in args.experiments:  # each experiment's sizes one after the other: similar load
            for n in args.n:
                rec = run_experiment_timed(exp, n, out, args.timeout, args.extra)
                records.append(rec)
                (out / "bench_radiomics.json").write_text(json.dumps(records, indent=2))
                print(table_row(rec), flush=True)
    for line in growth_lines(records):
        print(line)
    for rec in records:
        if rec["status"] == "ok":
            aucs = ", ".join(f"{k} {v:.3f}" for k, v in rec["oof_auc"].items() if v is not None)
            print(f"{rec['experiment']} n={rec['n']}: out-of-fold AUC {aucs}")


def main() -> None:
    """Print seconds per case for each case x parameter set, or the experiments table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("extract", "experiments"), default="extract")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, nargs="+", default=[30, 120])
    ap.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--out", default="bench_radiomics_out")
    ap.add_argument("--extra", nargs="*", default=[], help="more her2mri-radiomics overrides")
    ap.add_argument("--table-from", default=None, help="print the table of an existing bench_radiomics.json")
    args = ap.parse_args()
    if args.mode == "experiments":
        experiments_main(args)
        return
    with tempfile.TemporaryDirectory() as d:
        cases = [synthetic_case(Path(d))]
        if REAL.is_dir():
            cases.insert(
                0,
                RadiomicsCase(
                    "breast1",
                    {"t1": REAL / "breast1_image.nrrd"},
                    REAL / "breast1_label.nrrd",
                    None,
                    axis_order="xyz",
                ),
            )
        for case in cases:
            for pname in ("mri_3d", "mri_3d_wavelet"):
                params = load_params(ROOT / "her2mri" / "conf" / "pyradiomics" / f"{pname}.yaml")
                extract_case(case, params, RegionSpec())  # warm-up
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    feats = extract_case(case, params, RegionSpec())
                    times.append(time.perf_counter() - t0)
                print(
                    f"{case.pid:10s} {pname:15s} {len(feats):5d} features  {np.median(times):6.2f} s/case "
                    f"(median of {args.repeats})"
                )


if __name__ == "__main__":
    main()
