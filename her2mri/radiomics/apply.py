"""Apply the saved models of a radiomics experiment to a new cohort (``her2mri-radiomics mode=apply``).

The model folder is the run directory of an earlier ``her2mri-radiomics`` run (its ``models.json``, checked
by :func:`~her2mri.radiomics.persist.read_models_json`). The features of the new cases are extracted with the
*training* run's settings (pyradiomics parameters, regions, rings, crop, deep backbone), every saved model
scores every case, and the outputs have the same layout as a training run: ``<name>/predictions/
test_patients.csv`` (``pid,label,prob,n_slices``), ``<name>/metrics.json`` (``test/*`` metrics on the cases
with a known label), ``summary.csv`` and ``experiment.json``. So a model trained on one centre is validated on
another (seeds 002/003), and ``her2mri-report`` reads the result like any run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2mri.data.errors import DataError
from her2mri.io_utils import atomic_write_text
from her2mri.radiomics.cases import RadiomicsCase, cases_frame
from her2mri.radiomics.evaluate import binary_metrics
from her2mri.radiomics.extract import RETEST_PREFIX

# extraction settings of the *new* run that do not change the features
_RUN_KEYS = ("n_jobs", "cache_dir", "progress", "backend", "scheduler")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _columns(table: pd.DataFrame, cols: Sequence[str], name: str, model_dir: Path) -> pd.DataFrame:
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise DataError(
            f"{model_dir / name / 'model.joblib'}: the new cohort lacks {len(missing)} input feature(s) of "
            f"model {name!r}, e.g. {missing[:3]} (same images/phases and regions as in training needed)"
        )
    return table[list(cols)]


def _write(out: Path, name: str, pids: Sequence[str], label: pd.Series, prob: np.ndarray, meta: dict) -> dict:
    run = out / name
    (run / "predictions").mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame({"pid": list(pids), "label": label.to_numpy(), "prob": prob, "n_slices": 1})
    atomic_write_text(run / "predictions" / "test_patients.csv", df.to_csv(index=False))
    known = label.notna().to_numpy()
    metrics = binary_metrics(label[known].astype(int).to_numpy(), prob[known], "test") if known.any() else {}
    metrics["test/n_scored"] = float(len(df))
    payload = {"metrics": metrics, "config": meta, "status": "ok", "signature": name}
    atomic_write_text(run / "metrics.json", json.dumps(payload, indent=2, default=str))
    return metrics


def apply_models(
    cases: Sequence[RadiomicsCase],
    cfg: Mapping[str, Any],
    model_dir: str | Path,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Score ``cases`` with every model saved in ``model_dir`` and write the outputs under ``out_dir``.

    Only load model folders you trust: the models are unpickled (after the manifest's SHA-256 check).

    Args:
        cases: the new cohort.
        cfg: the apply run's config; only ``extraction.n_jobs``, ``cache_dir``, ``progress``, ``backend``
            and ``scheduler`` are taken from it; every feature setting comes from the training run.
        model_dir: run directory of the training experiment.
        out_dir: output folder.

    Returns:
        ``{"summary": DataFrame, "probabilities": {name: Series by pid}, ...}``.
    """
    from her2mri.radiomics.clinical import encode_clinical
    from her2mri.radiomics.persist import load_models
    from her2mri.radiomics.pipelines import DEEP_BLOCK, build_feature_table, case_labels

    t0 = time.perf_counter()
    mdir = Path(model_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    estimators, manifest = load_models(mdir)
    train_cfg = dict(manifest["config"])
    ex = dict(train_cfg.get("extraction") or {})
    new_ex = dict(cfg.get("extraction") or {})
    ex.update({k: new_ex[k] for k in _RUN_KEYS if k in new_ex})
    fcfg = {**train_cfg, "extraction": ex}
    kind = str((train_cfg.get("label") or {}).get("kind", "record"))
    labels = case_labels(cases, kind)
    pids = [c.pid for c in cases]
    entries = manifest["models"]
    sigs = [n for n, e in entries.items() if e.get("kind") == "signature"]
    blocks = {b for n in sigs for b in entries[n].get("features", ["tumour"])}
    retest = any(c.startswith(RETEST_PREFIX) for n in sigs for c in entries[n]["features_in"])
    t_ex = time.perf_counter()
    table = build_feature_table(cases, fcfg, blocks, retest) if blocks else pd.DataFrame(index=pids)
    extraction_s = time.perf_counter() - t_ex
    meta = {"mode": "apply", "model_dir": str(mdir.resolve()), "experiment": train_cfg.get("name")}
    probs: dict[str, pd.Series] = {}
    rows = []
    for name in sigs:
        X = _columns(table, entries[name]["features_in"], name, mdir).loc[pids]
        probs[name] = pd.Series(estimators[name].predict_proba(X)[:, 1], index=pids)
    clin = [n for n, e in entries.items() if e.get("kind") in ("clinical", "combined")]
    if clin:
        variables = list(entries[clin[0]].get("variables") or [])
        frame = cases_frame(cases)
        missing = [v for v in variables if v not in frame.columns]
        if missing:
            raise DataError(f"the new cohort lacks the clinical column(s) {missing} used by {clin}")
        enc = encode_clinical(frame[variables]).reindex(
            columns=manifest.get("clinical_encoded_columns") or None, fill_value=0.0
        )
        for name in clin:
            Xc = enc.copy()
            for c in entries[name]["features_in"]:
                if c.startswith("sig_"):
                    if c[4:] not in probs:
                        raise DataError(
                            f"{mdir / 'models.json'}: {name} needs signature {c[4:]!r}, not saved"
                        )
                    Xc[c] = _logit(probs[c[4:]].reindex(Xc.index.astype(str)).to_numpy())
            X = _columns(Xc, entries[name]["features_in"], name, mdir)
            probs[name] = pd.Series(estimators[name].predict_proba(X)[:, 1], index=pids)
    for name, p in probs.items():
        lab = labels.reindex(pids).astype("float")
        m = _write(out, name, pids, lab, p.to_numpy(), {**meta, "model": name})
        rows.append({"signature": name, **m})
    summary = pd.DataFrame(rows)
    summary.to_csv(out / "summary.csv", index=False)
    info = {
        **meta,
        "n_cases": len(cases),
        "n_labelled": int(labels.notna().sum()),
        "n_features": int(table.shape[1]),
        "deep_features": DEEP_BLOCK in blocks,
        "extraction_s": extraction_s,
        "wall_s": time.perf_counter() - t0,
    }
    (out / "experiment.json").write_text(json.dumps(info, indent=2, default=str))
    return {"summary": summary, "probabilities": probs, **info}
