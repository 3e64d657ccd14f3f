"""her2mri-report with an internal test run and an external-site run: side by side, unpaired DeLong,
locked threshold, recalibration and conformal calls, Table 1, subgroups, site probe, checklist (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import check_html_numbers

from her2mri import stats
from her2mri.cli.report import main as report_main
from her2mri.report import build_report
from her2mri.report.checklist import AUTHORS
from her2mri.report.html import json_pointer
from her2mri.stats.recalibration import fit_recalibrator
from her2mri.training.calibrator import CalibrationBundle, save_calibration

N_BOOT = 100


def _preds(n: int, prefix: str, seed: int, shift: float = 0.0, sites=("A", "B")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    z = 1.6 * y + rng.normal(0, 1, n) + shift
    return pd.DataFrame(
        {
            "pid": [f"{prefix}{i:03d}" for i in range(n)],
            "label": y,
            "prob": 1 / (1 + np.exp(-(z - 0.8))),
            "n_slices": 3,
            "site": rng.choice(sites, n),
        }
    )


def make_runs(root: Path) -> tuple[Path, Path, Path]:
    """A training run (val + test), an internal eval run (test), an external eval run (split=all, recal)."""
    train = root / "train"
    (train / "predictions").mkdir(parents=True)
    (train / "checkpoints").mkdir()
    ckpt = train / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"not a real checkpoint")
    val = _preds(60, "V", 1)
    val.to_csv(train / "predictions" / "val_patients.csv", index=False)
    # what her2mri-train stores and her2mri-eval copies from the checkpoint: the threshold locked on val
    locked = {"value": stats.youden_threshold(val["label"], val["prob"]), "rule": "youden", "n_val": 60}
    test = _preds(80, "P", 2)
    test.to_csv(train / "predictions" / "test_patients.csv", index=False)
    cfg = {"model": {"name": "thda_resnet34"}, "task_name": "train"}
    (train / "metrics.json").write_text(
        json.dumps({"metrics": {}, "config": cfg, "status": "ok", "locked_threshold": locked})
    )
    internal = root / "eval_int"
    (internal / "predictions").mkdir(parents=True)
    test.to_csv(internal / "predictions" / "test_patients.csv", index=False)
    icfg = {"model": {"name": "thda_resnet34"}, "split": "test", "ckpt_path": str(ckpt)}
    (internal / "metrics.json").write_text(
        json.dumps(
            {
                "metrics": {},
                "config": icfg,
                "status": "ok",
                "ckpt_path": str(ckpt),
                "locked_threshold": locked,
            }
        )
    )
    external = root / "eval_ext"
    (external / "predictions").mkdir(parents=True)
    ext = _preds(90, "E", 3, shift=1.2, sites=("C", "D"))  # miscalibrated at the new site
    ext.to_csv(external / "predictions" / "all_patients.csv", index=False)
    ecfg = {"model": {"name": "thda_resnet34"}, "split": "all", "ckpt_path": str(ckpt)}
    (external / "metrics.json").write_text(
        json.dumps(
            {
                "metrics": {},
                "config": ecfg,
                "status": "ok",
                "ckpt_path": str(ckpt),
                "locked_threshold": locked,
            }
        )
    )
    # recalibration fitted on the first 30 external patients, applied to the other 60
    cal, held = ext.iloc[:30], ext.iloc[30:]
    rec = fit_recalibrator(cal["label"], cal["prob"], "platt")
    conf = stats.fit_conformal(cal["label"], rec.apply(cal["prob"]), alpha=0.2)
    bundle = CalibrationBundle(rec, conf, str(ckpt), {"source": "fraction", "n": 30})
    save_calibration(bundle, external / "calibration.json")
    applied = bundle.apply(held["prob"].to_numpy())
    out = held[["pid", "label"]].copy()
    out["prob"], out["prob_raw"], out["call"] = applied["prob"], held["prob"].to_numpy(), applied["call"]
    out.to_csv(external / "predictions" / "all_recalibrated_patients.csv", index=False)
    return train, internal, external


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return make_runs(tmp_path_factory.mktemp("valruns"))


@pytest.fixture(scope="module")
def clinical(runs, tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    pids = (
        [f"P{i:03d}" for i in range(80)] + [f"E{i:03d}" for i in range(90)] + [f"V{i:03d}" for i in range(60)]
    )
    df = pd.DataFrame(
        {"pid": pids, "age": rng.integers(30, 80, len(pids)), "HR": rng.choice(["pos", "neg"], len(pids))}
    )
    df.loc[3, "HR"] = None
    path = tmp_path_factory.mktemp("clin") / "clinical.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def report(runs, clinical, tmp_path_factory):
    _, internal, external = runs
    out = tmp_path_factory.mktemp("valreport")
    paths = build_report(
        [f"model={internal}", f"model={external}"], out, n_boot=N_BOOT, clinical=clinical, subgroups=("HR",)
    )
    return paths, json.loads(paths.json.read_text(encoding="utf-8"))


def test_disjoint_cohorts_side_by_side_with_locked_threshold(runs, report):
    train, internal, external = runs
    paths, doc = report
    block = doc["cohorts"]
    assert [c["name"] for c in block["cohorts"]] == ["internal", "external"]
    assert set(block["sources"]) == {"internal: model", "external: model"}
    ext = block["sources"]["external: model"]
    assert ext["split"] == "all" and ext["metrics"]["n"] == 90
    # the threshold is locked on the training run's validation patients, not chosen on the external data
    val = pd.read_csv(train / "predictions" / "val_patients.csv")
    assert ext["threshold_source"] == "locked"
    assert ext["metrics"]["threshold"] == pytest.approx(stats.youden_threshold(val["label"], val["prob"]))
    e = pd.read_csv(external / "predictions" / "all_patients.csv")
    tm = stats.metrics_at_threshold(e["label"], e["prob"], ext["metrics"]["threshold"])
    assert ext["metrics"]["sensitivity"] == pytest.approx(tm.sensitivity.estimate)
    assert ext["metrics"]["ece"] == pytest.approx(stats.expected_calibration_error(e["label"], e["prob"]))
    # unpaired DeLong equals the direct call on the two files
    i = pd.read_csv(internal / "predictions" / "test_patients.csv")
    (u,) = block["unpaired"]
    ref = stats.delong_test_unpaired(i["label"], i["prob"], e["label"], e["prob"])
    assert (u["statistic"], u["df"], u["p_value"]) == pytest.approx((ref.statistic, ref.df, ref.p_value))
    assert sorted(r["site"] for r in ext["per_site"]) == ["C", "D"]
    # the paired sections still work on the internal cohort
    assert list(doc["models"]) == ["model"] and doc["cohort"]["n"] == 80
    assert any("2 cohorts on disjoint patients" in w for w in doc["warnings"])


def test_recalibration_section_equals_direct_stats(runs, report):
    _, _, external = runs
    _, doc = report
    r = doc["recalibration"]["external: model"]
    df = pd.read_csv(external / "predictions" / "all_recalibrated_patients.csv")
    assert r["n"] == 60 and r["method"] == "platt"
    assert r["before"]["ece"] == pytest.approx(stats.expected_calibration_error(df["label"], df["prob_raw"]))
    assert r["after"]["brier"] == pytest.approx(stats.brier_score(df["label"], df["prob"]))
    assert r["after"]["ece"] < r["before"]["ece"]  # the shifted external scores are repaired
    sets = {"HER2-": {0}, "HER2+": {1}, "uncertain": {0, 1}, "empty": set()}
    covered = np.mean([y in sets[c] for y, c in zip(df["label"], df["call"], strict=True)])
    assert r["conformal"]["coverage"] == pytest.approx(covered)
    assert r["conformal"]["share_uncertain"] == pytest.approx((df["call"] == "uncertain").mean())


def test_table1_subgroups_probe_and_checklist(report):
    paths, doc = report
    t1 = doc["table1"]
    assert t1["groups"] == ["external all", "internal test"]
    variables = {r["variable"] for r in t1["rows"]}
    assert {"N", "HER2 status", "site", "age", "HR"} <= variables
    assert any(r["level"] == "n missing" and r["variable"] == "HR" for r in t1["rows"])
    assert (paths.html.parent / "table1.csv").is_file() and (paths.html.parent / "subgroups.csv").is_file()
    sub = doc["subgroups"]["sources"]["external: model"]
    assert {r["variable"] for r in sub} == {"site", "age band", "HR"}
    assert sum(r["n"] for r in sub if r["variable"] == "site") == 90
    probe = doc["site_probe"]["sources"]["internal: model"]
    assert probe["sites"] == ["A", "B"] and 0 <= probe["auc_outputs"] <= 1 and probe["warn"] is False
    items = {r["topic"]: r for r in doc["checklist"]}
    assert items["Internal and external validation"]["status"] == "filled"
    assert "internal (80 patients)" in items["Internal and external validation"]["text"]
    assert (
        "locked threshold stored with each model"
        in items["How the classification threshold was chosen"]["text"]
    )
    assert items["Eligibility criteria"]["text"] == AUTHORS
    assert "coverage" in items["Uncertainty of individual predictions"]["text"]


def test_html_shows_every_section_and_numbers_equal_json(report):
    paths, doc = report
    page = paths.html.read_text(encoding="utf-8")
    for h2 in ("Internal vs external validation", "Recalibration and conformal calls", "Table 1", "Subgroups",
               "Site-shortcut probe", "Reporting checklist (TRIPOD+AI / CLAIM)"):  # fmt: skip
        assert f"<h2>{h2}" in page, h2
    spans = check_html_numbers(page, doc)
    keys = {k for k, _, _ in spans}
    assert json_pointer("cohorts", "unpaired", 0, "p_value") in keys
    assert json_pointer("cohorts", "sources", "external: model", "metrics", "auroc_ci_low") in keys
    assert json_pointer("recalibration", "external: model", "after", "ece") in keys
    assert (paths.html.parent / "cohorts.png").is_file() and (
        paths.html.parent / "recalibration.png"
    ).is_file()


def test_cli_cohort_names_and_errors(runs, clinical, tmp_path, capsys):
    _, internal, external = runs
    args = [str(internal), str(external), "--out", str(tmp_path / "r"), "--n-boot", "50"]
    assert report_main([*args, "--cohort-names", "ISPY2,Duke"]) == 0
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [c["name"] for c in doc["cohorts"]["cohorts"]] == ["ISPY2", "Duke"]
    assert report_main([*args, "--cohort-names", "only_one"]) == 2
    assert "cohort_names has 1 name(s) for 2 cohort(s)" in capsys.readouterr().err
    assert report_main([*args, "--clinical", str(clinical), "--subgroups", "stage"]) == 2
    assert "subgroup column(s) ['stage']" in capsys.readouterr().err


def test_youden_rule_finds_the_training_runs_validation_patients(runs, tmp_path):
    """threshold='youden' on an eval run (no val predictions of its own): Youden on the training run's val."""
    train, internal, external = runs
    paths = build_report([str(internal), str(external)], tmp_path / "y", n_boot=20, threshold="youden")
    ext = json.loads(paths.json.read_text())["cohorts"]["sources"]["external: thda_resnet34"]
    val = pd.read_csv(train / "predictions" / "val_patients.csv")
    assert ext["threshold_source"] == "youden_val_training_run" and ext["val_origin"] == "training run"
    assert ext["metrics"]["threshold"] == pytest.approx(stats.youden_threshold(val["label"], val["prob"]))


