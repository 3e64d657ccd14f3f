"""Classifiers of the radiomics pipelines, their small default grids, and the Rad-score.

Models by name: ``lr`` (logistic regression), ``rf`` (random forest), ``et`` (extra trees), ``xgb``
(XGBoost, ``xgboost-cpu``), ``lgbm`` (LightGBM), ``radscore`` (the LASSO linear predictor, mapped to a
probability by a one-variable logistic regression), ``uran`` (:class:`her2mri.radiomics.uran.URANClassifier`).
Hyper-parameters are tuned by ``GridSearchCV`` (5-fold in seed 001) over the grid returned by
:func:`default_grid`; the grid is small on purpose (CPU, small cohorts) and can be replaced from the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from her2mri.extras import require
from her2mri.radiomics.selection import LassoSelector, warnings_off

MODEL_NAMES = ("lr", "rf", "et", "xgb", "lgbm", "radscore", "uran")

_GRIDS: dict[str, dict[str, list[Any]]] = {
    "lr": {"C": [0.1, 1.0, 10.0]},
    "rf": {"n_estimators": [200], "max_depth": [3, None], "min_samples_leaf": [1, 3]},
    "et": {"n_estimators": [200], "max_depth": [3, None], "min_samples_leaf": [1, 3]},
    "xgb": {"n_estimators": [100], "max_depth": [2, 3], "learning_rate": [0.05, 0.2]},
    "lgbm": {"n_estimators": [100], "num_leaves": [4, 8], "learning_rate": [0.05, 0.2]},
    "radscore": {},
    "uran": {},
}


def make_model(name: str, random_state: int = 0, **kwargs: Any) -> BaseEstimator:
    """A fresh, unfitted classifier by name (``kwargs`` override its defaults; None values are ignored).

    Args:
        name: one of :data:`MODEL_NAMES`.
        random_state: seed.
        **kwargs: constructor arguments.
    """
    kw = {k: v for k, v in kwargs.items() if v is not None}
    if name == "lr":
        return LogisticRegression(max_iter=5000, **kw)
    if name == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(random_state=random_state, n_jobs=1, **kw)
    if name == "et":
        from sklearn.ensemble import ExtraTreesClassifier

        return ExtraTreesClassifier(random_state=random_state, n_jobs=1, **kw)
    if name == "xgb":
        require("xgboost", f"model {name!r}")
        from xgboost import XGBClassifier

        return XGBClassifier(random_state=random_state, n_jobs=1, eval_metric="logloss", verbosity=0, **kw)
    if name == "lgbm":
        require("lightgbm", f"model {name!r}")
        from lightgbm import LGBMClassifier

        return LGBMClassifier(random_state=random_state, n_jobs=1, verbose=-1, min_child_samples=5, **kw)
    if name == "radscore":
        return RadScoreClassifier(random_state=random_state, **kw)
    if name == "uran":
        from her2mri.radiomics.uran import URANClassifier

        return URANClassifier(random_state=random_state, **kw)
    raise ValueError(f"model name={name!r}: expected one of {MODEL_NAMES}")


def default_grid(name: str) -> dict[str, list[Any]]:
    """The default hyper-parameter grid of a model (keys without the pipeline prefix)."""
    if name not in _GRIDS:
        raise ValueError(f"model name={name!r}: expected one of {MODEL_NAMES}")
    return {k: list(v) for k, v in _GRIDS[name].items()}


def prefixed_grid(grid: Mapping[str, list[Any]] | None, step: str = "model") -> dict[str, list[Any]]:
    """Grid keys prefixed with the pipeline step name (``C`` -> ``model__C``)."""
    return {f"{step}__{k}": list(v) for k, v in (grid or {}).items()}


class RadScoreClassifier(ClassifierMixin, BaseEstimator):
    """The Rad-score: the linear predictor of a LASSO fitted on the (z-scored, selected) features.

    ``decision_function`` returns the Rad-score ``b0 + sum_j b_j x_j``; ``predict_proba`` maps it to a
    probability with a logistic regression of the label on the Rad-score (fitted on the same training rows),
    so the score keeps its published meaning and the report still gets probabilities.

    Args:
        method: ``lassocv`` or ``l1_logistic`` (see :class:`~her2mri.radiomics.selection.LassoSelector`).
        cv: folds of the internal CV for the LASSO penalty.
        random_state: seed.
    """

    def __init__(self, method: str = "lassocv", cv: int = 10, random_state: int = 0) -> None:
        self.method = method
        self.cv = cv
        self.random_state = random_state

    def fit(self, X, y):  # noqa: ANN001, ANN201
        """Fit the LASSO and the score-to-probability map."""
        Xa = np.asarray(X, dtype=np.float64)
        ya = np.asarray(y).astype(int)
        sel = LassoSelector(self.method, self.cv, random_state=self.random_state).fit(Xa, ya)
        coef = np.where(sel.support_, sel.coef_, 0.0)
        if not np.any(coef):  # fallback feature of the selector: use its univariate direction
            j = int(np.flatnonzero(sel.support_)[0])
            coef[j] = np.sign(np.corrcoef(Xa[:, j], ya)[0, 1]) or 1.0
        self.coef_ = coef
        self.intercept_ = sel.intercept_ if np.any(sel.coef_[sel.support_]) else float(np.mean(ya))
        self.classes_ = np.array([0, 1])
        s = self.decision_function(Xa)
        with warnings_off():
            self.calibrator_ = LogisticRegression(max_iter=1000).fit(s[:, None], ya)
        self.n_features_in_ = Xa.shape[1]
        return self

    def decision_function(self, X) -> np.ndarray:  # noqa: ANN001
        """The Rad-score of each row."""
        check_is_fitted(self, "coef_")
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_

    def predict_proba(self, X) -> np.ndarray:  # noqa: ANN001
        """Probabilities of class 0 and 1."""
        return self.calibrator_.predict_proba(self.decision_function(X)[:, None])

    def predict(self, X) -> np.ndarray:  # noqa: ANN001
        """Class with probability >= 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
