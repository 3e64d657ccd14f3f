"""Feature selection as sklearn transformers, to be fitted INSIDE cross-validation only.

The published pipelines (seeds 000, 001) ran every selection step on the whole (training) cohort before the
cross-validation, which leaks the labels of the validation folds into the features and inflates CV AUCs.
Here each step is an sklearn transformer, chained in a :class:`sklearn.pipeline.Pipeline` with the model,
so ``cross_val_predict`` / ``GridSearchCV`` refit the selection on every training fold.

Steps (all keep pandas column names when given a DataFrame):
    :class:`ICCFilter` -- keep features whose ICC between two extractions is >= a threshold (retest columns
        ``retest__<name>`` are part of X and dropped by this step).
    ``StandardScaler`` -- z-score (sklearn).
    :class:`UnivariateFilter` -- Welch t-test or Mann-Whitney U, keep p < alpha.
    :class:`CorrelationFilter` -- greedy Pearson |r| removal, most relevant feature kept first.
    :class:`LassoSelector` -- LassoCV (or L1 logistic regression) on the training fold; keep non-zero coefs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted, validate_data

from her2mri.radiomics.icc import icc

RETEST_PREFIX = "retest__"


def _as_xy(X, y=None, est: BaseEstimator | None = None) -> tuple[np.ndarray, np.ndarray | None]:  # noqa: ANN001
    if est is not None:  # records n_features_in_ / feature_names_in_ for sklearn's checks
        validate_data(est, X, reset=True, dtype=np.float64, ensure_all_finite=True)
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim != 2:
        raise ValueError(f"X has shape {Xa.shape}: expected (n_samples, n_features)")
    ya = None if y is None else np.asarray(y).astype(int).ravel()
    if ya is not None and set(np.unique(ya)) - {0, 1}:
        raise ValueError(f"y has values {sorted(set(np.unique(ya)))}: expected binary 0/1 labels")
    return Xa, ya


def univariate_auc(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-feature AUC of ``X[:, j]`` against y (Mann-Whitney statistic / (n1 n0)); 0.5 = no signal."""
    ranks = stats.rankdata(X, axis=0)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("y has a single class: selection needs both classes in every training fold")
    u = ranks[y == 1].sum(axis=0) - n1 * (n1 + 1) / 2
    return u / (n1 * n0)


