"""Selection transformers, and no leakage: selection is refitted inside every CV fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.preprocessing import StandardScaler

from her2mri.radiomics.evaluate import build_pipeline, evaluate_signature
from her2mri.radiomics.models import RadScoreClassifier, make_model
from her2mri.radiomics.selection import (
    CorrelationFilter,
    ICCFilter,
    LassoSelector,
    UnivariateFilter,
    build_selection_steps,
)


def _noise(n: int = 60, p: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{i}" for i in range(p)])
    y = rng.permutation(np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)])  # labels unrelated to X
    return X, y


def test_no_leakage_with_permuted_labels() -> None:
    X, y = _noise()
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    steps = build_selection_steps(["zscore", "univariate", "correlation", "lasso"], lasso_cv=5)
    # honest: the whole pipeline (selection + model) is refitted on each training fold
    pipe = build_pipeline(steps, make_model("lr", C=1.0))
    auc_inside = roc_auc_score(y, cross_val_predict(pipe, X, y, cv=cv, method="predict_proba")[:, 1])
    # leaky (as published): selection fitted on all data, then only the model is cross-validated
    sel = build_pipeline(build_selection_steps(["zscore", "univariate", "correlation"]), make_model("lr"))[
        :-1
    ]
    X_sel = sel.fit_transform(X, y)
    auc_outside = roc_auc_score(
        y, cross_val_predict(make_model("lr", C=1.0), X_sel, y, cv=cv, method="predict_proba")[:, 1]
    )
    assert X_sel.shape[1] >= 5
    assert abs(auc_inside - 0.5) < 0.2, auc_inside
    assert auc_outside > 0.8, auc_outside
    assert auc_outside - auc_inside > 0.25


def test_univariate_and_correlation_filters() -> None:
    rng = np.random.default_rng(1)
    n = 120
    y = np.r_[np.zeros(60, int), np.ones(60, int)]
    signal = y + rng.normal(scale=0.7, size=n)
    X = pd.DataFrame(
        {
            "sig": signal,
            "sig_copy": signal + rng.normal(scale=0.05, size=n),
            "noise": rng.normal(size=n),
            "const": np.ones(n),
        }
    )
    for test in ("ttest", "mannwhitney"):
        uf = UnivariateFilter(test, 0.05).fit(X, y)
        assert list(uf.get_feature_names_out()) == ["sig", "sig_copy"]
    cf = CorrelationFilter(0.8).fit(X, y)
    kept = list(cf.get_feature_names_out())
    assert len({"sig", "sig_copy"} & set(kept)) == 1 and "noise" in kept and "const" not in kept
    with pytest.raises(ValueError, match="test"):
        UnivariateFilter("chi2").fit(X, y)


def test_lasso_selector_and_radscore() -> None:
    rng = np.random.default_rng(2)
    n = 200
    X = rng.normal(size=(n, 20))
    y = (X[:, 0] - 0.8 * X[:, 1] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    for method in ("lassocv", "l1_logistic"):
        sel = LassoSelector(method, cv=5).fit(X, y)
        assert sel.support_[0] and sel.support_[1] and sel.support_.sum() < 20
    rs = RadScoreClassifier(cv=5).fit(X, y)
    score = rs.decision_function(X)
    assert roc_auc_score(y, score) > 0.9 and rs.coef_[0] > 0 > rs.coef_[1]
    p = rs.predict_proba(X)[:, 1]
    assert np.all(np.diff(p[np.argsort(score)]) >= -1e-12)  # probability is monotone in the Rad-score


def test_icc_filter_uses_retest_columns() -> None:
    rng = np.random.default_rng(3)
    n = 40
    a = rng.normal(size=(n, 3))
    X = pd.DataFrame(a, columns=["stable", "shaky", "mid"])
    X["retest__stable"] = a[:, 0] + rng.normal(scale=0.05, size=n)
    X["retest__shaky"] = rng.normal(size=n)
    X["retest__mid"] = a[:, 2] + rng.normal(scale=0.6, size=n)  # ICC about 0.75
    f = ICCFilter(0.9).fit(X, np.r_[np.zeros(20), np.ones(20)])
    assert list(f.get_feature_names_out()) == ["stable"]
    assert list(f.set_output(transform="pandas").transform(X).columns) == ["stable"]
    with pytest.raises(ValueError, match="retest"):
        ICCFilter().fit(X[["stable", "shaky"]])


def test_evaluate_signature_outputs() -> None:
    rng = np.random.default_rng(4)
    n = 60
    y = rng.permutation(np.r_[np.zeros(30, int), np.ones(30, int)])
    X = pd.DataFrame(rng.normal(size=(n, 10)), index=[f"p{i}" for i in range(n)]).add_prefix("f")
    X["f0"] += 1.5 * y
    pipe = build_pipeline(
        build_selection_steps(["zscore", "univariate", "lasso"], lasso_cv=3), make_model("lr")
    )
    res = evaluate_signature(
        "t",
        pipe,
        {"model__C": [0.1, 1.0]},
        X.iloc[:40],
        y[:40],
        X.iloc[40:],
        y[40:],
        outer_folds=3,
        inner_folds=2,
    )
    assert list(res.val.columns) == ["pid", "label", "prob"] and len(res.test) == 20
    assert res.metrics["val/auroc_patient"] > 0.7 and "f0" in res.selected_features


def test_inner_selection_reuse_fits_the_selection_once_per_outer_fold() -> None:
    from her2mri.radiomics.evaluate import with_grid_search
    from her2mri.radiomics.persist import fitted_pipeline, linear_formula

    rng = np.random.default_rng(4)
    n = 60
    y = rng.permutation(np.r_[np.zeros(30, int), np.ones(30, int)])
    X = pd.DataFrame(rng.normal(size=(n, 10)), index=[f"p{i}" for i in range(n)]).add_prefix("f")
    X["f0"] += 1.5 * y
    fits: list[int] = []

    class Counting(LassoSelector):
        def fit(self, X, y):  # noqa: ANN001, ANN201
            fits.append(len(X))
            return super().fit(X, y)

    grid = {"model__C": [0.1, 1.0, 10.0]}
    results = {}
    for mode in ("refit", "reuse"):
        fits.clear()
        pipe = build_pipeline([("zscore", StandardScaler()), ("lasso", Counting(cv=3))], make_model("lr"))
        res = evaluate_signature(
            "t", pipe, grid, X.iloc[:40], y[:40], X.iloc[40:], y[40:], outer_folds=3, inner_folds=2,
            inner_selection=mode,
        )  # fmt: skip
        results[mode] = (res, list(fits))
    # refit: 3 candidates x 2 inner folds + 1 refit per outer fold and for the final fit; reuse: 1 each
    assert len(results["refit"][1]) == 4 * (3 * 2 + 1)
    assert len(results["reuse"][1]) == 4 and sorted(results["reuse"][1]) == [26, 27, 27, 40]
    res = results["reuse"][0]
    assert res.metrics["val/auroc_patient"] > 0.7 and "f0" in res.selected_features
    # the saved pipeline has the tuned model as its last step, so the Rad-score formula is written
    assert type(fitted_pipeline(res.estimator)[-1]).__name__ == "LogisticRegression"
    assert linear_formula(res.estimator)["features"] == res.selected_features
    with pytest.raises(ValueError, match="inner_selection"):
        with_grid_search(pipe, grid, y, 2, 0, inner_selection="outer")


def test_auc_scorer_equals_sklearn_roc_auc() -> None:
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.metrics import get_scorer

    from her2mri.radiomics.selection import auc_scorer

    rng = np.random.default_rng(7)
    X = rng.normal(size=(40, 30))
    y = (X[:, 0] + rng.normal(size=40) > 0).astype(int)
    m = LogisticRegression(C=0.3).fit(X[:25], y[:25])
    Xt = np.round(X[25:], 1)  # ties in the decision function count one half
    assert auc_scorer(m, Xt, y[25:]) == pytest.approx(get_scorer("roc_auc")(m, Xt, y[25:]), abs=1e-12)
    # labels other than 0/1: the positive class is the last of classes_
    m2 = LogisticRegression(C=0.3).fit(X[:25], np.where(y[:25] == 1, 5, -3))
    assert auc_scorer(m2, Xt, np.where(y[25:] == 1, 5, -3)) == pytest.approx(auc_scorer(m, Xt, y[25:]))
    # inside LogisticRegressionCV: the same score for every C and fold, so the same C and coefficients
    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    kw = dict(Cs=12, cv=folds, l1_ratios=(1.0,), solver="liblinear", random_state=0)
    a = LogisticRegressionCV(scoring="roc_auc", **kw).fit(X, y)
    b = LogisticRegressionCV(scoring=auc_scorer, **kw).fit(X, y)
    np.testing.assert_allclose(b.scores_[1], a.scores_[1], atol=1e-12)
    assert b.C_[0] == a.C_[0] and np.array_equal(b.coef_, a.coef_)
