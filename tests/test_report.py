"""her2mri-report: inputs, numbers (equal to direct her2mri.stats calls), HTML == JSON, errors."""

from __future__ import annotations

import json
import math
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2mri import stats
from her2mri.cli.report import main as report_main
from her2mri.data.errors import DataError
from her2mri.report import build_report, load_sources, read_predictions_csv
from her2mri.report.html import format_value, json_pointer, resolve_pointer
from her2mri.report.roc import roc_band, roc_points
from her2mri.stats.patient_metrics import patient_metrics_with_ci

N_BOOT = 200
SITES = ("ISPY2-A", "ISPY2-B", "DUKE")


def write_run(
    run: Path, model: str, sep: float, seed: int, n_test: int = 90, n_val: int = 50, site: bool = True
):
    """A run directory with seeded val/test patient predictions; larger ``sep`` = better model."""
    rng = np.random.default_rng(seed)
    (run / "predictions").mkdir(parents=True, exist_ok=True)
    for split, n, prefix in (("val", n_val, "V"), ("test", n_test, "P")):
        g = np.random.default_rng(100 + (split == "test"))  # same patients and labels for every model
        y = (g.random(n) < 0.35).astype(int)
        sites = g.choice(SITES, n)
        z = sep * y + rng.normal(0.0, 1.0, n)
        df = pd.DataFrame(
            {
                "pid": [f"{prefix}{i:03d}" for i in range(n)],
                "label": y,
                "prob": 1.0 / (1.0 + np.exp(-(z - sep / 2))),
                "n_slices": 4,
            }
        )
        if site:
            df["site"] = sites
        df.to_csv(run / "predictions" / f"{split}_patients.csv", index=False)
    (run / "metrics.json").write_text(
        json.dumps({"metrics": {}, "config": {"model": {"name": model}}, "status": "ok"}), encoding="utf-8"
    )
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    return write_run(root / "a", "thda_resnet34", 2.0, 1), write_run(root / "b", "resnet34", 0.8, 2)


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    paths = build_report(list(runs), out, n_boot=N_BOOT, seed=3, threshold="youden")
    return paths, json.loads(paths.json.read_text(encoding="utf-8"))


