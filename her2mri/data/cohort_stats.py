"""Cohort-level intensity statistics (``preprocess.stats_scope: cohort``), from the training split only.

Per-patient statistics rescale every case on its own, which removes differences between patients that may
carry signal (and, with per-phase maps, shrinks the enhancement). The usual alternative for multi-site data is
one fixed linear map per phase, learnt from the training patients and applied unchanged to every other case
(validation, test, external cohorts, ``her2mri-eval``, prediction): :func:`fit_cohort_stats` computes it.

Rule: for each training case and phase, a seeded random sample of at most ``max_voxels`` voxels inside the
statistics mask (``none``: all voxels; ``foreground``: pre-contrast voxels above 10 % of its 99th percentile;
``tumour_bbox``: the tumour box) is pooled over the cases; the bounds are then the strategy's bounds of the
pooled sample (lower/upper percentile, or mean -+ 3 sd for ``zscore``). Joint strategies (``clip_global_*``,
``minmax_global``) pool the three phases into one sample and give the same bounds to every phase. Sampling
keeps the memory small (96 real volumes of 5 million voxels would not fit otherwise); the result does not
depend on the order of the cases or on anything outside the training split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from her2mri.data.errors import DataError
from her2mri.data.preprocess_config import PreprocessConfig
from her2mri.data.records import CaseRecord

__all__ = ["cohort_bounds", "fit_cohort_stats", "sample_case"]

DEFAULT_MAX_VOXELS: int = 50_000


def sample_case(
    phases: np.ndarray,
    cfg: PreprocessConfig,
    mask: np.ndarray | None = None,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    seed: int = 0,
) -> np.ndarray:
    """Seeded sample of the statistics voxels of one case, float32 ``(3, n)`` (phases on axis 0).

    Args:
        phases: ``(3, Z, Y, X)`` pre, early, late.
        cfg: gives ``stats_mask`` and ``normalization`` (the foreground threshold rule).
        mask: tumour mask (Z, Y, X) for ``stats_mask='tumour_bbox'``.
        max_voxels: at most this many voxels per phase.
        seed: seed of the sample.
    """
    from her2mri.data.normalize import foreground_mask

    phases = np.asarray(phases)
    if phases.ndim != 4 or phases.shape[0] != 3:
        raise DataError(f"expected a (3, Z, Y, X) DCE stack, got shape {phases.shape}")
    if cfg.stats_mask == "foreground":
        keep = np.flatnonzero(foreground_mask(phases[0]).ravel())
    elif cfg.stats_mask == "tumour_bbox" and mask is not None and np.asarray(mask).any():
        from her2mri.data.dictionary import tumour_box_mask

        box = tumour_box_mask(np.asarray(mask), None, None, phases.shape[1:], "case")
        keep = np.flatnonzero(box.ravel())
    else:
        keep = None
    n_all = int(np.prod(phases.shape[1:])) if keep is None else keep.size
    if n_all == 0:
        return np.empty((3, 0), dtype=np.float32)
    rng = np.random.default_rng(seed)
    pick = rng.choice(n_all, size=min(int(max_voxels), n_all), replace=False)
    idx = np.sort(pick if keep is None else keep[pick])
    flat = phases.reshape(3, -1)
    return np.stack([flat[c][idx] for c in range(3)]).astype(np.float32)


def cohort_bounds(samples: Sequence[np.ndarray], cfg: PreprocessConfig) -> tuple[tuple[float, float], ...]:
    """Per-phase ``(lo, hi)`` bounds of the pooled samples under ``cfg``'s normalisation.

    Args:
        samples: one ``(3, n_i)`` sample per training case (:func:`sample_case`).
        cfg: normalisation, lower/upper percentile.

    Returns:
        ``((lo, hi), (lo, hi), (lo, hi))``, the same three pairs for joint strategies.

    Raises:
        ValueError: no sample, or an intensity range of zero.
    """
    from her2mri.data.normalize import NormalizeDCE

    pooled = [s for s in samples if s.size]
    if not pooled:
        raise ValueError("stats_scope='cohort': the training split has no voxel to compute statistics from")
    allv = np.concatenate(pooled, axis=1)
    norm = NormalizeDCE(
        cfg.normalization, "volume", "none", cfg.lower_percentile, upper_percentile=cfg.upper_percentile
    )
    if norm.joint:
        pairs = [norm.bounds(allv.ravel())] * 3
    else:
        pairs = [norm.bounds(allv[c]) for c in range(3)]
    for c, (lo, hi) in enumerate(pairs):
        if not hi > lo:
            raise ValueError(
                f"stats_scope='cohort': phase {c} has no intensity range on the training split "
                f"(lo={lo}, hi={hi})"
            )
    return tuple((float(lo), float(hi)) for lo, hi in pairs)


def fit_cohort_stats(
    records: Sequence[CaseRecord],
    cfg: PreprocessConfig,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    progress: bool = False,
) -> tuple[tuple[float, float], ...]:
    """Cohort bounds from the volumes of ``records`` (the training split only).

    Args:
        records: the training cases (each with ``phase_paths``).
        cfg: the preprocessing configuration (``normalization``, percentiles, ``stats_mask``, ``n4``).
        max_voxels: voxels sampled per case and phase.
        progress: show a tqdm progress bar.

    Returns:
        Per-phase ``(lo, hi)``, to be stored as ``PreprocessConfig.cohort_stats``.

    Raises:
        ValueError: no record, or records without phase volumes (pre-fused RGB cohorts are already
            normalised).
    """
    from tqdm.auto import tqdm

    from her2mri.data.io import load_case_arrays

    if not records:
        raise ValueError("stats_scope='cohort' needs training patients, but the training split is empty")
    samples = []
    for rec in tqdm(records, desc="cohort statistics (train)", unit="case", disable=not progress):
        if not rec.phase_paths:
            raise ValueError(
                f"stats_scope='cohort': case {rec.pid} has no phase volumes (pre-fused RGB slices are "
                "already "
                "normalised); use stats_scope=volume"
            )
        phases, mask, _ = load_case_arrays(rec, dtype=None, contiguous=False)
        seed = int(hashlib.sha1(rec.pid.encode("utf-8")).hexdigest()[:8], 16)  # order-independent
        samples.append(sample_case(phases, cfg, mask, max_voxels, seed=seed))
    return cohort_bounds(samples, cfg)