def test_explicit_cohorts_when_two_cohorts_reuse_patient_ids(runs, tmp_path):
    """Two centres numbering patients alike: --cohorts keeps them apart (else pid overlap would pair them)."""
    _, internal, external = runs
    clash = tmp_path / "ext_same_ids"
    (clash / "predictions").mkdir(parents=True)
    e = pd.read_csv(external / "predictions" / "all_patients.csv")
    e["pid"] = [f"P{i:03d}" for i in range(len(e))]  # the internal test set's ids
    e.to_csv(clash / "predictions" / "test_patients.csv", index=False)
    args = [str(internal), str(clash), "--out", str(tmp_path / "r"), "--n-boot", "20"]
    # a clinical CSV with a cohort column tells the patients of the two centres apart
    ids = [f"P{i:03d}" for i in range(90)]
    clin = pd.DataFrame(
        {"cohort": ["ISPY2"] * 90 + ["Duke"] * 90, "pid": ids + ids, "age": [40] * 90 + [70] * 90}
    )
    clin.to_csv(tmp_path / "clin.csv", index=False)
    assert report_main([*args, "--cohorts", "ISPY2,Duke", "--clinical", str(tmp_path / "clin.csv")]) == 0
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [c["name"] for c in doc["cohorts"]["cohorts"]] == ["ISPY2", "Duke"]
    assert doc["cohorts"]["sources"]["Duke: ext_same_ids"]["metrics"]["n"] == 90
    duke = doc["subgroups"]["sources"]["Duke: ext_same_ids"]
    assert [(r["level"], r["n"]) for r in duke if r["variable"] == "age band"] == [(">=50", 90)]
    ispy = doc["subgroups"]["sources"]["ISPY2: thda_resnet34"]
    assert [(r["level"], r["n"]) for r in ispy if r["variable"] == "age band"] == [("<50", 80)]
    assert report_main([*args, "--cohorts", "a,b,c"]) == 2
