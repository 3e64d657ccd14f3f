"""Clinical model: univariable and stepwise multivariable logistic regression (statsmodels), combined model.

- :func:`univariable_table`: one ``Logit`` per variable: OR = exp(beta), Wald 95 % CI, p (seed 001 Table 2).
- :func:`stepwise_logistic`: bidirectional stepwise selection (not in statsmodels, written here), either by
  **AIC** (add the variable that lowers AIC most; remove one when that lowers AIC; stop when nothing
  improves) or by **p-values** (enter when the likelihood-ratio p < ``p_enter``, leave when the Wald p of a
  kept variable > ``p_remove``; ``p_remove >= p_enter`` prevents cycling).
- :func:`multivariable_table`: ORs, CIs and p of a joint model.
- :func:`encode_clinical`: numeric design matrix from mixed clinical columns (categories -> dummies).
- :class:`StepwiseSelector` / :class:`BestColumnSelector`: the stepwise search and the choice of the best
  signature as sklearn selectors, refitted inside every cross-validation fold.
- :func:`separation`: exact check (a linear programme) that the classes are separable, where unpenalised
  logistic regression has no finite estimate.

The combined model (clinical variables + Rad / DL signatures) is an sklearn logistic regression fitted by
:mod:`her2mri.radiomics.pipelines` on the training cohort, with out-of-fold signature scores as inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted


def encode_clinical(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Numeric design matrix: numeric columns as they are, others one-hot encoded (first level dropped).

    Missing numeric values are imputed with the column median (reported by a warning); ``columns`` None
    means every column.
    """
    cols = list(df.columns) if columns is None else list(columns)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the clinical table (has {list(df.columns)})")
    parts = []
    for c in cols:
        s = df[c]
        num = pd.to_numeric(s, errors="coerce")
        if num.notna().sum() == s.notna().sum():  # all present values are numbers
            if num.isna().any():
                warnings.warn(
                    f"clinical column {c!r}: {int(num.isna().sum())} missing value(s) -> median", stacklevel=2
                )
                num = num.fillna(num.median())
            parts.append(num.astype(float).rename(c))
        else:
            parts.append(pd.get_dummies(s.astype("string"), prefix=c, drop_first=True, dtype=float))
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=df.index)