class SpanParser(HTMLParser):
    """Collects ``<span class="num" data-key=.. data-fmt=..>text</span>`` of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[tuple[str, str, str]] = []
        self._cur: tuple[str, str] | None = None
        self._text: list[str] = []
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and "data-key" in a:
            self._cur, self._text = (a["data-key"], a["data-fmt"]), []
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._cur is not None:
            self._text.append(data)
        if self._in_h2:
            self.h2.append(data)

    def handle_endtag(self, tag):
        if tag == "span" and self._cur is not None:
            self.spans.append((*self._cur, "".join(self._text)))
            self._cur = None
        if tag == "h2":
            self._in_h2 = False


def check_html_numbers(page: str, doc: dict) -> list[tuple[str, str, str]]:
    """Every number span shows the JSON value: same formatting, and within rounding of the value."""
    parser = SpanParser()
    parser.feed(page)
    assert parser.spans, "no number spans found in the page"
    for key, kind, text in parser.spans:
        value = resolve_pointer(doc, key)
        assert text == format_value(value, kind), (key, text, value)
        if value is None:
            assert text == "n/a"
        elif text.startswith("<"):
            assert value < 0.001
        else:  # independent of format_value: the shown text is the value rounded
            digits = len(text.split(".")[1]) if "." in text else 0
            assert abs(float(text) - value) <= 0.5 * 10**-digits + 1e-12, (key, text, value)
    return parser.spans


def common_csv(run: Path, split: str = "test") -> pd.DataFrame:
    return pd.read_csv(run / "predictions" / f"{split}_patients.csv", dtype={"pid": str}).sort_values("pid")


# ----------------------------------------------------------------------------------------------- outputs
def test_outputs_exist_and_are_self_contained(report):
    paths, doc = report
    assert paths.html.is_file() and paths.json.is_file()
    for key in ("roc", "calibration", "decision_curve", "confusion"):
        assert paths.figures[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths.html.read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 4
    assert not re.search(r"(src|href)=\"https?:", page)  # nothing loaded from the network
    assert set(doc["models"]) == {"thda_resnet34", "resnet34"}  # names from metrics.json config


def test_json_numbers_equal_direct_stats_calls(runs, report):
    _, doc = report
    for run, name in zip(runs, ("thda_resnet34", "resnet34"), strict=True):
        test, val = common_csv(run), common_csv(run, "val")
        y, p = test["label"].to_numpy(), test["prob"].to_numpy()
        m = doc["models"][name]["metrics"]
        de = stats.auc_ci_delong(y, p)
        bo = stats.auc_ci_bootstrap(y, p, n_boot=N_BOOT, seed=3)
        assert m["auroc"] == pytest.approx(stats.roc_auc(y, p), abs=1e-12)
        assert (m["auroc_ci_low"], m["auroc_ci_high"]) == pytest.approx((de.ci_lower, de.ci_upper), abs=1e-12)
        assert (m["auroc_boot_ci_low"], m["auroc_boot_ci_high"]) == pytest.approx(
            (bo.ci_lower, bo.ci_upper), abs=1e-12
        )
        thr = stats.youden_threshold(val["label"], val["prob"])
        assert m["threshold"] == pytest.approx(thr, abs=1e-15) and m["threshold_from_val"] == 1
        tm = stats.metrics_at_threshold(y, p, thr)
        for k in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "balanced_accuracy"):
            pc = getattr(tm, k)
            assert (m[k], m[f"{k}_ci_low"], m[f"{k}_ci_high"]) == pytest.approx(
                (pc.estimate, pc.lower, pc.upper), abs=1e-12
            )
        assert doc["models"][name]["confusion_matrix"] == tm.confusion_matrix.tolist()
        cal = stats.calibration_stats(y, p)
        assert (m["calibration_intercept"], m["calibration_slope"], m["brier"]) == pytest.approx(
            (cal.intercept, cal.slope, cal.brier), abs=1e-12
        )
        hl = stats.hosmer_lemeshow(y, p)
        assert (m["hl_chi2"], m["hl_df"], m["hl_p"]) == pytest.approx((hl.chi2, hl.df, hl.p_value), abs=1e-12)
    ya = common_csv(runs[0])["label"].to_numpy()
    scores = {
        "thda_resnet34": common_csv(runs[0])["prob"].to_numpy(),
        "resnet34": common_csv(runs[1])["prob"].to_numpy(),
    }
    pm = stats.delong_pvalue_matrix(ya, scores)
    assert doc["delong"]["p_values"]["thda_resnet34"]["resnet34"] == pytest.approx(
        pm["thda_resnet34"]["resnet34"], abs=1e-12
    )
    assert doc["delong"]["n"] == len(ya)
    dca = stats.decision_curve(ya, scores)
    got = pd.DataFrame(doc["decision_curve"])
    assert np.allclose(got["net_benefit"].astype(float), dca["net_benefit"], atol=1e-12)


def test_better_model_has_higher_auc(report):
    _, doc = report
    a, b = doc["models"]["thda_resnet34"]["metrics"], doc["models"]["resnet34"]["metrics"]
    assert a["auroc"] > b["auroc"] + 0.1
    assert doc["delong"]["p_values"]["thda_resnet34"]["resnet34"] < 0.05


def test_html_numbers_equal_json(report):
    paths, doc = report
    spans = check_html_numbers(paths.html.read_text(encoding="utf-8"), doc)
    keys = {k for k, _, _ in spans}
    for name in doc["models"]:
        for metric in (
            "auroc",
            "auroc_ci_low",
            "auroc_boot_ci_high",
            "sensitivity_ci_low",
            "npv",
            "brier",
            "calibration_slope",
            "hl_chi2",
            "hl_p",
            "threshold",
        ):
            assert json_pointer("models", name, "metrics", metric) in keys
    assert json_pointer("delong", "p_values", "thda_resnet34", "resnet34") in keys
    assert json_pointer("delong", "pairs", 0, "diff_ci_lower") in keys


def test_per_site_table_only_with_sites(report, runs, tmp_path):
    paths, doc = report
    assert doc["has_sites"]
    rows = doc["models"]["resnet34"]["per_site"]
    assert (
        sorted(r["site"] for r in rows) == sorted(SITES) and sum(r["n"] for r in rows) == doc["cohort"]["n"]
    )
    page = paths.html.read_text(encoding="utf-8")
    assert "<h2>Per site</h2>" in page and "ISPY2-B" in page
    bare = write_run(tmp_path / "nosite", "resnet34", 1.0, 5, site=False)
    p2 = build_report([bare], tmp_path / "out", n_boot=20)
    assert "<h2>Per site</h2>" not in p2.html.read_text(encoding="utf-8")
    assert json.loads(p2.json.read_text())["delong"]["p_values"] is None  # one model: no comparison


def test_roc_points_and_band(runs):
    df = common_csv(runs[1])
    y, p = df["label"].to_numpy(), df["prob"].to_numpy()
    fpr, tpr, _ = roc_points(y, p)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(stats.roc_auc(y, p), abs=1e-12)  # trapezoid = Mann-Whitney
    band = roc_band(y, p, n_boot=100, seed=0)
    lo, hi = np.asarray(band["tpr_low"]), np.asarray(band["tpr_high"])
    assert np.all(lo <= hi) and np.all(np.diff(lo) >= 0) and np.all(np.diff(hi) >= 0)
    assert lo.min() >= 0 and hi.max() <= 1 and hi[-1] == 1
    assert band == roc_band(y, p, n_boot=100, seed=0) and band != roc_band(y, p, n_boot=100, seed=1)


# ----------------------------------------------------------------------------------------------- inputs
def test_bare_csvs_names_and_pid_intersection(runs, tmp_path):
    a = common_csv(runs[0])
    b = common_csv(runs[1]).iloc[5:]  # model b misses 5 patients
    pa, pb = tmp_path / "alpha.csv", tmp_path / "beta.csv"
    a.drop(columns="site").to_csv(pa, index=False)
    b.to_csv(pb, index=False)
    with pytest.warns(UserWarning, match="5 of 90 patients"):
        paths = build_report([str(pa), f"Beta model={pb}"], tmp_path / "out", n_boot=20, threshold=0.4)
    doc = json.loads(paths.json.read_text())
    assert list(doc["models"]) == ["alpha", "Beta model"]
    assert doc["cohort"]["n"] == 85 and doc["delong"]["n"] == 85
    assert doc["models"]["alpha"]["n_dropped"] == 5 and doc["models"]["Beta model"]["n_dropped"] == 0
    assert (
        doc["models"]["alpha"]["metrics"]["threshold"] == 0.4
        and doc["models"]["alpha"]["threshold_source"] == "fixed"
    )
    assert any("5 of 90" in w for w in doc["warnings"])
    check_html_numbers(paths.html.read_text(encoding="utf-8"), doc)


def test_csv_named_like_a_split_finds_its_val_sibling(runs):
    (src,) = load_sources([runs[0] / "predictions" / "test_patients.csv"])
    assert src.name == "test_patients" and src.val is not None and len(src.val.pids) == 50


def test_missing_column_names_the_file(tmp_path, capsys):
    bad = tmp_path / "preds.csv"
    pd.DataFrame({"pid": ["a", "b"], "label": [0, 1], "score": [0.1, 0.9]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"preds\.csv: missing column\(s\) \['prob'\]"):
        read_predictions_csv(bad)
    assert report_main([str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "'prob'" in err


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ({"pid": ["a", "a"], "label": [0, 1], "prob": [0.1, 0.9]}, "duplicate pid"),
        ({"pid": ["a", "b"], "label": [0, 2], "prob": [0.1, 0.9]}, "'label' must be 0 or 1.*line 3"),
        ({"pid": ["a", "b"], "label": [0, 1], "prob": [0.1, 1.5]}, "'prob' must be a probability.*pid 'b'"),
        ({"pid": ["a", "b"], "label": [0, 1], "prob": [0.1, "x"]}, "'prob' must be a probability"),
    ],
)
def test_bad_csv_values(tmp_path, rows, match):
    path = tmp_path / "p.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(DataError, match=match) as exc:
        read_predictions_csv(path)
    assert str(path) in str(exc.value)


def test_missing_file_and_split(tmp_path, runs, capsys):
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        load_sources([tmp_path / "nothere.csv"])
    with pytest.raises(FileNotFoundError, match=r"external_patients\.csv.*available: \['test_patients\.csv'"):
        load_sources([runs[0]], split="external")
    assert report_main([str(tmp_path / "nothere.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "nothere.csv" in capsys.readouterr().err


def test_conflicting_labels_name_both_files(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame({"pid": ["p1", "p2", "p3"], "label": [0, 1, 1], "prob": [0.2, 0.6, 0.7]}).to_csv(
        a, index=False
    )
    pd.DataFrame({"pid": ["p1", "p2", "p3"], "label": [0, 0, 1], "prob": [0.3, 0.6, 0.9]}).to_csv(
        b, index=False
    )
    with pytest.raises(
        DataError, match=r"b\.csv: labels differ from .*a\.csv for 1 common patient\(s\) \(pid 'p2'\)"
    ):
        build_report([a, b], tmp_path / "out", n_boot=20)


def test_one_class_only_is_a_clear_error(tmp_path):
    path = tmp_path / "neg.csv"
    pd.DataFrame({"pid": ["a", "b", "c"], "label": [0, 0, 0], "prob": [0.2, 0.5, 0.7]}).to_csv(
        path, index=False
    )
    with pytest.raises(DataError, match=r"all have label 0.*neg\.csv"):
        build_report([path], tmp_path / "out", n_boot=20)


def test_unknown_labels_are_dropped_with_a_warning(tmp_path):
    path = tmp_path / "ext.csv"
    pd.DataFrame({"pid": ["a", "b", "c"], "label": [0, -1, 1], "prob": [0.2, 0.5, 0.7]}).to_csv(
        path, index=False
    )
    with pytest.warns(UserWarning, match="1 patient"):
        preds = read_predictions_csv(path)
    assert preds.pids == ("a", "c")


# ----------------------------------------------------------------------------------------------- metrics.json
def test_patient_metrics_with_ci_is_flat_json_and_matches_stats(runs):
    test, val = common_csv(runs[0]), common_csv(runs[0], "val")
    m = patient_metrics_with_ci(test["label"], test["prob"], val["label"], val["prob"], n_boot=N_BOOT, seed=0)
    json.dumps(m, allow_nan=False)
    assert all(v is None or isinstance(v, int | float) for v in m.values())
    de = stats.auc_ci_delong(test["label"], test["prob"])
    assert (m["auroc"], m["auroc_ci_low"], m["auroc_ci_high"]) == pytest.approx(
        (de.auc, de.ci_lower, de.ci_upper), abs=1e-12
    )
    assert m["auroc_boot_ci_low"] == pytest.approx(
        stats.auc_ci_bootstrap(test["label"], test["prob"], N_BOOT, seed=0).ci_lower
    )
    assert m["threshold_from_val"] == 1 and m["n"] == 90 and m["tp"] + m["fn"] == m["n_pos"]
    with pytest.warns(UserWarning, match="fixed fallback 0.5"):
        m2 = patient_metrics_with_ci(test["label"], test["prob"], n_boot=N_BOOT)
    assert m2["threshold"] == 0.5 and m2["threshold_from_val"] == 0


def test_patient_metrics_with_ci_degenerate_inputs():
    y = [0, 0, 0, 1]  # one positive: no DeLong CI, no calibration fit; AUC still defined
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = patient_metrics_with_ci(y, [0.1, 0.2, 0.3, 0.9], threshold=0.5, n_boot=50)
    assert m["auroc"] == 1.0 and m["auroc_ci_low"] is None
    assert any("DeLong CI" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="probs"):
        patient_metrics_with_ci([0, 1], [0.2, math.nan])
    with pytest.raises(ValueError, match="threshold"):
        patient_metrics_with_ci([0, 1, 0, 1], [0.1, 0.8, 0.3, 0.6], threshold=1.5)


# ------------------------------------------------------------------------------------------ Grad-CAM + CLI
def test_gradcam_gallery_and_cli(runs, tmp_path):
    from matplotlib.figure import Figure

    run = write_run(tmp_path / "g", "resnet34", 1.5, 7)
    gdir = run / "gradcam"
    gdir.mkdir()
    fig = Figure(figsize=(2, 2))
    fig.add_subplot(1, 1, 1).imshow(np.eye(8))
    fig.savefig(gdir / "000_P001_s3.png")
    (gdir / "index.json").write_text(
        json.dumps([{"file": "000_P001_s3.png", "pid": "P001", "label": 1, "prob": 0.8123}])
    )
    out = tmp_path / "out"
    assert report_main([f"G={run}", str(runs[1]), "--out", str(out), "--n-boot", "20", "--title", "T"]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["gradcam"]["G"][0]["prob"] == 0.8123 and (out / "gradcam" / "G" / "000_P001_s3.png").is_file()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Grad-CAM</h2>" in page and page.count("data:image/png;base64,") == 5
    spans = check_html_numbers(page, doc)
    assert (json_pointer("gradcam", "G", 0, "prob"), "f3", "0.812") in spans
