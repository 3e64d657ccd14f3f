"""Decision curve analysis (Vickers & Elkin 2006) with ``dcurves``, plus a plotting helper.

Net benefit of treating the patients whose predicted risk is ``>= pt`` (the threshold probability):

    NB(pt) = TP / n - FP / n * pt / (1 - pt)

"Treat all" treats everyone (``NB = prev - (1 - prev) * pt / (1 - pt)``), "treat none" nobody (``NB = 0``).
A model is useful at ``pt`` when its curve lies above both. :func:`decision_curve` delegates to
``dcurves.dca`` (by the group that defined DCA); :func:`net_benefit` is the same formula written out,
vectorised, used to cross-check dcurves in the tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from her2mri.stats._validate import as_labels, as_probabilities, check_same_length

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: default threshold grid, as dcurves: 0.00, 0.01, ..., 0.99
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(i / 100 for i in range(100))
_RESERVED = ("all", "none")
_OUTCOME = "__her2mri_outcome__"


def _check_thresholds(thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.size == 0:
        raise ValueError("thresholds is empty.")
    bad = ~np.isfinite(t) | (t < 0) | (t >= 1)
    if bad.any():
        raise ValueError(f"thresholds must lie in [0, 1); got {t[bad][:5].tolist()}.")
    return t


def _models(y_prob: Mapping[str, Any] | Any, model_name: str) -> dict[str, Any]:
    models = dict(y_prob) if isinstance(y_prob, Mapping) else {model_name: y_prob}
    if not models:
        raise ValueError("y_prob has no model.")
    for name in models:
        if not isinstance(name, str) or not name or name in _RESERVED or name == _OUTCOME:
            raise ValueError(f"model name must be a non-empty string other than 'all'/'none'; got {name!r}.")
    return models


def net_benefit(y_true: Any, y_prob: Any, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """Net benefit of one model at each threshold (``p >= pt`` is treated).

    Args:
        y_true: labels (0/1).
        y_prob: predicted probabilities in [0, 1].
        thresholds: threshold probabilities in [0, 1).

    Returns:
        Net benefit per threshold.
    """
    y = as_labels(y_true)
    p = as_probabilities(y_prob)
    check_same_length(y_true=y, y_prob=p)
    t = _check_thresholds(thresholds)
    treated = p[None, :] >= t[:, None]
    tp = (treated & (y[None, :] == 1)).sum(axis=1)
    fp = (treated & (y[None, :] == 0)).sum(axis=1)
    return tp / y.size - fp / y.size * t / (1.0 - t)


def decision_curve(
    y_true: Any,
    y_prob: Mapping[str, Any] | Any,
    thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS,
    model_name: str = "model",
) -> pd.DataFrame:
    """Decision curves of one or more models with treat-all and treat-none, via ``dcurves.dca``.

    Args:
        y_true: labels (0/1) shared by all models.
        y_prob: predicted probabilities in [0, 1]: one array, or a mapping model name -> array.
        thresholds: threshold probabilities in [0, 1) (default 0.00 to 0.99 by 0.01).
        model_name: name of the model when ``y_prob`` is a single array.

    Returns:
        Long DataFrame with columns ``model`` (the model names, then ``"all"`` and ``"none"``),
        ``threshold``, ``net_benefit``, ``tp_rate``, ``fp_rate``, ``test_pos_rate``, ``prevalence``, ``n``
        and dcurves' ``net_intervention_avoided`` (per 1 patient; undefined at threshold 0).
    """
    import dcurves  # lazy: importing dcurves takes ~2 s

    y = as_labels(y_true)
    t = _check_thresholds(thresholds)
    models = _models(y_prob, model_name)
    data = {_OUTCOME: y}
    for name, values in models.items():
        p = as_probabilities(values, f"y_prob[{name!r}]")
        check_same_length(y_true=y, **{f"y_prob[{name!r}]": p})
        data[name] = p
    df = dcurves.dca(
        data=pd.DataFrame(data), outcome=_OUTCOME, modelnames=list(models), thresholds=t.tolist()
    )
    cols = [
        "model",
        "threshold",
        "net_benefit",
        "tp_rate",
        "fp_rate",
        "test_pos_rate",
        "prevalence",
        "n",
        "net_intervention_avoided",
    ]
    return df[cols].reset_index(drop=True)


def plot_decision_curve(
    curves: pd.DataFrame,
    ax: Axes | None = None,
    ylim: tuple[float, float] | None = None,
    title: str | None = "Decision curve",
) -> Figure:
    """Plot net benefit vs threshold for every model in a :func:`decision_curve` table.

    Uses matplotlib's object API (no pyplot state; renders with the Agg canvas, headless).

    Args:
        curves: output of :func:`decision_curve`.
        ax: axes to draw on; a new 6 x 4.5 in figure when ``None``.
        ylim: y limits; default from -0.05 to a little above the largest net benefit (treat-all plunges
            far below 0 at high thresholds and would otherwise flatten the useful range).
        title: axes title (``None`` for none).

    Returns:
        The matplotlib Figure.
    """
    from matplotlib.figure import Figure

    need = {"model", "threshold", "net_benefit"}
    if not need.issubset(curves.columns):
        raise ValueError(f"curves must have columns {sorted(need)}; got {list(curves.columns)}.")
    if ax is None:
        fig = Figure(figsize=(6.0, 4.5))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    styles = {"all": {"color": "0.45", "linestyle": "--"}, "none": {"color": "0.0", "linestyle": ":"}}
    labels = {"all": "Treat all", "none": "Treat none"}
    for name, part in curves.groupby("model", sort=False):
        ax.plot(part["threshold"], part["net_benefit"], label=labels.get(name, name), **styles.get(name, {}))
    top = float(np.nanmax(curves["net_benefit"].to_numpy(dtype=np.float64)))
    ax.set_ylim(ylim if ylim is not None else (-0.05, max(top, 0.0) * 1.1 + 0.02))
    ax.set_xlim(float(curves["threshold"].min()), float(curves["threshold"].max()))
    ax.set_xlabel("Threshold probability")
    ax.set_ylabel("Net benefit")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return fig