def _fit_logit(X: pd.DataFrame, y: np.ndarray):  # noqa: ANN202
    import statsmodels.api as sm

    exog = sm.add_constant(X.astype(float), has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sm.Logit(np.asarray(y, float), exog).fit(disp=0, maxiter=200)


def _table(res, variables: Sequence[str]) -> pd.DataFrame:  # noqa: ANN001
    ci = np.asarray(res.conf_int(alpha=0.05))
    names = list(res.params.index)
    rows = []
    for v in variables:
        i = names.index(v)
        b = float(res.params.iloc[i])
        rows.append(
            {
                "variable": v,
                "beta": b,
                "OR": np.exp(b),
                "ci_low": np.exp(ci[i, 0]),
                "ci_high": np.exp(ci[i, 1]),
                "p": float(res.pvalues.iloc[i]),
            }
        )
    return pd.DataFrame(rows)


def univariable_table(X: pd.DataFrame, y: np.ndarray) -> pd.DataFrame:
    """One logistic regression per column: ``variable, beta, OR, ci_low, ci_high, p`` (NaN when it fails)."""
    rows = []
    for c in X.columns:
        try:
            rows.append(_table(_fit_logit(X[[c]], y), [c]).iloc[0].to_dict())
        except Exception as exc:  # perfect separation, singular matrix
            warnings.warn(f"univariable logistic regression failed for {c!r}: {exc}", stacklevel=2)
            rows.append(
                {
                    "variable": c,
                    "beta": np.nan,
                    "OR": np.nan,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "p": np.nan,
                }
            )
    return pd.DataFrame(rows)


def multivariable_table(X: pd.DataFrame, y: np.ndarray, variables: Sequence[str]) -> pd.DataFrame:
    """ORs, 95 % CIs and p-values of the joint logistic model on ``variables``."""
    if not variables:
        return pd.DataFrame(columns=["variable", "beta", "OR", "ci_low", "ci_high", "p"])
    return _table(_fit_logit(X[list(variables)], y), list(variables))


@dataclass
class StepwiseResult:
    """Outcome of :func:`stepwise_logistic`."""

    selected: list[str]
    table: pd.DataFrame
    history: list[str] = field(default_factory=list)
    aic: float = float("nan")


def stepwise_logistic(
    X: pd.DataFrame,
    y: np.ndarray,
    criterion: str = "aic",
    p_enter: float = 0.05,
    p_remove: float = 0.10,
    max_steps: int = 100,
) -> StepwiseResult:
    """Bidirectional stepwise logistic regression, starting from the empty model.

    Args:
        X: numeric candidate variables (see :func:`encode_clinical`).
        y: 0/1 outcome.
        criterion: ``aic`` or ``p`` (likelihood-ratio p to enter, Wald p to leave).
        p_enter: entry threshold for ``criterion="p"``.
        p_remove: removal threshold for ``criterion="p"`` (must be >= ``p_enter``).
        max_steps: safety bound on the number of steps.
    """
    if criterion not in ("aic", "p"):
        raise ValueError(f"criterion={criterion!r}: expected 'aic' or 'p'")
    if p_remove < p_enter:
        raise ValueError(f"p_remove={p_remove} must be >= p_enter={p_enter} (otherwise the search can cycle)")
    y = np.asarray(y).astype(int)
    selected: list[str] = []
    history: list[str] = []

    def fit(vars_: list[str]):  # noqa: ANN202
        if not vars_:
            return _fit_logit(pd.DataFrame(index=X.index), y)
        return _fit_logit(X[vars_], y)

    current = fit(selected)
    for _ in range(max_steps):
        changed = False
        # forward step
        best, best_val = None, None
        for c in X.columns:
            if c in selected:
                continue
            try:
                r = fit([*selected, c])
            except Exception:  # noqa: S112 - a variable that cannot be fitted is skipped
                continue
            if criterion == "aic":
                val = r.aic
                ok = val < current.aic - 1e-9
            else:
                lr = 2 * (r.llf - current.llf)
                val = float(stats.chi2.sf(max(lr, 0.0), df=1))
                ok = val < p_enter
            if ok and (best_val is None or val < best_val):
                best, best_val = c, val
        if best is not None:
            selected.append(best)
            current = fit(selected)
            history.append(f"+{best}")
            changed = True
        # backward step
        if len(selected) > 1 or (criterion == "p" and selected):
            if criterion == "aic":
                cand = []
                for c in selected:
                    rest = [v for v in selected if v != c]
                    cand.append((fit(rest).aic, c))
                aic_min, worst = min(cand)
                drop = worst if aic_min < current.aic - 1e-9 else None
            else:
                pv = current.pvalues.drop("const")
                drop = str(pv.idxmax()) if float(pv.max()) > p_remove else None
            if drop is not None and drop != best:
                selected.remove(drop)
                current = fit(selected)
                history.append(f"-{drop}")
                changed = True
        if not changed:
            break
    return StepwiseResult(selected, multivariable_table(X, y, selected), history, float(current.aic))


class StepwiseSelector(SelectorMixin, BaseEstimator):
    """:func:`stepwise_logistic` as an sklearn selector, so the clinical selection runs inside every CV fold.

    Columns whose name starts with ``keep_prefix`` (the signature scores of a combined model) are always kept
    and take no part in the search. When the search keeps no variable and no column is kept by prefix, the
    variable with the smallest univariable p-value is kept, so the model downstream always has an input.

    Args:
        criterion: ``aic`` or ``p`` (see :func:`stepwise_logistic`).
        p_enter: entry threshold for ``criterion="p"``.
        p_remove: removal threshold for ``criterion="p"``.
        keep_prefix: prefix of columns kept without selection; None: none.
    """

    def __init__(
        self,
        criterion: str = "aic",
        p_enter: float = 0.05,
        p_remove: float = 0.10,
        keep_prefix: str | None = "sig_",
    ) -> None:
        self.criterion = criterion
        self.p_enter = p_enter
        self.p_remove = p_remove
        self.keep_prefix = keep_prefix

    def fit(self, X, y):  # noqa: ANN001, ANN201
        """Run the stepwise search on these rows."""
        from sklearn.utils.validation import validate_data

        validate_data(self, X, reset=True, dtype=np.float64)
        names = [str(c) for c in getattr(self, "feature_names_in_", range(np.shape(X)[1]))]
        df = pd.DataFrame(np.asarray(X, dtype=float), columns=names)
        fixed = [n for n in names if self.keep_prefix and n.startswith(self.keep_prefix)]
        cand = [n for n in names if n not in fixed]
        selected: list[str] = []
        if cand:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                selected = stepwise_logistic(
                    df[cand], np.asarray(y), self.criterion, self.p_enter, self.p_remove
                ).selected
                if not selected and not fixed:
                    p = univariable_table(df[cand], np.asarray(y))["p"].fillna(1.0).to_numpy()
                    selected = [cand[int(np.argmin(p))]]
        self.selected_ = selected
        self.support_ = np.array([n in selected or n in fixed for n in names])
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_


class BestColumnSelector(SelectorMixin, BaseEstimator):
    """Keep the one column with ``prefix`` whose AUC on the fitted rows is highest, and every other column.

    ``clinical.combine_with: best`` uses it: the best signature is chosen on the training rows of each fold
    only, never on the rows it is then scored on.

    Args:
        prefix: prefix of the candidate columns (the signature scores ``sig_<name>``).
    """

    def __init__(self, prefix: str = "sig_") -> None:
        self.prefix = prefix

    def fit(self, X, y):  # noqa: ANN001, ANN201
        """Choose the candidate column with the highest AUC on these rows."""
        from sklearn.metrics import roc_auc_score
        from sklearn.utils.validation import validate_data

        validate_data(self, X, reset=True, dtype=np.float64)
        names = [str(c) for c in getattr(self, "feature_names_in_", range(np.shape(X)[1]))]
        Xa = np.asarray(X, dtype=float)
        cand = [j for j, n in enumerate(names) if n.startswith(self.prefix)]
        if not cand:
            raise ValueError(f"prefix={self.prefix!r}: no column starts with it (columns {names})")
        aucs = [roc_auc_score(np.asarray(y), Xa[:, j]) for j in cand]
        best = cand[int(np.argmax(aucs))]
        self.chosen_ = names[best]
        self.support_ = np.array([j == best or j not in cand for j in range(len(names))])
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_


def separation(X: pd.DataFrame | np.ndarray, y: np.ndarray) -> bool:
    """True when the classes are completely separated by a hyperplane in ``X`` (the MLE does not exist).

    Exact test: the linear programme ``y_i' (w . x_i + b) >= 1`` (``y' = +-1``) is feasible iff the two
    classes are linearly separable; an unpenalised logistic fit then diverges (odds ratios of 0 or infinity).
    """
    from scipy.optimize import linprog

    Xa = np.asarray(X, dtype=float)
    ys = np.where(np.asarray(y).astype(int) == 1, 1.0, -1.0)
    n, p = Xa.shape
    if n == 0 or len(np.unique(ys)) < 2:
        return False
    A = -ys[:, None] * np.hstack([Xa, np.ones((n, 1))])
    res = linprog(np.zeros(p + 1), A_ub=A, b_ub=-np.ones(n), bounds=[(None, None)] * (p + 1), method="highs")
    return bool(res.status == 0)
