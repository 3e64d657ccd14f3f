"""Saved radiomics models (joblib, checked manifest, JSON Rad-score), in-CV clinical selection, separation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import cross_val_predict

from her2mri.data.errors import DataError
from her2mri.radiomics.clinical import BestColumnSelector, StepwiseSelector, separation
from her2mri.radiomics.evaluate import build_pipeline
from her2mri.radiomics.models import make_model
from her2mri.radiomics.persist import (
    formula_score,
    linear_formula,
    load_models,
    read_models_json,
    save_models,
)
from her2mri.radiomics.selection import build_selection_steps


def _data(n: int = 60, p: int = 12, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(5, 3, size=(n, p))).add_prefix("f")
    y = (X["f0"] - X["f1"] + 3 * rng.normal(size=n) > 0).astype(int).to_numpy()
    return X, y


@pytest.mark.parametrize("model", ["lr", "radscore"])
def test_linear_formula_reproduces_pipeline(model: str) -> None:
    X, y = _data()
    steps = build_selection_steps(["zscore", "univariate", "correlation", "lasso"], lasso_cv=3)
    pipe = build_pipeline(steps, make_model(model)).fit(X.iloc[:40], y[:40])
    f = linear_formula(pipe)
    assert f is not None and set(f["features"]) <= set(X.columns) and len(f["features"]) >= 1
    score, prob = formula_score(json.loads(json.dumps(f)), X.iloc[40:])  # through JSON, as a user reads it
    np.testing.assert_allclose(prob, pipe.predict_proba(X.iloc[40:])[:, 1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(score, pipe.decision_function(X.iloc[40:]), rtol=1e-10, atol=1e-10)
    assert f["formula"].startswith("Rad-score = ")
    rf = build_pipeline(build_selection_steps(["zscore"]), make_model("rf", n_estimators=5)).fit(X, y)
    assert linear_formula(rf) is None  # a forest has no Rad-score formula


def test_save_load_roundtrip_and_tamper_check(tmp_path: Path) -> None:
    X, y = _data()
    lr = build_pipeline(build_selection_steps(["zscore", "lasso"], lasso_cv=3), make_model("lr"))
    rf = build_pipeline(build_selection_steps(["zscore"]), make_model("rf", n_estimators=5))
    fitted = {"a": lr.fit(X, y), "b": rf.fit(X, y)}
    models = {k: {"estimator": v, "kind": "signature", "features": ["tumour"]} for k, v in fitted.items()}
    save_models(models, tmp_path, {"name": "t"})
    assert (tmp_path / "a" / "radscore.json").is_file() and not (tmp_path / "b" / "radscore.json").exists()
    loaded, manifest = load_models(tmp_path)
    for k, est in fitted.items():
        np.testing.assert_array_equal(loaded[k].predict_proba(X), est.predict_proba(X))  # exactly
        assert manifest["models"][k]["features_in"] == list(X.columns)
    with open(tmp_path / "b" / "model.joblib", "ab") as f:  # a changed file is refused, never unpickled
        f.write(b"x")
    with pytest.raises(DataError, match="SHA-256"):
        load_models(tmp_path)
    with pytest.raises(DataError, match="no model manifest"):
        read_models_json(tmp_path / "a")
    (tmp_path / "models.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="not a her2mri"):
        read_models_json(tmp_path)


def test_stepwise_selector_inside_cv() -> None:
    rng = np.random.default_rng(3)
    n = 120
    X = pd.DataFrame(rng.normal(size=(n, 5)), columns=["age", "n1", "n2", "n3", "sig_a"])
    y = (1.5 * X["age"] + rng.normal(size=n) > 0).astype(int).to_numpy()
    sel = StepwiseSelector().fit(X, y)
    assert "age" in sel.selected_ and "sig_a" in sel.get_feature_names_out()  # sig_ kept without selection
    assert "sig_a" not in sel.selected_
    # noise only: every fold keeps at least one variable, and the CV AUC of the whole pipeline is ~0.5
    yn = rng.integers(0, 2, n)
    pipe = build_pipeline([("stepwise", StepwiseSelector(keep_prefix=None))], make_model("lr"))
    prob = cross_val_predict(pipe, X, yn, cv=5, method="predict_proba")[:, 1]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(yn, prob) < 0.7


def test_best_column_selector_and_separation() -> None:
    rng = np.random.default_rng(4)
    y = np.r_[np.zeros(30), np.ones(30)].astype(int)
    X = pd.DataFrame(
        {
            "age": rng.normal(size=60),
            "sig_weak": rng.normal(size=60),
            "sig_good": y + 0.5 * rng.normal(size=60),
        }
    )
    sel = BestColumnSelector().fit(X, y)
    assert sel.chosen_ == "sig_good" and list(sel.get_feature_names_out()) == ["age", "sig_good"]
    with pytest.raises(ValueError, match="prefix"):
        BestColumnSelector("zz_").fit(X, y)
    assert separation(X[["sig_good"]].assign(sig_good=y * 3.0 + rng.uniform(0, 1, 60)), y)
    assert not separation(X[["age", "sig_weak"]], y)


def test_run_clinical_separation_warning_ridge_and_target_axis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Separated clinical data: a warning, finite ridge estimates, and a nomogram axis naming the target."""
    import her2mri.stats.nomogram as nomo
    from her2mri.radiomics.clinical_fusion import run_clinical, target_name
    from her2mri.radiomics.evaluate import SignatureResult

    rng = np.random.default_rng(5)
    n = 40
    pids = pd.Index([f"p{i}" for i in range(n)])
    y = pd.Series(np.r_[np.zeros(20), np.ones(20)].astype(int), index=pids)
    frame = pd.DataFrame(
        {"age": np.where(y == 1, 60.0, 40.0) + rng.uniform(0, 5, n), "HR": rng.integers(0, 2, n)}
    )
    frame.index = pids
    split = pd.Series(["train"] * 30 + ["test"] * 10, index=pids)
    split.iloc[[0, 1, 38, 39]] = ["test", "test", "train", "train"]
    prob = np.clip(0.5 + 0.3 * (y.to_numpy() - 0.5) + 0.2 * rng.normal(size=n), 0.01, 0.99)
    tr, te = split.index[split == "train"], split.index[split == "test"]
    sig = SignatureResult(
        "sig",
        pd.DataFrame({"pid": tr, "label": y[tr], "prob": pd.Series(prob, index=pids)[tr]}),
        pd.DataFrame({"pid": te, "label": y[te], "prob": pd.Series(prob, index=pids)[te]}),
        {"val/auroc_patient": 0.8},
        None,
    )
    seen: dict[str, str] = {}
    real_plot = nomo.plot_nomogram

    def spy(nom, **kw):  # noqa: ANN001, ANN003, ANN202
        seen.update(kw)
        return real_plot(nom, **kw)

    monkeypatch.setattr(nomo, "plot_nomogram", spy)
    cfg = {"variables": ["age", "HR"], "combine_with": "best"}
    target = target_name({"kind": "low_vs_zero"})
    with pytest.warns(UserWarning, match="completely separated"):
        info = run_clinical(frame, y, split, {"sig": sig}, cfg, tmp_path, 3, 0, target=target)
    assert target == "HER2-low" and seen["risk_label"] == "Risk of HER2-low"
    assert (tmp_path / "combined" / "nomogram.png").is_file() and info["separation"]
    lr = info["results"]["clinical"].estimator[-1]
    assert np.all(np.isfinite(lr.coef_)) and np.abs(lr.coef_).max() < 5  # ridge keeps it finite and moderate
    assert info["combined_with"] == ["sig"] and "age" in info["clinical_selected"]
    with pytest.raises(ValueError, match="clinical.penalty"):
        run_clinical(frame, y, split, {}, {**cfg, "penalty": "firth"}, tmp_path, 3, 0)
