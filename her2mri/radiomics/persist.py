"""Saved radiomics models: fitted pipelines (joblib), Rad-score formulas (JSON) and a checked manifest.

An experiment writes, under its run directory:

- ``<name>/model.joblib`` for every signature, ``clinical`` and ``combined`` model: the fitted pipeline
  (selection steps + model; the grid search's best pipeline), written by her2mri with ``joblib.dump``;
- ``<name>/radscore.json`` when the pipeline is linear (z-score, selectors, logistic regression or
  Rad-score): the features, the scaler means and SDs, the coefficients and the intercept, so the score can
  be computed for a new case by hand or in another program (:func:`linear_formula`);
- ``models.json``, the manifest: the experiment config, each model's input columns, and the SHA-256 of
  every file written.

``joblib.load`` unpickles, which can execute code. :func:`load_models` therefore loads only files listed in
a her2mri manifest whose SHA-256 matches; this catches files that were swapped or edited, but the manifest
can be rewritten too, so **only load model folders you trust** (docs/radiomics.md). The JSON formulas need
no unpickling at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from her2mri.data.errors import DataError
from her2mri.io_utils import atomic_write, atomic_write_text

MANIFEST = "models.json"
FORMAT = "her2mri-radiomics-models"
FORMAT_VERSION = 1


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, write: Any) -> None:
    """``write(file_handle)`` into ``path`` atomically (:func:`her2mri.io_utils.atomic_write`)."""
    atomic_write(path, write)


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def fitted_pipeline(estimator: BaseEstimator) -> BaseEstimator:
    """The fitted pipeline of an estimator (``best_estimator_`` of a grid search), without its cache.

    When the model step itself is a fitted grid search (``cv.inner_selection: reuse``) it is replaced by its
    best estimator, so the saved pipeline is the same kind of object in both modes.

    The selection cache of an experiment lives in a temporary folder; the saved pipeline must not point to it.
    """
    est = getattr(estimator, "best_estimator_", estimator)
    if isinstance(est, Pipeline):
        est.memory = None
        last = est.steps[-1][1]
        if hasattr(last, "best_estimator_"):  # cv.inner_selection=reuse: the model step is a grid search
            est = Pipeline([*est.steps[:-1], (est.steps[-1][0], last.best_estimator_)])
    return est


def linear_formula(estimator: BaseEstimator) -> dict[str, Any] | None:
    """The Rad-score formula of a linear pipeline, or None when the pipeline is not linear.

    A pipeline is linear when every step before the model is a ``StandardScaler`` or a feature selector and
    the model is a ``LogisticRegression`` or a :class:`~her2mri.radiomics.models.RadScoreClassifier`.

    Returns:
        ``{"features", "mean", "sd", "coefficients", "intercept", "probability", "formula"}`` with
        ``score = intercept + sum_j coefficients[j] * (x_j - mean[j]) / sd[j]`` over the raw input features;
        ``probability`` maps the score to P(y=1) = sigmoid(probability.intercept + probability.slope *
        score).
    """
    from her2mri.radiomics.models import RadScoreClassifier

    est = fitted_pipeline(estimator)
    if not isinstance(est, Pipeline) or not hasattr(est, "feature_names_in_"):
        return None
    names = [str(n) for n in est.feature_names_in_]
    mean = np.zeros(len(names))
    sd = np.ones(len(names))
    for _, step in est.steps[:-1]:
        if isinstance(step, StandardScaler):
            m = step.mean_ if step.mean_ is not None else np.zeros(len(names))
            s = step.scale_ if step.scale_ is not None else np.ones(len(names))
            # z2 = (z1 - m) / s with z1 = (x - mean) / sd  ->  x - (mean + m sd) over sd s
            mean, sd = mean + m * sd, sd * s
        elif isinstance(step, SelectorMixin):
            keep = step.get_support()
            names = [n for n, k in zip(names, keep, strict=True) if k]
            mean, sd = mean[keep], sd[keep]
        else:
            return None
    model = est.steps[-1][1]
    if isinstance(model, LogisticRegression):
        coef = np.ravel(model.coef_)
        b0 = float(np.ravel(model.intercept_)[0])
        prob = {"intercept": 0.0, "slope": 1.0}
    elif isinstance(model, RadScoreClassifier):
        coef = np.ravel(model.coef_)
        b0 = float(model.intercept_)
        cal = model.calibrator_
        prob = {"intercept": float(np.ravel(cal.intercept_)[0]), "slope": float(np.ravel(cal.coef_)[0])}
    else:
        return None
    terms = " ".join(
        f"{'+' if c >= 0 else '-'} {abs(c):.6g} * ({n} - {m:.6g}) / {s:.6g}"
        for n, c, m, s in zip(names, coef, mean, sd, strict=True)
    )
    return {
        "features": names,
        "mean": [float(v) for v in mean],
        "sd": [float(v) for v in sd],
        "coefficients": [float(v) for v in coef],
        "intercept": b0,
        "probability": prob,
        "formula": f"Rad-score = {b0:.6g} {terms}".strip(),
        "probability_formula": "P = 1 / (1 + exp(-(probability.intercept + probability.slope * Rad-score)))",
    }


def formula_score(formula: Mapping[str, Any], X: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rad-score and probability of each row of ``X`` (a DataFrame with the formula's feature columns).

    Args:
        formula: a :func:`linear_formula` dict (or the parsed ``radscore.json``).
        X: the raw input features (extra columns are ignored).
    """
    import pandas as pd

    missing = [f for f in formula["features"] if f not in X.columns]
    if missing:
        raise ValueError(f"X lacks the formula's features {missing[:5]} ({len(missing)} missing)")
    Z = (X[formula["features"]].to_numpy(float) - np.asarray(formula["mean"])) / np.asarray(formula["sd"])
    score = Z @ np.asarray(formula["coefficients"], float) + float(formula["intercept"])
    p = formula["probability"]
    eta = float(p["intercept"]) + float(p["slope"]) * score
    return score, np.asarray(pd.Series(1.0 / (1.0 + np.exp(-eta))), float)