def auc_scorer(estimator: BaseEstimator, X: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of a fitted binary classifier's decision function on (X, y), as a scikit-learn scorer.

    The Mann-Whitney form (:func:`univariate_auc`; ties count one half), equal to sklearn's ``"roc_auc"``
    scorer up to float rounding (tests/test_radiomics_selection.py). ``LogisticRegressionCV`` calls its scorer
    once per C and fold (URAN: 50 Cs x up to 10 folds x 24 fits = 7,500 calls); the string scorer spends
    about 1.9 ms per call in input validation and signature inspection, this one about 0.1 ms.
    """
    score = np.asarray(estimator.decision_function(X), dtype=np.float64).reshape(-1, 1)
    positive = (np.asarray(y) == estimator.classes_[-1]).astype(int)
    return float(univariate_auc(score, positive)[0])


class _Selector(SelectorMixin, BaseEstimator):
    support_: np.ndarray

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_


class ICCFilter(_Selector):
    """Keep features whose ICC between the main and the retest extraction is >= ``threshold``.

    X must be a DataFrame holding, for each feature ``f``, a column ``retest__f`` from the second extraction
    (a second reader's mask, or a perturbed mask). The ICC is computed on the training rows only; all
    ``retest__`` columns are dropped from the output.

    Args:
        threshold: minimum ICC (seed 002: 0.9).
        kind: ``"2,1"`` (absolute agreement, default) or ``"3,1"`` (consistency); see
            :mod:`her2mri.radiomics.icc`.
        min_features: keep at least this many (the highest ICCs) when fewer pass.
    """

    def __init__(self, threshold: float = 0.9, kind: str = "2,1", min_features: int = 1) -> None:
        self.threshold = threshold
        self.kind = kind
        self.min_features = min_features

    def fit(self, X: pd.DataFrame, y=None) -> ICCFilter:  # noqa: ANN001
        """Compute the ICC of each feature on these rows."""
        if not isinstance(X, pd.DataFrame):
            raise ValueError("ICCFilter needs X as a pandas DataFrame with 'retest__' columns")
        cols = [str(c) for c in X.columns]
        main = [c for c in cols if not c.startswith(RETEST_PREFIX)]
        missing = [c for c in main if RETEST_PREFIX + c not in cols]
        if missing:
            raise ValueError(f"ICCFilter: no retest column for {len(missing)} feature(s), e.g. {missing[:3]}")
        a = X[main].to_numpy(np.float64)
        b = X[[RETEST_PREFIX + c for c in main]].to_numpy(np.float64)
        self.icc_ = icc([a, b], kind=self.kind)
        score = np.nan_to_num(self.icc_, nan=-np.inf)
        keep = score >= self.threshold
        if keep.sum() < self.min_features:
            keep[np.argsort(-score)[: self.min_features]] = True
        is_main = np.array([not c.startswith(RETEST_PREFIX) for c in cols])
        support = np.zeros(len(cols), bool)
        support[np.flatnonzero(is_main)[keep]] = True
        self.support_ = support
        self.feature_names_in_ = np.asarray(cols, dtype=object)
        self.n_features_in_ = len(cols)
        return self


class UnivariateFilter(_Selector):
    """Keep features that differ between classes: p < ``alpha`` (Welch t-test or Mann-Whitney U).

    Args:
        test: ``ttest`` (Welch's unequal-variance t-test) or ``mannwhitney``.
        alpha: p-value threshold (seed 001: 0.05), no multiplicity correction (as published).
        min_features: keep at least this many (smallest p) so a fold never ends with no feature.
    """

    def __init__(self, test: str = "ttest", alpha: float = 0.05, min_features: int = 1) -> None:
        self.test = test
        self.alpha = alpha
        self.min_features = min_features

    def fit(self, X, y):  # noqa: ANN001, ANN201
        """Compute p-values on the training rows."""
        if self.test not in ("ttest", "mannwhitney"):
            raise ValueError(f"test={self.test!r}: expected 'ttest' or 'mannwhitney'")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha={self.alpha}: expected a value in (0, 1]")
        Xa, ya = _as_xy(X, y, self)
        a, b = Xa[ya == 1], Xa[ya == 0]
        if len(a) < 2 or len(b) < 2:
            raise ValueError("UnivariateFilter needs at least 2 samples of each class")
        with np.errstate(all="ignore"), warnings_off():
            if self.test == "ttest":
                p = stats.ttest_ind(a, b, axis=0, equal_var=False).pvalue
            else:
                p = stats.mannwhitneyu(a, b, axis=0, alternative="two-sided").pvalue
        self.pvalues_ = np.where(np.isfinite(p), p, 1.0)
        keep = self.pvalues_ < self.alpha
        if keep.sum() < self.min_features:
            keep[np.argsort(self.pvalues_, kind="stable")[: self.min_features]] = True
        self.support_ = keep
        return self


class CorrelationFilter(_Selector):
    """Greedy Pearson |r| removal, the most relevant feature kept first.

    Features are visited from most to least relevant; one is kept unless its |r| with a feature already kept
    exceeds ``threshold``.

    Relevance is the univariate |AUC - 0.5| on the training rows, so of two redundant features the more
    discriminative one survives (seed 001: |r| > 0.8 removed, "greedy recursive deletion").

    Args:
        threshold: maximum |r| allowed between kept features.
    """

    def __init__(self, threshold: float = 0.8) -> None:
        self.threshold = threshold

    def fit(self, X, y):  # noqa: ANN001, ANN201
        """Choose the kept features on the training rows."""
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold={self.threshold}: expected a |r| in (0, 1]")
        Xa, ya = _as_xy(X, y, self)
        sd = Xa.std(axis=0)
        relevance = np.abs(univariate_auc(Xa, ya) - 0.5)
        relevance[sd == 0] = -1.0  # constant features last (and dropped if anything else exists)
        order = np.argsort(-relevance, kind="stable")
        Z = (Xa - Xa.mean(axis=0)) / np.where(sd == 0, 1.0, sd)
        n = len(Xa)
        kept: list[int] = []
        for j in order:
            if sd[j] == 0 and kept:
                continue
            if kept:
                r = Z[:, kept].T @ Z[:, j] / n
                if np.max(np.abs(r)) > self.threshold:
                    continue
            kept.append(int(j))
        support = np.zeros(Xa.shape[1], bool)
        support[kept] = True
        self.support_ = support
        return self


LIBLINEAR_MAX_ROWS = 5000
"""Below this many training rows ``solver="auto"`` picks liblinear for the L1 logistic selection."""

LASSO_SOLVERS = ("auto", "liblinear", "saga")


def l1_logistic_solver(solver: str, n_rows: int) -> str:
    """The solver used for an L1 logistic regression on ``n_rows`` rows (``auto`` resolved).

    Args:
        solver: ``auto``, ``liblinear`` or ``saga``.
        n_rows: training rows.
    """
    if solver not in LASSO_SOLVERS:
        raise ValueError(f"solver={solver!r}: expected one of {LASSO_SOLVERS}")
    if solver == "auto":
        return "liblinear" if n_rows < LIBLINEAR_MAX_ROWS else "saga"
    return solver


class LassoSelector(_Selector):
    """Keep the features with a non-zero LASSO coefficient, fitted on the training rows.

    Args:
        method: ``lassocv`` (least-squares LASSO on the 0/1 label with ``cv``-fold CV for alpha, as in seeds
            001/002/003) or ``l1_logistic`` (L1 logistic regression, ``C`` chosen by CV).
        cv: folds of the internal CV (seed 001: 10), stratified.
        n_alphas: number of alphas / Cs tried.
        max_features: keep at most this many (largest |coef|); None: all non-zero.
        random_state: seed of the internal folds.
        solver: solver of ``l1_logistic``: ``liblinear``, ``saga`` or ``auto`` (default): liblinear below
            :data:`LIBLINEAR_MAX_ROWS` training rows, saga above. On radiomics-sized problems (tens to
            hundreds of rows, thousands of wavelet features) liblinear's coordinate descent is about 15x
            faster than saga at ``max_iter=2000`` and selects the same features (docs/radiomics.md); saga
            scales better to many rows. liblinear also penalises the intercept (``intercept_scaling=1``),
            which on z-scored features changes the coefficients only slightly.

    When every coefficient is zero, the single feature with the largest univariate |AUC - 0.5| is kept, so the
    model downstream always has an input.
    """

    def __init__(
        self,
        method: str = "lassocv",
        cv: int = 10,
        n_alphas: int = 50,
        max_features: int | None = None,
        random_state: int = 0,
        solver: str = "auto",
    ) -> None:
        self.method = method
        self.cv = cv
        self.n_alphas = n_alphas
        self.max_features = max_features
        self.random_state = random_state
        self.solver = solver

    def fit(self, X, y):  # noqa: ANN001, ANN201
        """Fit the LASSO on the training rows."""
        from sklearn.linear_model import LassoCV, LogisticRegressionCV

        Xa, ya = _as_xy(X, y, self)
        n_min = int(min(ya.sum(), len(ya) - ya.sum()))
        folds = StratifiedKFold(max(2, min(self.cv, n_min)), shuffle=True, random_state=self.random_state)
        if self.method == "lassocv":
            m = LassoCV(alphas=self.n_alphas, cv=folds, max_iter=5000, random_state=self.random_state)
            with warnings_off():
                m.fit(Xa, ya.astype(float))
            coef = m.coef_.ravel()
            self.alpha_ = float(m.alpha_)
            self.intercept_ = float(m.intercept_)
        elif self.method == "l1_logistic":
            m = LogisticRegressionCV(
                Cs=self.n_alphas,
                cv=folds,
                l1_ratios=(1.0,),
                solver=l1_logistic_solver(self.solver, len(ya)),
                max_iter=2000,
                scoring=auc_scorer,
                random_state=self.random_state,
            )
            with warnings_off():
                m.fit(Xa, ya)
            coef = m.coef_.ravel()
            self.alpha_ = float(1.0 / np.ravel(m.C_)[0])
            self.intercept_ = float(np.ravel(m.intercept_)[0])
        else:
            raise ValueError(f"method={self.method!r}: expected 'lassocv' or 'l1_logistic'")
        keep = coef != 0
        if self.max_features is not None and keep.sum() > self.max_features:
            keep = np.zeros_like(keep)
            keep[np.argsort(-np.abs(coef))[: self.max_features]] = True
        if not keep.any():
            keep[int(np.argmax(np.abs(univariate_auc(Xa, ya) - 0.5)))] = True
        self.coef_ = coef
        self.support_ = keep
        return self


class warnings_off:
    """Context manager silencing convergence / runtime warnings of the inner solvers."""

    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


def build_selection_steps(
    steps: Sequence[str],
    *,
    icc_threshold: float = 0.9,
    icc_kind: str = "2,1",
    test: str = "ttest",
    alpha: float = 0.05,
    corr_threshold: float = 0.8,
    lasso_method: str = "lassocv",
    lasso_cv: int = 10,
    lasso_max_features: int | None = None,
    lasso_solver: str = "auto",
    random_state: int = 0,
) -> list[tuple[str, BaseEstimator]]:
    """Selection steps by name, in order, for an sklearn Pipeline.

    Args:
        steps: names among ``icc``, ``zscore``, ``univariate``, ``correlation``, ``lasso``.
        icc_threshold: see :class:`ICCFilter`.
        icc_kind: see :class:`ICCFilter`.
        test: see :class:`UnivariateFilter`.
        alpha: see :class:`UnivariateFilter`.
        corr_threshold: see :class:`CorrelationFilter`.
        lasso_method: see :class:`LassoSelector`.
        lasso_cv: see :class:`LassoSelector`.
        lasso_max_features: see :class:`LassoSelector`.
        lasso_solver: ``solver`` of :class:`LassoSelector` (``auto``, ``liblinear``, ``saga``).
        random_state: seed of the LASSO folds.
    """
    from sklearn.preprocessing import StandardScaler

    out: list[tuple[str, BaseEstimator]] = []
    for s in steps:
        if s == "icc":
            out.append((s, ICCFilter(icc_threshold, icc_kind)))
        elif s == "zscore":
            out.append((s, StandardScaler()))
        elif s == "univariate":
            out.append((s, UnivariateFilter(test, alpha)))
        elif s == "correlation":
            out.append((s, CorrelationFilter(corr_threshold)))
        elif s == "lasso":
            out.append(
                (
                    s,
                    LassoSelector(
                        lasso_method,
                        lasso_cv,
                        max_features=lasso_max_features,
                        random_state=random_state,
                        solver=lasso_solver,
                    ),
                )
            )
        else:
            raise ValueError(
                f"steps contains {s!r}: expected names among icc, zscore, univariate, correlation, lasso"
            )
    return out
