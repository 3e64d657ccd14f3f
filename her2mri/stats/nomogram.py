"""Nomogram for a logistic model: points per predictor, total points -> linear predictor -> risk.

Scaling (as R ``rms::nomogram`` with ``maxscale = 100``): for predictor ``j`` with coefficient ``b_j``
and axis values ``x``, its contribution ``b_j * x`` spans ``R_j = max(b_j x) - min(b_j x)`` over the axis
values. With ``scale = max_points / max_j R_j`` (points per unit of linear predictor):

    points_j(x)   = (b_j * x - min_x(b_j * x)) * scale           # the widest predictor spans 0..100
    LP(total)     = intercept + sum_j min_x(b_j * x) + total / scale
    risk(total)   = 1 / (1 + exp(-LP(total)))

Each predictor's axis range is the span of the values given for it (rms uses the values passed to
``nomogram()`` the same way), so the values must cover the range of interest: a patient outside it gets
points outside ``[0, max_points]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class NomogramPredictor:
    """One predictor axis: name, coefficient (log-odds per unit) and axis values (sorted, distinct)."""

    name: str
    coef: float
    values: tuple[float, ...]


@dataclass(frozen=True)
class Nomogram:
    """A logistic-model nomogram (build it with :func:`build_nomogram`).

    Attributes:
        intercept: model intercept.
        predictors: the predictor axes.
        scale: points per unit of linear predictor.
        lp_offset: linear predictor at 0 total points (intercept + per-predictor minima).
        max_points: points of the widest predictor (100).
    """

    intercept: float
    predictors: tuple[NomogramPredictor, ...]
    scale: float
    lp_offset: float
    max_points: float

    def _predictor(self, name: str) -> NomogramPredictor:
        for pr in self.predictors:
            if pr.name == name:
                return pr
        raise ValueError(f"unknown predictor {name!r}; the nomogram has {[p.name for p in self.predictors]}.")

    def points(self, name: str, x: Any) -> np.ndarray:
        """Points of predictor ``name`` at value(s) ``x``."""
        pr = self._predictor(name)
        xb = pr.coef * np.asarray(x, dtype=np.float64)
        lo = min(pr.coef * v for v in pr.values)
        return (xb - lo) * self.scale

    def total_points(self, values: Mapping[str, Any]) -> np.ndarray:
        """Total points of one or more patients (``values``: predictor name -> value(s); all predictors)."""
        missing = [p.name for p in self.predictors if p.name not in values]
        if missing:
            raise ValueError(f"values lacks predictor(s) {missing}.")
        return sum(self.points(p.name, values[p.name]) for p in self.predictors)

    def linear_predictor(self, total_points: Any) -> np.ndarray:
        """Linear predictor (log-odds) at the given total points."""
        return self.lp_offset + np.asarray(total_points, dtype=np.float64) / self.scale

    def risk(self, total_points: Any) -> np.ndarray:
        """Predicted probability at the given total points."""
        return expit(self.linear_predictor(total_points))

    def total_points_for_risk(self, risk: Any) -> np.ndarray:
        """Total points at which the predicted probability equals ``risk`` (each in (0, 1))."""
        r = np.asarray(risk, dtype=np.float64)
        if np.any(~np.isfinite(r) | (r <= 0) | (r >= 1)):
            raise ValueError(f"risk must lie in (0, 1); got {np.atleast_1d(r)[:5].tolist()}.")
        return (logit(r) - self.lp_offset) * self.scale

    def points_table(self) -> pd.DataFrame:
        """One row per axis value: ``predictor``, ``value``, ``points`` (as printed by rms)."""
        rows = [
            {"predictor": p.name, "value": v, "points": float(self.points(p.name, v))}
            for p in self.predictors
            for v in p.values
        ]
        return pd.DataFrame(rows, columns=["predictor", "value", "points"])

    def max_total_points(self) -> float:
        """Largest possible total points over the axis ranges."""
        return float(sum(self.points(p.name, list(p.values)).max() for p in self.predictors))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON serialisable)."""
        return {
            "intercept": self.intercept,
            "scale": self.scale,
            "lp_offset": self.lp_offset,
            "max_points": self.max_points,
            "predictors": [
                {
                    "name": p.name,
                    "coef": p.coef,
                    "values": list(p.values),
                    "points": self.points(p.name, list(p.values)).tolist(),
                }
                for p in self.predictors
            ],
        }


