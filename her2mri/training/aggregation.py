"""Slice -> patient aggregation of predicted probabilities.

All slice predictions of a stage are collected first (from every DDP rank), then de-duplicated on
``(pid, slice_idx)`` (a ``DistributedSampler`` pads the last ranks with repeated samples), sorted by pid and
slice index, and only then aggregated. The result therefore does not depend on row order, batch size or the
number of processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from her2mri.options import check_choice

AGGREGATIONS: tuple[str, ...] = ("median", "mean", "max")


@dataclass(frozen=True)
class SlicePredictions:
    """Per-slice predictions, sorted by ``(pid, slice_idx)`` with no duplicate pair.

    Attributes:
        pids: patient id of each slice.
        slice_idx: slice index within the patient (int64).
        labels: true label of each slice (int64).
        probs: predicted probability of the positive class (float64).
    """

    pids: tuple[str, ...]
    slice_idx: np.ndarray
    labels: np.ndarray
    probs: np.ndarray

    def __len__(self) -> int:
        return len(self.pids)


@dataclass(frozen=True)
class PatientPredictions:
    """Per-patient predictions, sorted by pid.

    Attributes:
        pids: patient ids.
        labels: patient label (int64).
        probs: aggregated probability of the positive class (float64).
        n_slices: number of slices aggregated per patient.
    """

    pids: tuple[str, ...]
    labels: np.ndarray
    probs: np.ndarray
    n_slices: np.ndarray

    def __len__(self) -> int:
        return len(self.pids)


def collect_slices(
    pids: Sequence[str],
    slice_idx: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
) -> SlicePredictions:
    """Sort slice predictions by ``(pid, slice_idx)`` and drop repeated ``(pid, slice_idx)`` pairs.

    Repeats come from the padding of ``DistributedSampler``; the first copy after sorting (by pid, slice
    index, then probability, so the choice is deterministic) is kept.

    Args:
        pids: patient id per slice.
        slice_idx: slice index per slice.
        labels: label per slice (0/1).
        probs: positive-class probability per slice.

    Returns:
        The sorted, de-duplicated :class:`SlicePredictions`.

    Raises:
        ValueError: the four sequences differ in length.
    """
    pid_arr = np.asarray([str(p) for p in pids], dtype=object)
    sidx = np.asarray(slice_idx, dtype=np.int64).reshape(-1)
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    prob = np.asarray(probs, dtype=np.float64).reshape(-1)
    lengths = {len(pid_arr), len(sidx), len(lab), len(prob)}
    if len(lengths) != 1:
        raise ValueError(
            f"pids, slice_idx, labels and probs must have one length; got {len(pid_arr)}, {len(sidx)}, "
            f"{len(lab)} and {len(prob)}."
        )
    if len(pid_arr) == 0:
        empty_i = np.zeros(0, dtype=np.int64)
        return SlicePredictions((), empty_i, empty_i.copy(), np.zeros(0, dtype=np.float64))
    # np.lexsort: last key is the primary key
    pid_str = pid_arr.astype(str)
    order = np.lexsort((prob, sidx, pid_str))
    pid_s, sidx_s, lab_s, prob_s = pid_str[order], sidx[order], lab[order], prob[order]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = (pid_s[1:] != pid_s[:-1]) | (sidx_s[1:] != sidx_s[:-1])
    return SlicePredictions(
        pids=tuple(str(p) for p in pid_s[keep]),
        slice_idx=sidx_s[keep],
        labels=lab_s[keep],
        probs=prob_s[keep],
    )


def aggregate_patients(slices: SlicePredictions, method: str = "median") -> PatientPredictions:
    """Aggregate slice probabilities to one score per patient.

    Args:
        slices: output of :func:`collect_slices` (sorted, de-duplicated).
        method: ``median`` (default; the paper's best), ``mean`` or ``max``.

    Returns:
        :class:`PatientPredictions` sorted by pid.

    Raises:
        ValueError: unknown ``method``, or one patient's slices carry different labels.

    Example:
        >>> s = collect_slices(["b", "a", "a"], [0, 1, 0], [1, 0, 0], [0.9, 0.2, 0.4])
        >>> p = aggregate_patients(s, "mean")
        >>> p.pids, p.probs.round(2).tolist(), p.n_slices.tolist()
        (('a', 'b'), [0.3, 0.9], [2, 1])
    """
    check_choice("aggregation method", method, AGGREGATIONS)
    reduce = {"median": np.median, "mean": np.mean, "max": np.max}[method]
    pid_arr = np.asarray(slices.pids, dtype=str)
    if len(pid_arr) == 0:
        z = np.zeros(0, dtype=np.int64)
        return PatientPredictions((), z, np.zeros(0, dtype=np.float64), z.copy())
    # slices are sorted by pid: each patient is one contiguous run
    starts = np.flatnonzero(np.r_[True, pid_arr[1:] != pid_arr[:-1]])
    ends = np.r_[starts[1:], len(pid_arr)]
    pids, labels, probs, counts = [], [], [], []
    for s, e in zip(starts, ends, strict=True):
        lab = slices.labels[s:e]
        if np.any(lab != lab[0]):
            raise ValueError(
                f"patient {str(pid_arr[s])!r} has slices with different labels {sorted(set(lab.tolist()))}."
            )
        pids.append(str(pid_arr[s]))
        labels.append(int(lab[0]))
        probs.append(float(reduce(slices.probs[s:e])))
        counts.append(int(e - s))
    return PatientPredictions(
        pids=tuple(pids),
        labels=np.asarray(labels, dtype=np.int64),
        probs=np.asarray(probs, dtype=np.float64),
        n_slices=np.asarray(counts, dtype=np.int64),
    )
