"""Nomogram points against R rms::nomogram (6.5) for an lrm fit; plot smoke test."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from her2mri.stats import axis_values, build_nomogram, plot_nomogram

TOL = 1e-6


@pytest.fixture(scope="module")
def ref(ref: dict) -> dict:
    """The ``nomogram`` section of the R reference (overrides conftest's ``ref`` in this module)."""
    return ref["nomogram"]


@pytest.fixture(scope="module")
def nom(ref):
    c = ref["coef"]
    return build_nomogram({k: c[k] for k in ("x1", "x2", "x3")}, c["Intercept"], ref["values"])


def test_points_match_rms(nom, ref):
    for name in ("x1", "x2", "x3"):
        assert nom.points(name, ref["values"][name]) == pytest.approx(ref["points"][name], abs=TOL)
    table = nom.points_table()
    assert table["points"].max() == pytest.approx(100.0)
    assert table.loc[table["predictor"] == "x2", "points"].tolist() == pytest.approx(
        ref["points"]["x2"], abs=TOL
    )


def test_scale_and_linear_predictor_axis_match_rms(nom, ref):
    assert nom.scale == pytest.approx(ref["scale"], abs=TOL)
    assert nom.lp_offset == pytest.approx(ref["lp_offset"], abs=TOL)
    lp_points = (np.asarray(ref["lp_at"]) - nom.lp_offset) * nom.scale
    assert lp_points == pytest.approx(ref["lp_points"], abs=TOL)
    assert nom.linear_predictor(ref["lp_points"]) == pytest.approx(ref["lp_at"], abs=TOL)


def test_risk_axis_matches_rms(nom, ref):
    # rms places the fun.at ticks by linear interpolation on a grid (approx()), so it agrees to ~5e-5 points
    assert nom.total_points_for_risk(ref["risk_at"]) == pytest.approx(ref["risk_points"], abs=1e-3)
    assert nom.risk(nom.total_points_for_risk(ref["risk_at"])) == pytest.approx(ref["risk_at"], abs=1e-12)


def test_total_points_give_the_model_risk(nom, ref):
    c = ref["coef"]
    patient = {"x1": 61.0, "x2": 1, "x3": 5.5}
    lp = c["Intercept"] + sum(c[k] * v for k, v in patient.items())
    assert nom.risk(nom.total_points(patient)) == pytest.approx(expit(lp), abs=1e-12)


def test_negative_coefficient_axis_runs_backwards():
    nom = build_nomogram({"a": -2.0, "b": 0.5}, 0.0, {"a": [0, 1], "b": [0, 2]})
    assert nom.points("a", [0, 1]).tolist() == [100.0, 0.0]
    assert nom.points("b", [0, 2]).tolist() == [0.0, 50.0]


def test_axis_values_cover_the_data(df):
    v = axis_values(df["x1"])
    assert v[0] <= df["x1"].min() and v[-1] >= df["x1"].max()
    assert axis_values(df["x2"]) == [0.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": {"x1": [1, 1]}}, "distinct"),
        ({"values": {}}, "lacks"),
        ({"values": {"x1": [0, 1], "zz": [0, 1]}}, "without a coefficient"),
        ({"coefficients": {"x1": 0.0}}, "no scale"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"coefficients": {"x1": 1.0}, "intercept": 0.0, "values": {"x1": [0, 1]}}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        build_nomogram(**args)


def test_unknown_predictor_and_bad_risk(nom):
    with pytest.raises(ValueError, match="unknown predictor"):
        nom.points("age", 3)
    with pytest.raises(ValueError, match="risk"):
        nom.total_points_for_risk([0.0])


def test_plot_renders_png(nom, tmp_path):
    fig = plot_nomogram(nom, title="HER2 nomogram")
    out = tmp_path / "nomogram.png"
    fig.savefig(out, dpi=50)
    assert out.stat().st_size > 1000
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"Points", "x1", "x2", "x3", "Total points", "Risk of HER2-positive"} <= texts
    assert json.loads(json.dumps(nom.to_dict()))["predictors"][0]["name"] == "x1"
