"""Split-conformal prediction sets for a binary HER2 call: ``HER2-``, ``HER2+`` or ``uncertain``.

Short, documented implementation of split-conformal classification with the LAC score (Sadinle, Lei &
Wasserman 2019; Angelopoulos & Bates 2021, "A gentle introduction to conformal prediction"); MAPIE is not a
dependency of her2mri.

1. Nonconformity score of a labelled calibration patient: ``s = 1 - p(true class)`` with ``p(1) = prob`` and
   ``p(0) = 1 - prob``.
2. ``qhat`` is the ``ceil((n + 1)(1 - alpha)) / n`` empirical quantile of the ``n`` calibration scores (the
   ``k``-th smallest score with ``k = ceil((n + 1)(1 - alpha))``; ``+inf`` when ``k > n``: too few
   calibration patients for this ``alpha``, every set is then ``{0, 1}``).
3. The prediction set of a new patient holds every class ``c`` with ``1 - p(c) <= qhat``.

If calibration and new patients are exchangeable, ``P(true label in set) >= 1 - alpha`` (marginal coverage).
With ``mode="class"`` (Mondrian, class-conditional) one ``qhat`` is taken per class from the calibration
patients of that class, which guarantees ``1 - alpha`` coverage *within* each class (for HER2-positive
patients too, however rare) at the price of larger sets; it needs ``ceil(1/alpha) - 1`` patients of
each class.

The call is ``HER2+`` for the set ``{1}``, ``HER2-`` for ``{0}``, ``uncertain`` for ``{0, 1}`` (refer: e.g.
biopsy) and ``empty`` for the empty set (possible when ``qhat < 0.5``: the model is very sure on calibration
data and this patient is unlike them; treat as uncertain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from her2mri.stats._validate import as_labels, as_probabilities, check_same_length

__all__ = [
    "CALLS",
    "CONFORMAL_MODES",
    "ConformalCalibration",
    "conformal_coverage",
    "fit_conformal",
]

CONFORMAL_MODES: tuple[str, ...] = ("marginal", "class")
#: call per prediction set, index = 2 * (1 in set) + (0 in set)
CALLS: tuple[str, ...] = ("empty", "HER2-", "HER2+", "uncertain")


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}.")
    return float(alpha)


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The ``k``-th smallest score, ``k = ceil((n + 1)(1 - alpha))`` (``inf`` when ``k > n`` or ``n = 0``)."""
    n = int(scores.size)
    k = math.ceil((n + 1) * (1.0 - alpha) - 1e-12)
    if n == 0 or k > n:
        return math.inf
    return float(np.sort(scores)[k - 1])


@dataclass(frozen=True)
class ConformalCalibration:
    """A fitted split-conformal classifier (plain numbers; JSON round trip with ``to_dict``/``from_dict``).

    Attributes:
        alpha: target error rate (coverage ``>= 1 - alpha``).
        mode: ``marginal`` or ``class``.
        qhat: ``{"all": q}`` (marginal) or ``{"0": q0, "1": q1}`` (class-conditional); ``None`` stands for
            ``+inf`` (too few calibration patients: every set is ``{0, 1}``).
        n: calibration patients.
        n_pos: positives among them.
    """

    alpha: float
    mode: str
    qhat: dict[str, float | None]
    n: int
    n_pos: int

    def _q(self, cls: int) -> float:
        key = "all" if self.mode == "marginal" else str(cls)
        q = self.qhat.get(key)
        return math.inf if q is None else float(q)

    def prediction_sets(self, probs: Any) -> np.ndarray:
        """Boolean ``(n, 2)`` membership: column 0 = HER2- in the set, column 1 = HER2+ in the set."""
        p = as_probabilities(probs, "probs")
        in0 = p <= self._q(0)  # score of class 0: 1 - p(0) = p
        in1 = (1.0 - p) <= self._q(1)
        return np.column_stack([in0, in1])

    def calls(self, probs: Any) -> list[str]:
        """``HER2-``, ``HER2+``, ``uncertain`` (both) or ``empty`` per patient."""
        sets = self.prediction_sets(probs)
        return [CALLS[2 * int(b) + int(a)] for a, b in sets]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (``+inf`` as ``None``)."""
        return {
            "alpha": self.alpha,
            "mode": self.mode,
            "qhat": {
                k: (None if v is None or not math.isfinite(v) else float(v)) for k, v in self.qhat.items()
            },
            "n": int(self.n),
            "n_pos": int(self.n_pos),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConformalCalibration:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: bad alpha, mode or quantiles.
        """
        if not isinstance(data, dict):
            raise ValueError(f"conformal calibration must be a dict; got {type(data).__name__}.")
        mode = data.get("mode")
        if mode not in CONFORMAL_MODES:
            raise ValueError(f"conformal mode must be one of {list(CONFORMAL_MODES)}; got {mode!r}.")
        need = ("all",) if mode == "marginal" else ("0", "1")
        qhat = dict(data.get("qhat") or {})
        if any(k not in qhat for k in need):
            raise ValueError(f"conformal qhat needs keys {list(need)}; got {sorted(qhat)}.")
        return cls(
            alpha=_check_alpha(data.get("alpha", -1)),
            mode=mode,
            qhat={k: (None if qhat[k] is None else float(qhat[k])) for k in need},
            n=int(data.get("n", 0)),
            n_pos=int(data.get("n_pos", 0)),
        )


