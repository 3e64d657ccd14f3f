"""Evaluation of checkpoints: ``evaluate(cfg)`` (one checkpoint) and ``evaluate_ensemble(cfg)`` (several).

The bodies of ``her2mri-eval`` and ``her2mri-eval ensemble=true``. Each checkpoint is loaded and scored by
:mod:`her2mri.runs.scoring` (the checkpoint's own preprocessing); ``evaluate`` then writes the predictions,
metrics and statistics with CIs of the split and, when asked, fits a recalibrator / conformal sets
(:mod:`her2mri.runs.calibration`).

Ensembles: each member is scored as one checkpoint is (its own preprocessing, read from the checkpoint, and
its own slice -> patient aggregation); the ensemble's patient probability is the **mean of the members'
patient probabilities**. Averaging at patient level lets members differ in preprocessing, number of slices or
views. When every member scored the same slices (same ``(pid, slice_idx)`` pairs), the slice probabilities
are averaged too and slice-level metrics are reported. Outputs (run directory):
``predictions/<split>_patients.csv`` / ``_slices.csv`` of the ensemble, ``members/<i>/predictions/`` of each
member, and ``metrics.json`` with the ensemble metrics under the usual keys (``<split>/auroc_patient``...),
each member's under ``<split>/member<i>/...``, per-site metrics when the cohort has sites, ``"ckpt_paths"``
and ``"ensemble": true``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from her2mri.data.build import sites_of
from her2mri.runs.outputs import write_metrics_json, write_predictions
from her2mri.runs.scoring import check_split, load_for_eval, score_split
from her2mri.runs.sites import site_metrics
from her2mri.runs.train import (
    build_trainer,
    clinical_stats,
    collect_stage,
    format_summary,
    instantiate_group,
    plain_cfg,
    require_output_dir,
    setup_runtime,
    task_wrapper,
)
from her2mri.training.aggregation import PatientPredictions, SlicePredictions
from her2mri.training.metrics import binary_metrics, prefixed

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- evaluate
@task_wrapper
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score a checkpoint on a cohort split; preprocessing comes from the checkpoint unless overridden.

    Args:
        cfg: composed ``eval`` config (``ckpt_path`` required; ``split``: ``val``, ``test`` or ``all``).
            ``ensemble=true`` with ``ckpt_paths`` is :func:`evaluate_ensemble`.

    Returns:
        The metrics dict also written to ``metrics.json`` (with per-site metrics when the cohort has sites).
    """
    t0 = time.perf_counter()
    out_dir = require_output_dir(cfg)
    if cfg.get("ckpt_paths"):
        raise ValueError(
            f"ckpt_paths={list(cfg.ckpt_paths)!r} is set but ensemble=false: add ensemble=true to score "
            "their ensemble, or use `-m ckpt_path=a,b,c` to score each checkpoint"
        )
    split = check_split(str(cfg.get("split", "test")))
    from her2mri.runs.calibration import calibrate_after_eval, check_calibration_config

    check_calibration_config(cfg, split)
    setup_runtime(cfg)
    ckpt_path = str(cfg.ckpt_path)
    setup = load_for_eval(cfg, ckpt_path)
    loggers = instantiate_group(cfg.get("logger"))
    trainer = build_trainer(cfg.trainer, logger=loggers or False, callbacks=[])
    score_split(trainer, setup, split)
    rank0 = bool(getattr(trainer, "is_global_zero", True))
    metrics = collect_stage(setup.module, split, out_dir, sites_of(setup.datamodule), write=rank0)
    metrics.update(clinical_stats(setup.module, split, cfg))
    metrics.update(
        calibrate_after_eval(cfg, trainer, setup, split, out_dir, sites_of(setup.datamodule), write=rank0)
    )
    wall = round(time.perf_counter() - t0, 2)
    if rank0:
        write_metrics_json(
            out_dir / "metrics.json",
            metrics,
            plain_cfg(cfg),
            status="ok",
            ckpt_path=ckpt_path,
            wall_time_s=wall,
            threshold={"value": setup.threshold, "source": setup.threshold_source},
            locked_threshold=setup.module.hparams.get("locked_threshold"),
        )
        title = f"her2mri-eval: {setup.model_name} on {split} ({wall:.0f} s)"
        print(format_summary(title, metrics, (split,), out_dir), flush=True)  # noqa: T201
    return metrics


# ---------------------------------------------------------------------- ensemble
def mean_patient_probs(members: Sequence[PatientPredictions]) -> PatientPredictions:
    """Mean patient probability over members that scored the same patients.

    Args:
        members: one :class:`PatientPredictions` per model (sorted by pid, as the module makes them).

    Returns:
        The ensemble's predictions; ``n_slices`` is that of the first member.

    Raises:
        ValueError: no member, different patients, or different labels for one patient.

    Example:
        >>> a = PatientPredictions(("p1", "p2"), np.array([0, 1]), np.array([0.2, 0.6]), np.array([4, 4]))
        >>> b = PatientPredictions(("p1", "p2"), np.array([0, 1]), np.array([0.4, 0.8]), np.array([4, 4]))
        >>> mean_patient_probs([a, b]).probs.round(2).tolist()
        [0.3, 0.7]
    """
    if not members:
        raise ValueError("members=[]: an ensemble needs at least one member")
    first = members[0]
    for i, m in enumerate(members[1:], start=1):
        if m.pids != first.pids:
            only0 = sorted(set(first.pids) - set(m.pids))[:5]
            only_i = sorted(set(m.pids) - set(first.pids))[:5]
            raise ValueError(
                f"members=[...]: member {i} scored other patients than member 0 (only in 0: {only0}, only in "
                f"{i}: {only_i}); score every checkpoint on the same data and split"
            )
        if not np.array_equal(m.labels, first.labels):
            raise ValueError(f"members=[...]: member {i} has other patient labels than member 0")
    probs = np.mean(np.stack([m.probs for m in members]), axis=0)
    return PatientPredictions(first.pids, first.labels.copy(), probs, first.n_slices.copy())


