"""Recalibration of predicted probabilities on a calibration set: Platt, isotonic, temperature.

A model moved to another site is usually miscalibrated (risks too high or too low on average, or too
extreme). A *recalibrator* is fitted on a small labelled calibration set of the new site and then maps every
new probability ``p`` to ``p'``:

- ``platt``: ``p' = sigmoid(a + b * logit(p))``, a logistic regression of the label on ``logit(p)``
  (scikit-learn ``LogisticRegression``, lightly L2-penalised with ``C`` so that it stays finite when the
  calibration set is perfectly separated). Repairs both the intercept and the slope.
- ``isotonic``: the monotone step-linear map of scikit-learn ``IsotonicRegression``
  (``out_of_bounds="clip"``).
  Most flexible; needs more patients (ties and plateaus on small sets).
- ``temperature``: ``p' = sigmoid(logit(p) / T)``, one parameter fitted by maximum likelihood (Guo et al.
  2017). Repairs over- or under-confidence only (the slope), never a shift in prevalence.

Every recalibrator is a plain set of numbers (:meth:`Recalibrator.to_dict` / :meth:`Recalibrator.from_dict`),
so it is saved as JSON and applied without unpickling anything. Platt and temperature are monotone
increasing, so they never change the AUC; isotonic is monotone non-decreasing (ties may lower the AUC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

from her2mri.stats._validate import as_probabilities, labels_and_scores
from her2mri.stats.calibration import DEFAULT_EPS, clipped_logit

__all__ = ["RECALIBRATION_METHODS", "Recalibrator", "fit_recalibrator"]

#: the recalibration methods of :func:`fit_recalibrator`
RECALIBRATION_METHODS: tuple[str, ...] = ("platt", "isotonic", "temperature")
#: inverse L2 strength of the Platt fit (large: nearly the maximum-likelihood fit, finite under separation)
DEFAULT_PLATT_C = 1000.0


@dataclass(frozen=True)
class Recalibrator:
    """A fitted recalibration map (plain numbers only; JSON round trip with ``to_dict``/``from_dict``).

    Attributes:
        method: ``platt``, ``isotonic`` or ``temperature``.
        params: ``{"a", "b"}`` (platt), ``{"x", "y"}`` knots (isotonic), ``{"temperature"}``.
        n: calibration patients the map was fitted on.
        n_pos: positives among them.
        eps: probabilities are clipped to ``[eps, 1 - eps]`` before a logit.
    """

    method: str
    params: dict[str, Any]
    n: int
    n_pos: int
    eps: float = DEFAULT_EPS
    info: dict[str, Any] = field(default_factory=dict)

    def apply(self, probs: Any) -> np.ndarray:
        """Recalibrated probabilities of ``probs`` (any shape of values in [0, 1]).

        Args:
            probs: predicted probabilities of HER2-positive.

        Returns:
            ``float64`` array of recalibrated probabilities in [0, 1].
        """
        p = as_probabilities(probs, "probs")
        if self.method == "platt":
            lp, _ = clipped_logit(p, self.eps)
            return expit(float(self.params["a"]) + float(self.params["b"]) * lp)
        if self.method == "temperature":
            lp, _ = clipped_logit(p, self.eps)
            return expit(lp / float(self.params["temperature"]))
        if self.method == "isotonic":
            x = np.asarray(self.params["x"], dtype=np.float64)
            y = np.asarray(self.params["y"], dtype=np.float64)
            return np.clip(np.interp(p, x, y), 0.0, 1.0)
        raise ValueError(f"method must be one of {list(RECALIBRATION_METHODS)}; got {self.method!r}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (the saved form)."""
        return {
            "method": self.method,
            "params": {
                k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v)
                for k, v in self.params.items()
            },
            "n": int(self.n),
            "n_pos": int(self.n_pos),
            "eps": float(self.eps),
            "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recalibrator:
        """Rebuild from :meth:`to_dict` output, checking the method and its parameters.

        Raises:
            ValueError: unknown method or missing/invalid parameters.
        """
        if not isinstance(data, dict):
            raise ValueError(f"recalibrator must be a dict; got {type(data).__name__}.")
        method = data.get("method")
        if method not in RECALIBRATION_METHODS:
            raise ValueError(
                f"recalibrator method must be one of {list(RECALIBRATION_METHODS)}; got {method!r}."
            )
        params = dict(data.get("params") or {})
        need = {"platt": ("a", "b"), "isotonic": ("x", "y"), "temperature": ("temperature",)}[method]
        missing = [k for k in need if k not in params]
        if missing:
            raise ValueError(f"recalibrator {method!r} lacks parameter(s) {missing}; got {sorted(params)}.")
        if method == "isotonic":
            x, y = np.asarray(params["x"], dtype=np.float64), np.asarray(params["y"], dtype=np.float64)
            if x.ndim != 1 or x.shape != y.shape or x.size < 1 or np.any(np.diff(x) < 0):
                raise ValueError("isotonic recalibrator needs equal-length knots x (sorted) and y.")
        if method == "temperature" and not float(params["temperature"]) > 0:
            raise ValueError(f"temperature must be > 0; got {params['temperature']!r}.")
        return cls(
            method=method,
            params=params,
            n=int(data.get("n", 0)),
            n_pos=int(data.get("n_pos", 0)),
            eps=float(data.get("eps", DEFAULT_EPS)),
            info=dict(data.get("info") or {}),
        )


