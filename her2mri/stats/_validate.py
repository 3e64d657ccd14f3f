"""Shared input checks for :mod:`her2mri.stats`: every public function validates through these helpers.

Each helper raises ``ValueError`` whose message names the argument and the bad value, so a degenerate
evaluation (one class only, constant scores, NaN, mismatched lengths, labels other than 0/1) fails loudly
instead of returning a misleading number.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _preview(values: np.ndarray, k: int = 5) -> str:
    items = ", ".join(repr(v) for v in values[:k].tolist())
    return f"[{items}{', ...' if values.size > k else ''}]"


def as_labels(y: Any, name: str = "y_true") -> np.ndarray:
    """Return 1-D binary labels as an ``int64`` array.

    Accepts ints, bools or floats equal to 0 or 1.

    Args:
        y: labels, any array-like.
        name: argument name used in error messages.

    Returns:
        The labels as ``int64``.

    Raises:
        ValueError: not 1-D, empty, NaN/inf, or a value other than 0/1.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty.")
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be numeric 0/1 labels; got dtype {arr.dtype} (values {_preview(arr)})."
        )
    arr = arr.astype(np.float64)
    bad_finite = ~np.isfinite(arr)
    if bad_finite.any():
        raise ValueError(
            f"{name} contains {int(bad_finite.sum())} NaN/inf value(s), e.g. {_preview(arr[bad_finite])}."
        )
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        raise ValueError(f"{name} must contain only 0 and 1; got {_preview(np.unique(arr[bad]))}.")
    return arr.astype(np.int64)


def as_scores(s: Any, name: str = "y_score") -> np.ndarray:
    """Return 1-D finite scores as a ``float64`` array.

    Args:
        s: scores, any array-like.
        name: argument name used in error messages.

    Returns:
        The scores as ``float64``.

    Raises:
        ValueError: not 1-D, empty, or NaN/inf.
    """
    arr = np.asarray(s)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty.")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype} (values {_preview(arr)}).")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise ValueError(
            f"{name} contains {idx.size} NaN/inf value(s) at index {_preview(idx)}: {_preview(arr[bad])}."
        )
    return arr


def as_probabilities(p: Any, name: str = "y_prob") -> np.ndarray:
    """Return 1-D finite probabilities in [0, 1] as a ``float64`` array.

    Raises:
        ValueError: as :func:`as_scores`, or a value outside [0, 1].
    """
    arr = as_scores(p, name)
    bad = (arr < 0) | (arr > 1)
    if bad.any():
        raise ValueError(f"{name} must be probabilities in [0, 1]; got {_preview(arr[bad])}.")
    return arr


def check_same_length(**arrays: np.ndarray) -> None:
    """Raise ``ValueError`` unless all arrays have one length (names and lengths in the message)."""
    lengths = {k: int(np.asarray(v).shape[0]) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ValueError(f"length mismatch: {desc} elements.")


def check_both_classes(y: np.ndarray, name: str = "y_true") -> None:
    """Raise ``ValueError`` unless ``y`` holds at least one 0 and one 1."""
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        only = 1 if n_pos else 0
        raise ValueError(f"{name} has one class only (all {y.size} labels are {only}); need both 0 and 1.")


def check_not_constant(s: np.ndarray, name: str = "y_score") -> None:
    """Raise ``ValueError`` when every score is the same (no variance to estimate)."""
    if s.size > 0 and np.all(s == s[0]):
        raise ValueError(
            f"{name} is constant (all {s.size} values are {s[0]!r}); this statistic needs variance."
        )


def labels_and_scores(
    y_true: Any,
    y_score: Any,
    *,
    score_name: str = "y_score",
    probabilities: bool = False,
    need_both_classes: bool = True,
    need_variance: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a labels/scores pair in one call.

    Args:
        y_true: binary labels.
        y_score: scores (or probabilities when ``probabilities``).
        score_name: argument name of the scores in error messages.
        probabilities: require values in [0, 1].
        need_both_classes: require at least one positive and one negative.
        need_variance: reject constant scores.

    Returns:
        ``(labels int64, scores float64)``.
    """
    y = as_labels(y_true)
    s = as_probabilities(y_score, score_name) if probabilities else as_scores(y_score, score_name)
    check_same_length(y_true=y, **{score_name: s})
    if need_both_classes:
        check_both_classes(y)
    if need_variance:
        check_not_constant(s, score_name)
    return y, s


def check_level(conf_level: float) -> float:
    """Return ``conf_level`` as float after checking it lies strictly between 0 and 1."""
    level = float(conf_level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"conf_level must be in (0, 1); got {conf_level!r}.")
    return level
