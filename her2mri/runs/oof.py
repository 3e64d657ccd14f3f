"""Pooled out-of-fold (OOF) AUC of a k-fold cross-validation (``sweep=folds``), with a DeLong or bootstrap CI.

In a ``sweep=folds`` run every patient is in the test split of exactly one fold, so the test predictions of
the folds (``predictions/test_patients.csv`` of each fold's run) together hold one out-of-fold prediction per
patient. Papers report the AUC of these pooled predictions with its CI; :mod:`her2mri.runs.summary`
adds it beside the mean ± sd over folds. Pooling is done per seed (a folds x seeds sweep gives one pooled AUC
per seed). The pooled AUC mixes scores of k different models; a fold whose model is shifted (e.g. all its
scores higher) lowers it compared with the mean of per-fold AUCs: report both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from her2mri.options import check_choice

__all__ = ["OOF_CI_METHODS", "PooledOOF", "pooled_oof_auc"]

OOF_CI_METHODS: tuple[str, ...] = ("delong", "bootstrap")
PREDICTIONS = "predictions/{stage}_patients.csv"


@dataclass
class PooledOOF:
    """Pooled out-of-fold AUC of one seed of one group.

    Attributes:
        seed: the seed of the runs pooled (``None`` when unknown).
        folds: the folds pooled.
        n: patients pooled; ``n_pos`` the positives among them.
        auroc: AUC of the pooled predictions (``nan`` when undefined).
        ci_low: lower CI bound; ``ci_high`` the upper one.
        method: ``delong`` or ``bootstrap``.
        conf_level: confidence level.
        notes: why something is missing (absent files, duplicate pids, ...).
    """

    seed: int | None
    folds: list[int]
    n: int = 0
    n_pos: int = 0
    auroc: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    method: str = "delong"
    conf_level: float = 0.95
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)


def pooled_oof_auc(
    run_dirs: Sequence[Path],
    folds: Sequence[int],
    seed: int | None = None,
    *,
    stage: str = "test",
    method: str = "delong",
    conf_level: float = 0.95,
    n_boot: int = 2000,
    boot_seed: int = 0,
) -> PooledOOF:
    """Pool the ``stage`` predictions of the fold runs of one seed and compute the AUC with its CI.

    Args:
        run_dirs: the fold runs (one per fold), each with ``predictions/{stage}_patients.csv``.
        folds: the fold index of each run (same order).
        seed: the seed of these runs (recorded).
        stage: the held-out stage of a fold (``test``).
        method: ``delong`` (default) or ``bootstrap`` (stratified percentile, ``n_boot`` replicates).
        conf_level: confidence level.
        n_boot: bootstrap replicates.
        boot_seed: bootstrap seed.

    Returns:
        A :class:`PooledOOF`; ``auroc`` is ``nan`` (with a note) when a file is missing, a patient appears in
        two folds, a fold index repeats, or the pooled labels hold one class.

    Raises:
        ValueError: unknown ``method`` or ``run_dirs`` and ``folds`` of different lengths.
    """
    import pandas as pd

    from her2mri import stats

    check_choice("method", method, OOF_CI_METHODS)
    if len(run_dirs) != len(folds):
        raise ValueError(f"run_dirs ({len(run_dirs)}) and folds ({len(folds)}) differ in length.")
    out = PooledOOF(seed=seed, folds=sorted(int(f) for f in folds), method=method, conf_level=conf_level)
    if len(set(folds)) != len(folds):
        out.notes.append(f"fold index repeated among the runs ({sorted(folds)}): not pooled")
        return out
    pids: list[str] = []
    labels: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    for run_dir in run_dirs:
        path = Path(run_dir) / PREDICTIONS.format(stage=stage)
        if not path.is_file():
            out.notes.append(f"{path}: missing, not pooled")
            return out
        df = pd.read_csv(path, dtype={"pid": str})
        missing = [c for c in ("pid", "label", "prob") if c not in df.columns]
        if missing:
            out.notes.append(f"{path}: missing column(s) {missing}, not pooled")
            return out
        df = df[pd.to_numeric(df["label"], errors="coerce").isin([0, 1])]  # unknown labels (-1) left out
        pids.extend(df["pid"].astype(str).tolist())
        labels.append(df["label"].to_numpy(dtype=np.int64))
        probs.append(df["prob"].to_numpy(dtype=np.float64))
    if len(set(pids)) != len(pids):
        seen: set[str] = set()
        dup = sorted({p for p in pids if p in seen or seen.add(p)})  # type: ignore[func-returns-value]
        out.notes.append(
            f"{len(dup)} patient(s) appear in the {stage} split of two folds (e.g. {dup[:3]}): the runs are "
            "not the folds of one split file, not pooled"
        )
        return out
    y = np.concatenate(labels)
    p = np.concatenate(probs)
    out.n, out.n_pos = int(y.size), int(y.sum())
    try:
        if method == "delong":
            r = stats.auc_ci_delong(y, p, conf_level)
        else:
            r = stats.auc_ci_bootstrap(y, p, n_boot, conf_level, boot_seed)
    except ValueError as exc:
        out.notes.append(f"pooled AUC undefined: {exc}")
        return out
    out.auroc, out.ci_low, out.ci_high = r.auc, r.ci_lower, r.ci_upper
    if not all(math.isfinite(v) for v in (out.auroc, out.ci_low, out.ci_high)):
        out.notes.append("pooled AUC CI not finite")
    return out
