"""Hosmer-Lemeshow goodness-of-fit test, grouping as R ``ResourceSelection::hoslem.test``.

Grouping rule (reproduced exactly, including its quirks):

1. break points = the ``0, 1/g, ..., 1`` quantiles of the predicted probabilities (R type 7 = numpy's
   default linear interpolation), duplicates removed (``unique``);
2. each patient goes to the interval ``(b_{k-1}, b_k]``; the first interval is closed on both sides
   (R ``cut(..., include.lowest = TRUE)``);
3. per group, observed and expected counts of *both* outcomes: ``O1 = sum(y)``, ``E1 = sum(p)``,
   ``O0 = sum(1 - y)``, ``E0 = sum(1 - p)``;
4. ``chi2 = sum over groups and outcomes of (O - E)^2 / E``; ``df = g - 2``; ``p = P(chi2_df > chi2)``.

As in hoslem.test, ``df`` stays ``g - 2`` even when tied probabilities merge break points and fewer than
``g`` groups remain; ``n_groups`` reports how many there were (a warning is issued when fewer than ``g``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import chi2 as chi2_dist

from her2mri.stats._validate import labels_and_scores


@dataclass(frozen=True)
class HosmerLemeshowResult:
    """Hosmer-Lemeshow test result.

    Attributes:
        chi2: test statistic.
        df: degrees of freedom (``g - 2``).
        p_value: upper-tail chi-square probability; small values mean poor calibration.
        g: requested number of groups.
        n_groups: groups actually formed (fewer than ``g`` when quantiles tie).
        breaks: group break points.
        observed: observed positives per group.
        expected: expected positives (sum of p) per group.
        count: patients per group.
    """

    chi2: float
    df: int
    p_value: float
    g: int
    n_groups: int
    breaks: np.ndarray
    observed: np.ndarray
    expected: np.ndarray
    count: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict with lists (JSON serialisable)."""
        return {
            "chi2": self.chi2,
            "df": self.df,
            "p_value": self.p_value,
            "g": self.g,
            "n_groups": self.n_groups,
            "breaks": self.breaks.tolist(),
            "observed": self.observed.tolist(),
            "expected": self.expected.tolist(),
            "count": self.count.tolist(),
        }


def hosmer_lemeshow(y_true: Any, y_prob: Any, g: int = 10) -> HosmerLemeshowResult:
    """Hosmer-Lemeshow chi-square test on deciles (by default) of predicted risk.

    Args:
        y_true: labels (0/1), both classes present.
        y_prob: predicted probabilities in [0, 1], not constant.
        g: number of risk groups (>= 3, so that ``df = g - 2 >= 1``); default 10 (deciles).

    Returns:
        A :class:`HosmerLemeshowResult`.

    Raises:
        ValueError: bad inputs; an empty risk group (heavily tied probabilities) or a group whose expected
            count of an outcome is 0 (probabilities of exactly 0 or 1), where the statistic is undefined
            (R returns NaN).
    """
    if isinstance(g, bool) or int(g) != g or g < 3:
        raise ValueError(f"g must be an integer >= 3; got {g!r}.")
    g = int(g)
    y, p = labels_and_scores(y_true, y_prob, score_name="y_prob", probabilities=True, need_variance=True)
    breaks = np.unique(np.quantile(p, np.linspace(0.0, 1.0, g + 1)))
    n_groups = breaks.size - 1
    if n_groups < g:
        warnings.warn(
            f"hosmer_lemeshow: tied probabilities give {n_groups} groups instead of g={g}; "
            f"df stays g - 2 = {g - 2} as in ResourceSelection::hoslem.test.",
            stacklevel=2,
        )
    idx = np.clip(np.searchsorted(breaks, p, side="left") - 1, 0, n_groups - 1)
    count = np.bincount(idx, minlength=n_groups).astype(np.float64)
    obs1 = np.bincount(idx, weights=y.astype(np.float64), minlength=n_groups)
    exp1 = np.bincount(idx, weights=p, minlength=n_groups)
    obs0, exp0 = count - obs1, count - exp1
    if np.any(count == 0):
        k = int(np.flatnonzero(count == 0)[0])
        raise ValueError(
            f"hosmer_lemeshow: risk group ({breaks[k]:.6g}, {breaks[k + 1]:.6g}] is empty (tied predicted "
            f"probabilities, counts {count.astype(int).tolist()}); the statistic is undefined (hoslem.test "
            f"returns NaN). Use fewer groups than g={g}."
        )
    if np.any(exp1 <= 0) or np.any(exp0 <= 0):
        raise ValueError(
            f"hosmer_lemeshow: a group has an expected count of 0 (expected positives {exp1.tolist()}, "
            f"negatives {exp0.tolist()}: probabilities of exactly 0 or 1); the statistic is undefined."
        )
    stat = float(np.sum((obs1 - exp1) ** 2 / exp1) + np.sum((obs0 - exp0) ** 2 / exp0))
    df = g - 2
    return HosmerLemeshowResult(
        chi2=stat,
        df=df,
        p_value=float(chi2_dist.sf(stat, df)),
        g=g,
        n_groups=n_groups,
        breaks=breaks,
        observed=obs1,
        expected=exp1,
        count=count.astype(np.int64),
    )