def build_nomogram(
    coefficients: Mapping[str, float],
    intercept: float,
    values: Mapping[str, Sequence[float]],
    max_points: float = 100.0,
) -> Nomogram:
    """Build a nomogram from logistic-regression coefficients and the axis values of each predictor.

    Args:
        coefficients: predictor name -> coefficient (log-odds per unit), in the order of the axes.
        intercept: model intercept.
        values: predictor name -> axis values (>= 2 distinct; their span is the axis range). For a binary
            predictor use ``[0, 1]``; :func:`axis_values` suggests values from data.
        max_points: points given to the predictor with the widest ``|coef| * range`` (rms ``maxscale``).

    Returns:
        A :class:`Nomogram`.

    Example:
        >>> nom = build_nomogram({"age": 0.05, "hr": 1.0}, -4.0, {"age": [30, 50, 70], "hr": [0, 1]})
        >>> nom.points("age", 70).item(), nom.points("hr", 1).item()
        (100.0, 50.0)
    """
    if not coefficients:
        raise ValueError("coefficients is empty.")
    if not math.isfinite(intercept):
        raise ValueError(f"intercept must be finite; got {intercept!r}.")
    if not (math.isfinite(max_points) and max_points > 0):
        raise ValueError(f"max_points must be positive; got {max_points!r}.")
    extra = sorted(set(values) - set(coefficients))
    if extra:
        raise ValueError(f"values has predictor(s) {extra} without a coefficient.")
    preds = []
    for name, coef in coefficients.items():
        if not math.isfinite(coef):
            raise ValueError(f"coefficient of {name!r} must be finite; got {coef!r}.")
        if name not in values:
            raise ValueError(f"values lacks predictor {name!r}.")
        v = np.unique(np.asarray(values[name], dtype=np.float64))
        if v.size < 2 or not np.all(np.isfinite(v)):
            raise ValueError(f"values[{name!r}] needs >= 2 distinct finite values; got {list(values[name])}.")
        preds.append(NomogramPredictor(str(name), float(coef), tuple(float(x) for x in v)))
    spans = [abs(p.coef) * (p.values[-1] - p.values[0]) for p in preds]
    widest = max(spans)
    if widest == 0:
        raise ValueError("every coefficient is 0: the nomogram has no scale.")
    scale = max_points / widest
    lp_offset = intercept + sum(min(p.coef * x for x in p.values) for p in preds)
    return Nomogram(float(intercept), tuple(preds), float(scale), float(lp_offset), float(max_points))


def axis_values(x: Any, n_ticks: int = 6) -> list[float]:
    """Suggest axis values for a predictor from data: ``[0, 1]`` for binary data, else nice round ticks.

    Args:
        x: observed predictor values.
        n_ticks: approximate number of ticks for a continuous predictor.

    Returns:
        Sorted round values; the first is <= the data minimum and the last >= the data maximum, so
        every observed patient gets points within ``[0, max_points]``.
    """
    from matplotlib.ticker import MaxNLocator

    arr = np.asarray(x, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError("x has no finite value.")
    uniq = np.unique(arr)
    if uniq.size <= 2 and set(uniq.tolist()) <= {0.0, 1.0}:
        return [0.0, 1.0]
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        raise ValueError(f"x is constant ({lo}); a nomogram axis needs a range.")
    ticks = np.asarray(MaxNLocator(nbins=n_ticks).tick_values(lo, hi), dtype=np.float64)
    first = ticks[ticks <= lo].max()
    last = ticks[ticks >= hi].min()
    return [float(f"{t:.12g}") for t in ticks if first <= t <= last]


def plot_nomogram(
    nom: Nomogram,
    risk_ticks: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
    title: str | None = None,
    risk_label: str = "Risk of HER2-positive",
) -> Figure:
    """Draw the nomogram: Points axis, one axis per predictor, Total points, Linear predictor, Risk.

    Args:
        nom: a :class:`Nomogram`.
        risk_ticks: probabilities marked on the risk axis (those outside the total-points range are left out).
        title: figure title.
        risk_label: label of the risk axis.

    Returns:
        The matplotlib Figure (object API, renders headless with Agg).
    """
    from matplotlib.figure import Figure

    total_max = nom.max_total_points()
    rows: list[tuple[str, list[tuple[float, str]]]] = []
    pts_ticks = np.linspace(0.0, nom.max_points, 11)
    rows.append(("Points", [(t / nom.max_points, f"{t:g}") for t in pts_ticks]))
    for p in nom.predictors:
        pos = nom.points(p.name, list(p.values)) / nom.max_points
        rows.append((p.name, [(float(x), f"{v:g}") for x, v in zip(pos, p.values, strict=True)]))
    from matplotlib.ticker import MaxNLocator

    tot_ticks = [t for t in MaxNLocator(nbins=8).tick_values(0.0, total_max) if 0 <= t <= total_max]
    span = total_max if total_max > 0 else 1.0
    rows.append(("Total points", [(t / span, f"{t:g}") for t in tot_ticks]))
    lp_lo, lp_hi = float(nom.linear_predictor(0.0)), float(nom.linear_predictor(total_max))
    lp_ticks = [t for t in MaxNLocator(nbins=8).tick_values(lp_lo, lp_hi) if lp_lo <= t <= lp_hi]
    rows.append(("Linear predictor", [(float((t - lp_lo) / (lp_hi - lp_lo)), f"{t:g}") for t in lp_ticks]))
    risk_pos = nom.total_points_for_risk(np.asarray(risk_ticks, dtype=np.float64)) / span
    rows.append(
        (risk_label, [(float(x), f"{r:g}") for x, r in zip(risk_pos, risk_ticks, strict=True) if 0 <= x <= 1])
    )

    fig = Figure(figsize=(8.0, 0.55 * len(rows) + 0.8))
    ax = fig.add_axes((0.25, 0.05, 0.7, 0.85 if title else 0.9))
    for i, (label, ticks) in enumerate(rows):
        yv = -float(i)
        xs = [x for x, _ in ticks]
        if xs:
            ax.plot([min(xs), max(xs)], [yv, yv], color="k", linewidth=1.0)
        for x, text in ticks:
            ax.plot([x, x], [yv, yv + 0.15], color="k", linewidth=1.0)
            ax.text(x, yv + 0.2, text, ha="center", va="bottom", fontsize=7)
        ax.text(-0.03, yv, label, ha="right", va="center", fontsize=9)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-len(rows) + 0.5, 0.8)
    ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig
