"""Univariable and stepwise logistic regression recover a known model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from her2mri.radiomics.clinical import encode_clinical, stepwise_logistic, univariable_table


def _simulate(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "age": rng.normal(0, 1, n),
            "er": rng.integers(0, 2, n).astype(float),
            "noise1": rng.normal(0, 1, n),
            "noise2": rng.normal(0, 1, n),
        }
    )
    lp = -0.5 + 0.8 * X["age"] - 1.0 * X["er"]
    y = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int)
    return X, y


@pytest.mark.parametrize("criterion", ["aic", "p"])
def test_stepwise_recovers_true_model(criterion: str) -> None:
    X, y = _simulate()
    res = stepwise_logistic(X, y, criterion=criterion, p_enter=0.01, p_remove=0.05)
    assert sorted(res.selected) == ["age", "er"]
    tab = res.table.set_index("variable")
    assert tab.loc["age", "OR"] == pytest.approx(np.exp(0.8), rel=0.12)
    assert tab.loc["er", "OR"] == pytest.approx(np.exp(-1.0), rel=0.12)
    for v, b in (("age", 0.8), ("er", -1.0)):
        assert tab.loc[v, "ci_low"] < np.exp(b) < tab.loc[v, "ci_high"]
        assert tab.loc[v, "p"] < 1e-6


def test_univariable_table_and_encoding() -> None:
    X, y = _simulate(n=2000, seed=1)
    uni = univariable_table(X, y).set_index("variable")
    assert uni.loc["age", "p"] < 1e-6 and uni.loc["noise1", "p"] > 0.001
    assert uni.loc["er", "OR"] < 1 < uni.loc["age", "OR"]
    df = pd.DataFrame({"age": [50, None, 60], "site": ["A", "B", "A"]})
    with pytest.warns(UserWarning, match="missing"):
        enc = encode_clinical(df)
    assert list(enc.columns) == ["age", "site_B"] and enc["age"].iloc[1] == 55
    with pytest.raises(ValueError, match="p_remove"):
        stepwise_logistic(X, y, criterion="p", p_enter=0.1, p_remove=0.05)
