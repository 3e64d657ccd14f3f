"""Tiny maximum-likelihood logistic regression (Newton-Raphson) used by the calibration statistics.

Written out (instead of statsmodels) so the convergence criterion is explicit and tight: the calibration
intercept and slope are compared to R ``rms::val.prob`` to 1e-6.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    offset: np.ndarray | None = None,
    start: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-12,
) -> np.ndarray:
    """Maximum-likelihood coefficients of ``logit P(y=1) = offset + x @ beta``.

    Args:
        x: design matrix ``(n, k)`` (include a column of ones for an intercept).
        y: 0/1 outcomes ``(n,)``.
        offset: fixed term added to the linear predictor, ``(n,)``; default 0.
        start: initial coefficients ``(k,)``; default 0.
        max_iter: Newton iterations allowed.
        tol: stop when the largest coefficient step is below this.

    Returns:
        Coefficients ``(k,)``.

    Raises:
        ValueError: no convergence (e.g. complete separation: the outcome is perfectly predicted).
    """
    n, k = x.shape
    off = np.zeros(n) if offset is None else offset
    beta = np.zeros(k) if start is None else np.asarray(start, dtype=np.float64).copy()
    for _ in range(max_iter):
        mu = expit(off + x @ beta)
        w = mu * (1.0 - mu)
        hess = x.T @ (x * w[:, None])
        grad = x.T @ (y - mu)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError as exc:
            raise ValueError(
                "logistic calibration fit failed: singular information matrix "
                "(constant or perfectly separated predictor)."
            ) from exc
        beta = beta + step
        if not np.all(np.isfinite(beta)):
            break
        if np.max(np.abs(step)) < tol:
            return beta
    raise ValueError(
        f"logistic calibration fit did not converge in {max_iter} iterations (coefficients {beta.tolist()}); "
        "the outcome is probably perfectly separated by the predicted probabilities."
    )