def mean_slice_probs(members: Sequence[SlicePredictions]) -> SlicePredictions | None:
    """Mean slice probability when every member scored the same ``(pid, slice_idx)`` pairs, else None."""
    if not members:
        return None
    first = members[0]
    for m in members[1:]:
        if m.pids != first.pids or not np.array_equal(m.slice_idx, first.slice_idx):
            return None
    probs = np.mean(np.stack([m.probs for m in members]), axis=0)
    return SlicePredictions(first.pids, first.slice_idx.copy(), first.labels.copy(), probs)


def _empty_slices() -> SlicePredictions:
    z = np.zeros(0, dtype=np.int64)
    return SlicePredictions((), z, z.copy(), np.zeros(0, dtype=np.float64))


def ensemble_metrics(
    patients: PatientPredictions, slices: SlicePredictions | None, stage: str, threshold: float
) -> dict[str, float]:
    """Patient (and slice, when available) metrics of the ensemble, keyed like a single model's."""
    p_ok = patients.labels >= 0
    out = prefixed(binary_metrics(patients.probs[p_ok], patients.labels[p_ok], threshold), stage, "patient")
    out[f"{stage}/n_patients"] = float(len(patients))
    if slices is not None and len(slices):
        s_ok = slices.labels >= 0
        out.update(
            prefixed(binary_metrics(slices.probs[s_ok], slices.labels[s_ok], threshold), stage, "slice")
        )
        out[f"{stage}/n_slices"] = float(len(slices))
    return out


def _common_threshold(thresholds: Sequence[float]) -> float:
    values = sorted({float(t) for t in thresholds})
    if len(values) == 1:
        return values[0]
    log.warning("ensemble members use different thresholds %s: the ensemble uses 0.5", values)
    return 0.5


def ensemble_ckpt_paths(cfg: DictConfig) -> list[str]:
    """The member checkpoints (``cfg.ckpt_paths``), checked.

    Raises:
        ValueError: fewer than two paths.
        FileNotFoundError: a path does not exist.
    """
    raw = cfg.get("ckpt_paths")
    paths = [str(p) for p in (raw or [])]
    if len(paths) < 2:
        raise ValueError(f"ckpt_paths={paths!r}: ensemble=true needs at least two checkpoints")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"ckpt_paths: checkpoint(s) not found: {missing}")
    return paths


@task_wrapper
def evaluate_ensemble(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.ckpt_paths`` on ``cfg.split`` and their mean-probability ensemble; write the outputs.

    Args:
        cfg: composed ``eval`` config with ``ensemble: true`` and ``ckpt_paths: [a, b, ...]``.

    Returns:
        The metrics dict also written to ``metrics.json``.
    """
    from hydra.utils import instantiate

    t0 = time.perf_counter()
    out_dir = require_output_dir(cfg)
    if cfg.get("recalibrate") is not None or cfg.get("conformal_alpha") is not None:
        raise ValueError(
            "recalibrate= / conformal_alpha= calibrate one checkpoint's probabilities: run her2mri-eval "
            "without ensemble=true for each checkpoint (an ensemble mean would need its own calibration)."
        )
    paths = ensemble_ckpt_paths(cfg)
    split = check_split(str(cfg.get("split", "test")))
    setup_runtime(cfg)
    loggers = instantiate_group(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[], _convert_="partial")
    rank0 = bool(getattr(trainer, "is_global_zero", True))

    metrics: dict[str, Any] = {}
    patients_m: list[PatientPredictions] = []
    slices_m: list[SlicePredictions] = []
    thresholds: list[float] = []
    sites = None
    for i, ckpt in enumerate(paths):
        setup = load_for_eval(cfg, ckpt)
        slices, patients, member_metrics = score_split(trainer, setup, split)
        sites = sites_of(setup.datamodule) if sites is None else sites
        if rank0:
            write_predictions(out_dir / "members" / str(i), split, slices, patients, sites)
        for key, value in member_metrics.items():
            stage, name = key.split("/", 1)
            metrics[f"{stage}/member{i}/{name}"] = value
        patients_m.append(patients)
        slices_m.append(slices)
        thresholds.append(float(setup.module.hparams.get("threshold", 0.5)))
        log.info(
            "member %d (%s): %s/auroc_patient=%s",
            i,
            setup.model_name,
            split,
            member_metrics.get(f"{split}/auroc_patient"),
        )

    patients = mean_patient_probs(patients_m)
    slices = mean_slice_probs(slices_m)
    threshold = _common_threshold(thresholds)
    metrics.update(ensemble_metrics(patients, slices, split, threshold))
    metrics.update(site_metrics(patients, sites, split, threshold))
    metrics[f"{split}/n_members"] = float(len(paths))
    wall = round(time.perf_counter() - t0, 2)
    if rank0:
        write_predictions(out_dir, split, slices if slices is not None else _empty_slices(), patients, sites)
        write_metrics_json(
            out_dir / "metrics.json",
            metrics,
            plain_cfg(cfg),
            status="ok",
            ensemble=True,
            ckpt_paths=paths,
            wall_time_s=wall,
        )
        title = f"her2mri-eval: ensemble of {len(paths)} checkpoints on {split} ({wall:.0f} s)"
        print(format_summary(title, metrics, (split,), out_dir), flush=True)  # noqa: T201
    if not math.isfinite(metrics.get(f"{split}/auroc_patient", float("nan"))):
        log.warning("the ensemble's patient AUC is undefined on %s (one class only?)", split)
    return metrics
