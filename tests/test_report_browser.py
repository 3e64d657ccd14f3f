"""The report as a person sees it: headless Chromium renders it; the numbers in the DOM equal report.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_report import check_html_numbers, write_run

from her2mri.report import build_report
from her2mri.report.html import json_pointer
from her2mri.report.screenshot import dump_dom, find_chromium, screenshot

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_chromium() is None, reason="no Chromium on PATH (Debian: apt-get install -y chromium)"
    ),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    runs = [write_run(root / "a", "thda_resnet34", 2.0, 1), write_run(root / "b", "resnet34", 0.8, 2)]
    paths = build_report(runs, root / "out", n_boot=200)
    return paths, json.loads(paths.json.read_text(encoding="utf-8"))


def test_rendered_dom_numbers_equal_json(report):
    paths, doc = report
    dom = dump_dom(paths.html, timeout=120)
    assert "<h2>Per site</h2>" in dom  # the whole page was rendered
    spans = check_html_numbers(dom, doc)
    keys = {k for k, _, _ in spans}
    assert json_pointer("models", "resnet34", "metrics", "auroc_ci_high") in keys
    assert json_pointer("delong", "p_values", "resnet34", "thda_resnet34") in keys


def test_screenshot_is_a_rendered_page(report, tmp_path):
    from PIL import Image

    paths, _ = report
    out = screenshot(paths.html, tmp_path / "shot.png", width=1400, height=4000, timeout=120)
    img = np.asarray(Image.open(out).convert("L"), dtype=np.float64)
    assert img.shape == (4000, 1400)
    top = img[:2000]
    assert top.std() > 10  # text, tables and figures, not a blank page
    assert (top < 100).mean() > 0.01  # dark pixels: text and plot lines


def test_internal_and_external_side_by_side_render(tmp_path):
    """Issue 16: an internal test run and an external-site run, rendered by Chromium in one report."""
    from PIL import Image
    from test_report_validation import make_runs

    _, internal, external = make_runs(tmp_path / "runs")
    paths = build_report([str(internal), str(external)], tmp_path / "out", n_boot=100)
    doc = json.loads(paths.json.read_text(encoding="utf-8"))
    dom = dump_dom(paths.html, timeout=120)
    assert "Internal vs external validation" in dom and "Reporting checklist" in dom
    spans = check_html_numbers(dom, doc)
    keys = {k for k, _, _ in spans}
    assert json_pointer("cohorts", "unpaired", 0, "p_value") in keys
    for label in ("internal: thda_resnet34", "external: thda_resnet34"):
        assert json_pointer("cohorts", "sources", label, "metrics", "auroc") in keys
    out = screenshot(paths.html, tmp_path / "shot.png", width=1400, height=6000, timeout=120)
    img = np.asarray(Image.open(out).convert("L"), dtype=np.float64)
    assert img.std() > 10 and (img < 100).mean() > 0.01