def save_models(
    models: Mapping[str, Mapping[str, Any]],
    out_dir: str | Path,
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write every model (joblib), the Rad-score JSON of the linear ones, and the manifest ``models.json``.

    Args:
        models: ``{name: {"estimator": fitted estimator, "kind": "signature"|"clinical"|"combined", ...}}``;
            other keys (e.g. ``signatures`` of a combined model) go to the manifest as they are.
        out_dir: the experiment's run directory; model files go to ``out_dir/<name>/``.
        config: the experiment config (needed to re-extract the same features on a new cohort).
        extra: more manifest entries (e.g. the clinical encoding).

    Returns:
        The manifest path.
    """
    import joblib

    from her2mri import __version__

    out = Path(out_dir)
    files: dict[str, str] = {}
    entries: dict[str, Any] = {}
    for name, info in models.items():
        est = fitted_pipeline(info["estimator"])
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        path = d / "model.joblib"
        _atomic_write_bytes(path, lambda p, e=est: joblib.dump(e, p))
        files[f"{name}/model.joblib"] = sha256_file(path)
        entry = {k: v for k, v in info.items() if k != "estimator"}
        entry["model"] = f"{name}/model.joblib"
        entry["features_in"] = [str(c) for c in getattr(est, "feature_names_in_", [])]
        formula = linear_formula(est)
        if formula is not None:
            fpath = d / "radscore.json"
            _atomic_write_text(fpath, json.dumps({"model": name, **formula}, indent=2))
            files[f"{name}/radscore.json"] = sha256_file(fpath)
            entry["formula"] = f"{name}/radscore.json"
        entries[name] = entry
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "her2mri_version": __version__,
        "models": entries,
        "config": dict(config),
        **dict(extra or {}),
        "sha256": files,
    }
    mpath = out / MANIFEST
    _atomic_write_text(mpath, json.dumps(manifest, indent=2, default=str))
    return mpath


def read_models_json(model_dir: str | Path) -> dict[str, Any]:
    """The manifest of a model folder, after checking that her2mri wrote it and every file is unchanged.

    Raises:
        DataError: no ``models.json``, not a her2mri manifest, a listed file missing, or a SHA-256 mismatch.
    """
    d = Path(model_dir)
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise DataError(f"{mpath}: no model manifest (model_dir must be a her2mri-radiomics run directory)")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{mpath}: not valid JSON ({exc})") from exc
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("sha256"), dict):
        raise DataError(
            f"{mpath}: not a her2mri radiomics model manifest (format {manifest.get('format')!r})"
        )
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(
            f"{mpath}: format_version {manifest.get('format_version')} is newer than this her2mri "
            f"({FORMAT_VERSION}); update her2mri"
        )
    for rel, digest in manifest["sha256"].items():
        f = (d / rel).resolve()
        if d.resolve() not in f.parents:
            raise DataError(f"{mpath}: listed file {rel!r} lies outside the model folder")
        if not f.is_file():
            raise DataError(f"{f}: listed in {MANIFEST} but missing")
        if sha256_file(f) != digest:
            raise DataError(
                f"{f}: SHA-256 differs from {MANIFEST}; the file was changed after her2mri wrote it"
            )
    return manifest


def load_models(model_dir: str | Path, names: Sequence[str] | None = None) -> tuple[dict[str, Any], dict]:
    """Load the fitted pipelines of a checked model folder (see :func:`read_models_json`).

    Only load model folders you trust: ``joblib.load`` unpickles.

    Args:
        model_dir: the run directory of a her2mri-radiomics experiment.
        names: models to load; None = all.

    Returns:
        ``({name: estimator}, manifest)``.
    """
    import joblib

    d = Path(model_dir)
    manifest = read_models_json(d)
    out: dict[str, Any] = {}
    for name, entry in manifest["models"].items():
        if names is not None and name not in names:
            continue
        rel = entry["model"]
        if rel not in manifest["sha256"]:
            raise DataError(f"{d / rel}: not listed with a SHA-256 in {MANIFEST}; refusing to unpickle it")
        out[name] = joblib.load(d / rel)
    return out, manifest
