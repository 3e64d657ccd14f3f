"""her2mri-summarize: grouping by experiment and setting, mean ± sd over seeds/folds, failed runs listed."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from her2mri.cli.summarize import main as summarize_main
from her2mri.runs.rundir import parse_override
from her2mri.runs.summary import (
    assign_settings,
    collect_runs,
    format_cell,
    summarize,
    summarize_runs,
)


def _fake_run(
    run_dir: Path,
    overrides: list[str],
    metrics: dict[str, float | None] | None,
    *,
    experiment: str | None = "paper_thda",
    seed: int = 0,
    status: str = "ok",
    error: str | None = None,
    kfold: int | None = None,
    task: str = "train",
) -> Path:
    """A run directory as her2mri-train writes it: .hydra side files and (optionally) metrics.json."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    choice = "null" if experiment is None else experiment
    (hydra_dir / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    choices:\n      experiment: {choice}\n")
    data = {"split_mode": "kfold" if kfold is not None else "official", "fold": kfold or 0}
    config = {"task_name": task, "seed": seed, "data": data}
    (hydra_dir / "config.yaml").write_text(json.dumps(config))
    if metrics is not None:
        payload = {"metrics": metrics, "config": config, "status": status}
        if error:
            payload["error"] = error
        (run_dir / "metrics.json").write_text(json.dumps(payload))
    return run_dir


def _sweep(root: Path) -> dict[str, list[float]]:
    """2 normalisations x 3 seeds (one seed of q98 failed, one of minmax never finished)."""
    aucs = {"clip_channel_q98": [0.71, 0.74, 0.69], "minmax_global": [0.66, 0.62]}
    job = 0
    for norm, values in aucs.items():
        for seed, auc in enumerate(values):
            metrics = {"val/auroc_patient": auc + 0.01, "test/auroc_patient": auc, "test/n_patients": 20.0}
            metrics["test/site_A/auroc_patient"] = auc - 0.05
            _fake_run(
                root / str(job),
                [f"preprocess={norm}", f"seed={seed}", "trainer=gpu", f"sweep=s{seed}"],
                metrics,
                seed=seed,
            )
            job += 1
    _fake_run(
        root / str(job),
        ["preprocess=clip_channel_q98", "seed=9", "trainer=gpu"],
        {},
        seed=9,
        status="failed",
        error="RuntimeError: CUDA out of memory",
    )
    _fake_run(root / str(job + 1), ["preprocess=minmax_global", "seed=8", "trainer=gpu"], None, seed=8)
    return aucs


def test_parse_override():
    assert parse_override("+a.b=3") == ("a.b", "3")
    assert parse_override("++x=[1,2]") == ("x", "[1,2]")
    assert parse_override("~callbacks.early_stopping") == ("callbacks.early_stopping", "(deleted)")
    assert parse_override("novalue") is None


def test_groups_means_and_failed_runs(tmp_path):
    aucs = _sweep(tmp_path / "multirun")
    runs = collect_runs([tmp_path / "multirun"])
    assert len(runs) == 7
    assign_settings(runs)
    # trainer=gpu is the same in every run: not part of the setting; seed is a replicate key
    assert {r.setting for r in runs} == {"preprocess=clip_channel_q98", "preprocess=minmax_global"}
    groups = {g.setting: g for g in summarize_runs(runs)}
    for norm, values in aucs.items():
        g = groups[f"preprocess={norm}"]
        assert g.n_runs == len(values) and g.n_failed == 1
        assert g.mean["test/auroc_patient"] == pytest.approx(statistics.fmean(values))
        assert g.sd["test/auroc_patient"] == pytest.approx(statistics.stdev(values))
        assert g.seeds == list(range(len(values)))
    statuses = sorted(r.status for r in runs if not r.ok)
    assert statuses == ["failed", "missing"]


def test_summary_files_and_markdown(tmp_path):
    aucs = _sweep(tmp_path / "mr")
    runs, groups, text = summarize([tmp_path / "mr"], tmp_path / "out")
    for name in ("summary.csv", "summary.md", "runs.csv"):
        assert (tmp_path / "out" / name).is_file()
    q98 = aucs["clip_channel_q98"]
    cell = f"{statistics.fmean(q98):.3f} ± {statistics.stdev(q98):.3f}"
    row = next(line for line in text.splitlines() if "preprocess=clip_channel_q98" in line)
    assert cell in row
    assert "CUDA out of memory" in text and "no metrics.json" in text
    assert "Failed or unfinished runs (2)" in text
    header = next(line for line in text.splitlines() if line.startswith("| task"))
    assert "test/auroc_patient" in header and "site_A" not in header  # per-site metrics: CSV only
    with (tmp_path / "out" / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    by_setting = {r["setting"]: r for r in rows}
    mg = aucs["minmax_global"]
    assert float(by_setting["preprocess=minmax_global"]["test/auroc_patient_mean"]) == pytest.approx(
        statistics.fmean(mg), abs=1e-6
    )
    assert by_setting["preprocess=minmax_global"]["n_failed"] == "1"
    assert float(by_setting["preprocess=minmax_global"]["test/site_A/auroc_patient_mean"]) == pytest.approx(
        statistics.fmean(mg) - 0.05, abs=1e-6
    )
    with (tmp_path / "out" / "runs.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 7


def test_null_metrics_folds_and_single_runs(tmp_path):
    root = tmp_path / "folds"
    values = [0.8, None, 0.6]
    for fold, auc in enumerate(values):
        _fake_run(root / str(fold), [f"data.fold={fold}"], {"test/auroc_patient": auc}, kfold=fold)
    _fake_run(tmp_path / "single", [], {"test/auroc_patient": 0.7}, experiment=None)
    runs = collect_runs([root, tmp_path / "single"])
    assign_settings(runs)
    groups = summarize_runs(runs)
    folds = next(g for g in groups if g.experiment == "paper_thda")
    assert folds.folds == [0, 1, 2] and folds.setting == "-"
    assert folds.count["test/auroc_patient"] == 2
    assert folds.mean["test/auroc_patient"] == pytest.approx(0.7)
    assert format_cell(folds, "test/auroc_patient").endswith("(n=2)")
    single = next(g for g in groups if g.experiment == "-")
    assert format_cell(single, "test/auroc_patient") == "0.700"


def test_cli(tmp_path, capsys):
    _sweep(tmp_path / "mr")
    assert summarize_main([str(tmp_path / "mr"), "--metrics", "test/auroc_patient"]) == 0
    out = capsys.readouterr().out
    assert "| task | experiment | setting | n | seeds | folds | test/auroc_patient |" in out
    assert (tmp_path / "mr" / "summary.md").is_file()
    assert summarize_main([str(tmp_path / "absent")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert summarize_main([str(empty)]) == 2
    assert "no run directory" in capsys.readouterr().err


def _fold_predictions(run_dir: Path, pids: list[str], labels: list[int], probs: list[float]) -> None:
    pred = run_dir / "predictions"
    pred.mkdir(parents=True, exist_ok=True)
    lines = ["pid,label,prob,n_slices"] + [
        f"{p},{y},{q!r},1" for p, y, q in zip(pids, labels, probs, strict=True)
    ]
    (pred / "test_patients.csv").write_text("\n".join(lines) + "\n")


def test_pooled_oof_auc_equals_auc_of_the_concatenated_folds(tmp_path):
    """sweep=folds: the folds' test predictions pooled give one AUC with a DeLong (or bootstrap) CI."""
    import numpy as np

    from her2mri.stats import auc_ci_delong

    rng = np.random.default_rng(0)
    all_y, all_p = [], []
    for seed in (0, 1):
        for fold in range(3):
            run = _fake_run(
                tmp_path / "mr" / f"s{seed}f{fold}",
                [f"data.fold={fold}", f"seed={seed}"],
                {"test/auroc_patient": 0.7},
                seed=seed,
                kfold=fold,
            )
            y = rng.integers(0, 2, 20)
            y[:2] = [0, 1]
            p = np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.2, 20) + 0.1 * fold, 0, 1)
            _fold_predictions(run, [f"P{fold}_{i}" for i in range(20)], y.tolist(), p.tolist())
            if seed == 0:
                all_y.append(y)
                all_p.append(p)
    ref = auc_ci_delong(np.concatenate(all_y), np.concatenate(all_p))
    runs, groups, text = summarize([tmp_path / "mr"], tmp_path / "out")
    (g,) = groups
    assert g.folds == [0, 1, 2] and len(g.oof) == 2
    o0 = next(o for o in g.oof if o.seed == 0)
    assert o0.n == 60 and o0.auroc == pytest.approx(ref.auc, abs=1e-12)
    assert (o0.ci_low, o0.ci_high) == pytest.approx((ref.ci_lower, ref.ci_upper), abs=1e-12)
    assert o0.auroc != pytest.approx(g.mean["test/auroc_patient"])  # not the mean of the per-fold AUCs
    assert "pooled OOF AUC (95% CI)" in text and "(mean of 2 seeds)" in text
    with (tmp_path / "out" / "oof_pooled.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["seed"] for r in rows] == ["0", "1"]
    assert float(rows[0]["auroc"]) == pytest.approx(ref.auc, abs=1e-6)
    # bootstrap CI from the CLI
    assert summarize_main([str(tmp_path / "mr"), "--out", str(tmp_path / "b"), "--oof-ci", "bootstrap",
                           "--n-boot", "200", "--quiet"]) == 0  # fmt: skip
    with (tmp_path / "b" / "oof_pooled.csv").open() as fh:
        b = list(csv.DictReader(fh))[0]
    assert b["ci_method"] == "bootstrap" and float(b["ci_low"]) < float(b["auroc"]) < float(b["ci_high"])


def test_pooled_oof_refuses_overlapping_folds(tmp_path):
    for fold in range(2):
        run = _fake_run(tmp_path / str(fold), [f"data.fold={fold}"], {"test/auroc_patient": 0.7}, kfold=fold)
        _fold_predictions(run, ["A", "B", "C", "D"], [0, 1, 0, 1], [0.1, 0.8, 0.3, 0.6])
    _, groups, _ = summarize([tmp_path], tmp_path / "out")
    (o,) = groups[0].oof
    assert o.n == 0 and "appear in the test split of two folds" in o.notes[0]