def _fit_temperature(lp: np.ndarray, y: np.ndarray) -> float:
    """Maximum-likelihood temperature ``T`` of ``sigmoid(lp / T)`` (searched as ``log T`` in [-5, 5])."""

    def nll(log_t: float) -> float:
        z = lp / np.exp(log_t)
        # log(1 + exp(z)) - y z, numerically stable
        return float(np.sum(np.logaddexp(0.0, z) - y * z))

    res = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-10})
    return float(np.exp(res.x))


def fit_recalibrator(
    y_true: Any,
    y_prob: Any,
    method: str = "platt",
    *,
    platt_c: float = DEFAULT_PLATT_C,
    eps: float = DEFAULT_EPS,
) -> Recalibrator:
    """Fit a recalibration map on a labelled calibration set.

    Args:
        y_true: labels (0/1) of the calibration patients, both classes present.
        y_prob: the model's probabilities for them.
        method: ``platt`` (default: two parameters, robust on small sets), ``isotonic`` or ``temperature``.
        platt_c: inverse L2 strength of the Platt logistic fit (> 0).
        eps: clipping before the logit.

    Returns:
        The fitted :class:`Recalibrator`.

    Raises:
        ValueError: unknown method, bad inputs (one class, NaN, ...), ``platt_c <= 0``.

    Example:
        >>> cal = fit_recalibrator(y_cal, p_cal, "platt")  # doctest: +SKIP
        >>> p_new = cal.apply(p_test)  # doctest: +SKIP
    """
    if method not in RECALIBRATION_METHODS:
        raise ValueError(f"method must be one of {list(RECALIBRATION_METHODS)}; got {method!r}.")
    y, p = labels_and_scores(y_true, y_prob, score_name="y_prob", probabilities=True)
    yf = y.astype(np.float64)
    n, n_pos = int(y.size), int(y.sum())
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        if not platt_c > 0:
            raise ValueError(f"platt_c must be > 0; got {platt_c!r}.")
        lp, _ = clipped_logit(p, eps)
        lr = LogisticRegression(C=float(platt_c), max_iter=1000, tol=1e-10)
        lr.fit(lp[:, None], y)
        params: dict[str, Any] = {"a": float(lr.intercept_[0]), "b": float(lr.coef_[0, 0])}
        info = {"platt_c": float(platt_c)}
    elif method == "temperature":
        lp, _ = clipped_logit(p, eps)
        params = {"temperature": _fit_temperature(lp, yf)}
        info = {}
    else:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
        iso.fit(p, yf)
        params = {"x": np.asarray(iso.X_thresholds_).tolist(), "y": np.asarray(iso.y_thresholds_).tolist()}
        info = {}
    return Recalibrator(method=method, params=params, n=n, n_pos=n_pos, eps=float(eps), info=info)