def fit_conformal(
    y_true: Any, y_prob: Any, alpha: float = 0.1, mode: str = "marginal"
) -> ConformalCalibration:
    """Calibrate split-conformal prediction sets on held-out labelled patients.

    Args:
        y_true: labels (0/1) of calibration patients the model was not trained on.
        y_prob: their predicted probabilities of HER2-positive (recalibrated ones, when a recalibrator is used
            at prediction time).
        alpha: target error rate in (0, 1) (default 0.1: sets contain the true status >= 90% of the time).
        mode: ``marginal`` (default) or ``class`` (per-class coverage; larger sets).

    Returns:
        The :class:`ConformalCalibration` (``qhat`` ``None`` = infinite, see the module docstring).

    Example:
        >>> conf = fit_conformal(y_cal, p_cal, alpha=0.1)  # doctest: +SKIP
        >>> conf.calls(p_new)  # doctest: +SKIP
        ['HER2-', 'uncertain', 'HER2+']
    """
    a = _check_alpha(alpha)
    if mode not in CONFORMAL_MODES:
        raise ValueError(f"mode must be one of {list(CONFORMAL_MODES)}; got {mode!r}.")
    y = as_labels(y_true)
    p = as_probabilities(y_prob)
    check_same_length(y_true=y, y_prob=p)
    if y.size == 0:
        raise ValueError("y_true is empty: conformal calibration needs labelled patients.")
    scores = np.where(y == 1, 1.0 - p, p)  # 1 - p(true class)
    if mode == "marginal":
        q = conformal_quantile(scores, a)
        qhat: dict[str, float | None] = {"all": None if math.isinf(q) else q}
    else:
        qhat = {}
        for c in (0, 1):
            q = conformal_quantile(scores[y == c], a)
            qhat[str(c)] = None if math.isinf(q) else q
    return ConformalCalibration(alpha=a, mode=mode, qhat=qhat, n=int(y.size), n_pos=int(y.sum()))


def conformal_coverage(conf: ConformalCalibration, y_true: Any, y_prob: Any) -> dict[str, Any]:
    """Empirical coverage and set sizes of ``conf`` on labelled test patients.

    Returns:
        ``{"n", "alpha", "target_coverage", "coverage", "coverage_pos", "coverage_neg", "share_uncertain",
        "share_empty", "share_single", "n_calls": {call: count}}`` (``coverage_pos``/``_neg`` ``None`` when
        the class is absent).
    """
    y = as_labels(y_true)
    p = as_probabilities(y_prob)
    check_same_length(y_true=y, y_prob=p)
    if y.size == 0:
        raise ValueError("y_true is empty: coverage needs labelled patients.")
    sets = conf.prediction_sets(p)
    covered = sets[np.arange(y.size), y]
    size = sets.sum(axis=1)
    calls = conf.calls(p)
    return {
        "n": int(y.size),
        "alpha": conf.alpha,
        "target_coverage": 1.0 - conf.alpha,
        "coverage": float(covered.mean()),
        "coverage_pos": float(covered[y == 1].mean()) if (y == 1).any() else None,
        "coverage_neg": float(covered[y == 0].mean()) if (y == 0).any() else None,
        "share_uncertain": float(np.mean(size == 2)),
        "share_empty": float(np.mean(size == 0)),
        "share_single": float(np.mean(size == 1)),
        "n_calls": {c: int(sum(1 for x in calls if x == c)) for c in CALLS},
    }
