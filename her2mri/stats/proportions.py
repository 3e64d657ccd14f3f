"""Binomial proportions with Wilson score confidence intervals.

The Wilson interval (Wilson 1927; recommended by Newcombe 1998 and Agresti & Coull 1998) stays inside
[0, 1] and keeps close to nominal coverage for small ``n`` and proportions near 0 or 1, where the Wald
interval fails. It equals R ``prop.test(x, n, correct = FALSE)$conf.int``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from scipy.stats import norm

from her2mri.stats._validate import check_level


def finite_or_none(value: Any) -> Any:
    """JSON-safe value: non-finite floats become ``None``; other values pass through."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class ProportionCI:
    """A proportion ``successes / total`` with its confidence interval.

    ``estimate``, ``lower`` and ``upper`` are NaN when ``total`` is 0 (undefined, e.g. a PPV with no
    predicted positives); :meth:`to_dict` writes them as ``None``. ``successes`` and ``total`` are ``None``
    for a derived quantity that is not a single proportion (balanced accuracy, ``method="mover-wilson"``).
    """

    estimate: float
    lower: float
    upper: float
    successes: int | None
    total: int | None
    conf_level: float
    method: str = "wilson"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON serialisable; NaN -> None)."""
        return {k: finite_or_none(v) for k, v in asdict(self).items()}


def wilson_ci(successes: int, total: int, conf_level: float = 0.95) -> ProportionCI:
    """Wilson score interval for ``successes / total``.

    Args:
        successes: number of successes, ``0 <= successes <= total``.
        total: number of trials (0 gives NaN estimate and bounds).
        conf_level: confidence level in (0, 1).

    Returns:
        A :class:`ProportionCI`.

    Example:
        >>> r = wilson_ci(81, 263)  # Newcombe (1998), Table I: 0.2553 to 0.3662
        >>> round(r.lower, 4), round(r.upper, 4)
        (0.2553, 0.3662)
    """
    level = check_level(conf_level)
    if int(total) != total or total < 0:
        raise ValueError(f"total must be a non-negative integer; got {total!r}.")
    if int(successes) != successes or not 0 <= successes <= total:
        raise ValueError(f"successes must be an integer in [0, total={total}]; got {successes!r}.")
    x, n = int(successes), int(total)
    if n == 0:
        nan = float("nan")
        return ProportionCI(nan, nan, nan, x, n, level)
    z = float(norm.ppf(0.5 + level / 2.0))
    p = x / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    return ProportionCI(p, max(0.0, centre - half), min(1.0, centre + half), x, n, level)


def mover_mean_ci(a: ProportionCI, b: ProportionCI) -> tuple[float, float, float]:
    """CI of the mean of two independent proportions by MOVER (Zou & Donner 2008) on Wilson limits.

    Used for balanced accuracy = (sensitivity + specificity) / 2, whose two parts come from disjoint
    patient groups (positives, negatives), hence independent.

    Returns:
        ``(estimate, lower, upper)``; NaN when either part is undefined.
    """
    est = (a.estimate + b.estimate) / 2.0
    if not (math.isfinite(a.estimate) and math.isfinite(b.estimate)):
        nan = float("nan")
        return nan, nan, nan
    lo = a.estimate + b.estimate - math.hypot(a.estimate - a.lower, b.estimate - b.lower)
    hi = a.estimate + b.estimate + math.hypot(a.upper - a.estimate, b.upper - b.estimate)
    return est, lo / 2.0, hi / 2.0
