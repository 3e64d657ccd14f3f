"""Whole-pipeline evaluation: selection + model refitted inside every fold; run outputs for the report.

For one signature (feature columns + selection steps + model):

- **val** = out-of-fold predictions on the training cohort: an outer stratified K-fold, where each training
  fold refits the whole pipeline (selection, grid search with an inner CV, model). These are the honest
  cross-validated predictions (the published code selected features on all training data first).
- **test** = the pipeline refitted on the whole training cohort (grid search with the inner CV), applied
  once to the held-out test cohort.

Run outputs follow docs/ARCHITECTURE.md section 6: ``metrics.json`` and
``predictions/{val,test}_patients.csv`` with ``pid,label,prob,n_slices`` (``n_slices`` = 1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import accuracy_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from her2mri.radiomics.selection import warnings_off


def build_pipeline(
    selection: Sequence[tuple[str, BaseEstimator]],
    model: BaseEstimator,
    pre: Sequence[tuple[str, BaseEstimator]] = (),
    memory: Any = None,
) -> Pipeline:
    """``Pipeline([*pre, *selection, ("model", model)])`` with pandas output kept between steps.

    Args:
        selection: selection steps (name, transformer).
        model: the final classifier.
        pre: steps before the selection (e.g. the deep-feature PCA).
        memory: a ``joblib.Memory`` (or folder) caching the fitted selection steps: a step fitted on the
            same rows with the same parameters is loaded instead of refitted, so every grid candidate of a
            fold (and every signature sharing the selection) reuses one fit. None: no cache.
    """
    steps = [*pre, *selection, ("model", model)]
    names = [n for n, _ in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"pipeline step names must be unique, got {names}")
    return Pipeline(steps, memory=memory).set_output(transform="pandas")


def _folds(y: np.ndarray, n_splits: int, seed: int) -> StratifiedKFold:
    n_min = int(min(y.sum(), len(y) - y.sum()))
    if n_min < 2:
        raise ValueError(f"the training cohort has {n_min} case(s) of one class: cross-validation needs >= 2")
    return StratifiedKFold(n_splits=max(2, min(n_splits, n_min)), shuffle=True, random_state=seed)


INNER_SELECTION = ("refit", "reuse")
"""How the inner grid search treats the selection (``cv.inner_selection``, see :func:`with_grid_search`)."""


def with_grid_search(
    pipeline: Pipeline,
    grid: Mapping[str, list[Any]] | None,
    y: np.ndarray,
    inner_folds: int,
    seed: int,
    inner_selection: str = "refit",
) -> BaseEstimator:
    """The pipeline, with a ``GridSearchCV`` (AUC, inner stratified CV) when the grid has >1 candidate.

    Args:
        pipeline: selection steps + ``("model", estimator)``.
        grid: hyper-parameter grid with pipeline-prefixed keys (``model__C``).
        y: training labels (cap the number of inner folds by the minority class).
        inner_folds: folds of the grid search.
        seed: the inner folds are seeded with ``seed + 1``.
        inner_selection: ``refit`` (default): the whole pipeline is grid-searched, so the selection is
            refitted on every inner training fold (with the selection cache, once per inner fold for all
            candidates).
            ``reuse``: the selection is fitted once per (outer) training fold and the grid search tunes the
            model alone on the selected features: ``Pipeline([*selection, ("model", GridSearchCV(model))])``.
            The out-of-fold predictions stay honest (the selection never sees the held-out fold); the inner
            CV scores are optimistic for every candidate, since the features were chosen on the inner
            validation rows too. It saves all inner selection fits (URAN: 24 L1 fits -> 6). A grid over
            selection parameters (keys not starting with ``model__``) always uses ``refit``.

    Raises:
        ValueError: ``inner_selection`` is not one of :data:`INNER_SELECTION`.
    """
    if inner_selection not in INNER_SELECTION:
        raise ValueError(f"inner_selection={inner_selection!r}: expected one of {INNER_SELECTION}")
    n_candidates = int(np.prod([len(v) for v in (grid or {}).values()])) if grid else 1
    if n_candidates <= 1:
        fixed = {k: v[0] for k, v in (grid or {}).items()}
        return clone(pipeline).set_params(**fixed) if fixed else clone(pipeline)
    folds = _folds(y, inner_folds, seed + 1)
    model_only = all(k.startswith("model__") for k in grid)
    if inner_selection == "reuse" and model_only and len(pipeline.steps) > 1:
        search = GridSearchCV(
            clone(pipeline.steps[-1][1]),
            {k[len("model__") :]: v for k, v in grid.items()},
            scoring="roc_auc",
            cv=folds,
            refit=True,
            n_jobs=1,
        )
        return build_pipeline(clone(pipeline)[:-1].steps, search, memory=pipeline.memory)
    return GridSearchCV(clone(pipeline), dict(grid), scoring="roc_auc", cv=folds, refit=True, n_jobs=1)


def oof_probabilities(
    estimator: BaseEstimator,
    X: pd.DataFrame,
    y: np.ndarray,
    n_splits: int,
    seed: int,
    progress: Any = None,
) -> np.ndarray:
    """Out-of-fold P(y=1) of the whole estimator (selection refitted in every fold).

    The same computation as ``sklearn.model_selection.cross_val_predict(method="predict_proba")`` (a clone
    fitted per training fold, predictions placed at the held-out rows), written as a loop so that a tqdm
    bar can advance per fold.

    Args:
        estimator: the (grid-searched) pipeline; cloned per fold.
        X: training rows.
        y: 0/1 labels.
        n_splits: outer folds (capped by the minority class count).
        seed: seed of the stratified folds.
        progress: a tqdm bar updated once per fold, or None.
    """
    y = np.asarray(y).astype(int)
    X = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
    out = np.full(len(y), np.nan)
    for tr, va in _folds(y, n_splits, seed).split(np.zeros(len(y)), y):
        est = clone(estimator)
        with warnings_off():
            est.fit(X.iloc[tr], y[tr])
            out[va] = est.predict_proba(X.iloc[va])[:, 1]
        if progress is not None:
            progress.update(1)
    return out


def binary_metrics(y: np.ndarray, prob: np.ndarray, stage: str) -> dict[str, float]:
    """``{stage}/auroc_patient``, accuracy, sensitivity, specificity at 0.5, Brier score, n."""
    y = np.asarray(y).astype(int)
    prob = np.asarray(prob, dtype=float)
    pred = (prob >= 0.5).astype(int)
    out = {f"{stage}/n_patients": float(len(y))}
    if len(np.unique(y)) == 2:
        out[f"{stage}/auroc_patient"] = float(roc_auc_score(y, prob))
        out[f"{stage}/sensitivity_patient"] = float(pred[y == 1].mean())
        out[f"{stage}/specificity_patient"] = float(1 - pred[y == 0].mean())
    out[f"{stage}/accuracy_patient"] = float(accuracy_score(y, pred))
    out[f"{stage}/brier_patient"] = float(brier_score_loss(y, prob))
    return out


@dataclass
class SignatureResult:
    """Predictions and fitted model of one signature."""

    name: str
    val: pd.DataFrame  # pid, label, prob (out-of-fold on train)
    test: pd.DataFrame | None  # pid, label, prob (held-out test)
    metrics: dict[str, float]
    estimator: BaseEstimator
    selected_features: list[str] = field(default_factory=list)


def selected_feature_names(estimator: BaseEstimator) -> list[str]:
    """Names of the features that reach the model in a fitted (grid-searched) pipeline."""
    est = getattr(estimator, "best_estimator_", estimator)
    if not isinstance(est, Pipeline) or len(est.steps) < 2:
        return []
    try:
        return [str(n) for n in est[:-1].get_feature_names_out()]
    except (AttributeError, ValueError):
        return []


def evaluate_signature(
    name: str,
    pipeline: Pipeline,
    grid: Mapping[str, list[Any]] | None,
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_test: pd.DataFrame | None = None,
    y_test: np.ndarray | None = None,
    *,
    outer_folds: int = 5,
    inner_folds: int = 3,
    seed: int = 0,
    progress: bool = False,
    inner_selection: str = "refit",
) -> SignatureResult:
    """Out-of-fold predictions on train and held-out predictions on test for one pipeline.

    Args:
        name: signature name (also the progress bar's label).
        pipeline: selection steps + model.
        grid: hyper-parameter grid (prefixed keys); searched by an inner CV when it has > 1 candidate.
        X_train: training rows.
        y_train: training labels.
        X_test: held-out rows, or None.
        y_test: held-out labels.
        outer_folds: folds of the out-of-fold predictions.
        inner_folds: folds of the grid search.
        seed: seed of the folds.
        progress: show a tqdm bar over the outer folds and the final fit.
        inner_selection: ``refit`` or ``reuse``, see :func:`with_grid_search`.
    """
    from tqdm.auto import tqdm

    y_train = np.asarray(y_train).astype(int)
    est = with_grid_search(pipeline, grid, y_train, inner_folds, seed, inner_selection)
    n_outer = _folds(y_train, outer_folds, seed).get_n_splits()
    bar = tqdm(total=n_outer + 1, desc=f"{name} (folds + final fit)", disable=not progress, leave=False)
    oof = oof_probabilities(est, X_train, y_train, outer_folds, seed, progress=bar)
    with warnings_off():
        est.fit(X_train, y_train)
    bar.update(1)
    bar.close()
    val = pd.DataFrame({"pid": X_train.index.astype(str), "label": y_train, "prob": oof})
    metrics = binary_metrics(y_train, oof, "val")
    test = None
    if X_test is not None and len(X_test):
        prob = est.predict_proba(X_test)[:, 1]
        yt = np.asarray(y_test).astype(int)
        test = pd.DataFrame({"pid": X_test.index.astype(str), "label": yt, "prob": prob})
        metrics.update(binary_metrics(yt, prob, "test"))
    return SignatureResult(name, val, test, metrics, est, selected_feature_names(est))


def write_run(result: SignatureResult, out_dir: str | Path, config: Mapping[str, Any]) -> Path:
    """Write ``metrics.json``, ``predictions/{val,test}_patients.csv``, ``selected_features.txt``."""
    out = Path(out_dir)
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    for stage, df in (("val", result.val), ("test", result.test)):
        if df is not None:
            df.assign(n_slices=1).to_csv(out / "predictions" / f"{stage}_patients.csv", index=False)
    (out / "selected_features.txt").write_text("\n".join(result.selected_features) + "\n")
    payload = {"metrics": result.metrics, "config": dict(config), "status": "ok", "signature": result.name}
    (out / "metrics.json").write_text(json.dumps(payload, indent=2, default=str))
    return out
