"""Decision curve analysis: dcurves-backed curves equal a hand computation; plot helper renders headless."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from her2mri.stats import decision_curve, net_benefit, plot_decision_curve


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    y = (rng.uniform(size=90) < 0.4).astype(int)
    p = np.clip(0.4 + 0.3 * (y - 0.4) + 0.2 * rng.normal(size=90), 0.0, 1.0)
    return y, np.round(p, 2)  # rounding puts some probabilities exactly on the thresholds


@pytest.fixture(scope="module")
def curves(data) -> pd.DataFrame:
    y, p = data
    return decision_curve(y, {"model": p, "other": 1.0 - p}, thresholds=[0.1, 0.3, 0.45, 0.6])


@pytest.mark.parametrize("pt", [0.3, 0.45])
def test_net_benefit_equals_hand_computation(data, curves, pt):
    y, p = data
    n = len(y)
    tp = sum(1 for yi, pi in zip(y, p, strict=True) if pi >= pt and yi == 1)
    fp = sum(1 for yi, pi in zip(y, p, strict=True) if pi >= pt and yi == 0)
    hand = tp / n - fp / n * pt / (1 - pt)
    prev = y.mean()
    row = curves[(curves["model"] == "model") & np.isclose(curves["threshold"], pt)]
    assert row["net_benefit"].item() == pytest.approx(hand, abs=1e-12)
    assert net_benefit(y, p, [pt])[0] == pytest.approx(hand, abs=1e-12)
    all_row = curves[(curves["model"] == "all") & np.isclose(curves["threshold"], pt)]
    assert all_row["net_benefit"].item() == pytest.approx(prev - (1 - prev) * pt / (1 - pt), abs=1e-12)
    none_row = curves[(curves["model"] == "none") & np.isclose(curves["threshold"], pt)]
    assert none_row["net_benefit"].item() == 0.0


def test_own_formula_equals_dcurves_on_the_default_grid(data):
    y, p = data
    df = decision_curve(y, p)
    assert df["model"].unique().tolist() == ["model", "all", "none"]
    ours = net_benefit(y, p, df.loc[df["model"] == "model", "threshold"].to_numpy())
    assert ours == pytest.approx(df.loc[df["model"] == "model", "net_benefit"].to_numpy(), abs=1e-12)


def test_table_columns(curves):
    assert {"model", "threshold", "net_benefit", "tp_rate", "fp_rate", "prevalence", "n"} <= set(
        curves.columns
    )
    assert len(curves) == 4 * 4


@pytest.mark.parametrize("bad", [[1.0], [-0.1], [float("nan")], []])
def test_bad_thresholds(data, bad):
    y, p = data
    with pytest.raises(ValueError, match="thresholds"):
        net_benefit(y, p, bad)


def test_reserved_model_names(data):
    y, p = data
    with pytest.raises(ValueError, match="model name"):
        decision_curve(y, {"all": p})


def test_probabilities_required(data):
    y, p = data
    with pytest.raises(ValueError, match="probabilities"):
        decision_curve(y, p * 3)


def test_plot_renders_png(curves, tmp_path):
    fig = plot_decision_curve(curves)
    ax = fig.axes[0]
    assert len(ax.lines) == 4  # model, other, treat all, treat none
    assert ax.get_xlabel() == "Threshold probability"
    out = tmp_path / "dca.png"
    fig.savefig(out, dpi=50)
    assert out.stat().st_size > 1000
