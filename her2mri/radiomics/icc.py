"""Vectorised intraclass correlation coefficients for feature reproducibility (two or more extractions).

Shrout & Fleiss (1979) / McGraw & Wong (1996) definitions from a two-way ANOVA of an ``n x k`` table
(``n`` subjects, ``k`` raters or extractions), computed for every feature at once:

- ``MSR`` = between-subject mean square, ``MSC`` = between-rater mean square, ``MSE`` = residual mean square.
- **ICC(2,1)** (default): two-way random effects, *absolute agreement*, single measurement:
  ``(MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)``. A systematic shift between the two extractions
  (e.g. an eroded mask that lowers every mean) lowers it. This is the usual choice for radiomics
  reproducibility (Koo & Li 2016) and the default in her2mri.
- **ICC(3,1)**: two-way mixed effects, *consistency*, single measurement:
  ``(MSR - MSE) / (MSR + (k - 1) MSE)``.
  It ignores a systematic shift.

Reference values (Shrout & Fleiss 1979, Table 2, 6 subjects x 4 judges): ICC(2,1) = 0.29, ICC(3,1) = 0.71.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ICC_KINDS = ("2,1", "3,1")


def icc(ratings: Sequence[np.ndarray] | np.ndarray, kind: str = "2,1") -> np.ndarray:
    """ICC of every feature from ``k`` extractions of the same subjects.

    Args:
        ratings: a list of ``k >= 2`` arrays of shape ``(n_subjects, n_features)`` (one per extraction),
            or one array ``(n_subjects, k, n_features)``.
        kind: ``"2,1"`` (absolute agreement, default) or ``"3,1"`` (consistency).

    Returns:
        ``(n_features,)`` float array; a feature constant over all subjects and raters gets NaN.
    """
    if kind not in ICC_KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {ICC_KINDS}")
    if isinstance(ratings, np.ndarray) and ratings.ndim == 3:
        y = ratings.astype(np.float64)
    else:
        arrays = [np.asarray(r, dtype=np.float64) for r in ratings]
        if len(arrays) < 2:
            raise ValueError(f"ratings has {len(arrays)} extraction(s): the ICC needs at least 2")
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"ratings: every extraction must have the same shape, got {sorted(shapes)}")
        y = np.stack([a.reshape(a.shape[0], -1) for a in arrays], axis=1)
    n, k = y.shape[0], y.shape[1]
    if n < 2:
        raise ValueError(f"ratings has {n} subject(s): the ICC needs at least 2")
    grand = y.mean(axis=(0, 1))
    row_means = y.mean(axis=1)  # (n, p)
    col_means = y.mean(axis=0)  # (k, p)
    ss_rows = k * ((row_means - grand) ** 2).sum(axis=0)
    ss_cols = n * ((col_means - grand) ** 2).sum(axis=0)
    ss_total = ((y - grand) ** 2).sum(axis=(0, 1))
    ss_err = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    if kind == "2,1":
        denom = msr + (k - 1) * mse + k * (msc - mse) / n
    else:
        denom = msr + (k - 1) * mse
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (msr - mse) / denom
    out[~np.isfinite(out)] = np.nan
    return out
