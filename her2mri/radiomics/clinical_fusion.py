"""Clinical model and combined model (clinical + signatures) of an experiment, with its nomogram.

On the training cohort only: univariable logistic regressions of every clinical variable, stepwise
multivariable selection (:func:`~her2mri.radiomics.clinical.stepwise_logistic`); then

- ``clinical``: logistic regression on the selected clinical variables;
- ``combined``: logistic regression on the selected clinical variables + the logit of each chosen
  signature's probability. Training rows use the signature's *out-of-fold* probabilities, so the combined
  model never sees a signature score fitted on the same patient; test rows use the held-out probabilities.
- ``combined/nomogram.png`` from the combined model's coefficients (:mod:`her2mri.stats.nomogram`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2mri.radiomics.clinical import (
    encode_clinical,
    multivariable_table,
    stepwise_logistic,
    univariable_table,
)
from her2mri.radiomics.evaluate import SignatureResult, build_pipeline, evaluate_signature, write_run
from her2mri.radiomics.models import make_model
from her2mri.radiomics.selection import build_selection_steps

LEAKY_COLUMNS = {"HER2", "HER2pos", "HR_HER2_STATUS", "TripleNeg", "HRposHER2neg", "label", "her2"}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _signature_scores(res: SignatureResult, pids: pd.Index, stage: str) -> pd.Series:
    df = res.val if stage == "val" else res.test
    if df is None:
        return pd.Series(np.nan, index=pids)
    return pd.Series(_logit(df["prob"].to_numpy()), index=df["pid"].astype(str)).reindex(pids)


def _nomogram(X: pd.DataFrame, y: np.ndarray, out: Path) -> str | None:
    try:
        from her2mri.stats.nomogram import axis_values, build_nomogram, plot_nomogram
    except ImportError:
        return "her2mri.stats.nomogram not available"
    try:
        tab = multivariable_table(X, y, list(X.columns))
        import statsmodels.api as sm

        res = sm.Logit(y.astype(float), sm.add_constant(X.astype(float), has_constant="add")).fit(disp=0)
        coefs = {r.variable: float(r.beta) for r in tab.itertuples()}
        values = {c: axis_values(X[c].to_numpy()) for c in X.columns}
        nom = build_nomogram(coefs, float(res.params["const"]), values)
        fig = plot_nomogram(nom, title="Combined model")
        fig.savefig(out / "nomogram.png", dpi=120)
        return None
    except Exception as exc:  # a nomogram is a figure: never fail the experiment for it
        warnings.warn(f"nomogram not drawn: {exc}", stacklevel=2)
        return f"nomogram failed: {exc}"


def run_clinical(
    frame: pd.DataFrame,
    labels: pd.Series,
    split: pd.Series,
    results: Mapping[str, SignatureResult],
    cfg: Mapping[str, Any],
    out: Path,
    outer_folds: int,
    seed: int,
) -> dict[str, Any]:
    """Clinical tables, the clinical and combined models; returns info and ``results`` (new run results)."""
    variables = list(cfg.get("variables") or [])
    leaky = sorted(set(variables) & LEAKY_COLUMNS)
    if leaky:
        raise ValueError(f"clinical.variables contains {leaky}: these columns encode the HER2 label itself")
    missing = [v for v in variables if v not in frame.columns]
    if not variables or missing:
        msg = f"clinical model skipped: variables {variables} (missing in the cohort: {missing})"
        warnings.warn(msg, stacklevel=2)
        return {"clinical_note": msg, "results": {}}
    tr, te = split[split == "train"].index, split[split == "test"].index
    X = encode_clinical(frame[variables])
    y_tr = labels[tr].to_numpy()
    cdir = out / "clinical"
    cdir.mkdir(parents=True, exist_ok=True)
    uni = univariable_table(X.loc[tr], y_tr)
    uni.to_csv(cdir / "univariable.csv", index=False)
    step = stepwise_logistic(
        X.loc[tr],
        y_tr,
        criterion=str(cfg.get("criterion", "aic")),
        p_enter=float(cfg.get("p_enter", 0.05)),
        p_remove=float(cfg.get("p_remove", 0.10)),
    )
    step.table.to_csv(cdir / "multivariable.csv", index=False)
    selected = step.selected or list(uni.loc[uni["p"] < 0.05, "variable"])
    new: dict[str, SignatureResult] = {}
    info: dict[str, Any] = {"clinical_selected": selected, "stepwise_history": step.history}

    def lr_pipe():  # noqa: ANN202
        return build_pipeline(build_selection_steps(["zscore"]), make_model("lr", C=1e4))

    if selected:
        res = evaluate_signature(
            "clinical",
            lr_pipe(),
            None,
            X.loc[tr, selected],
            y_tr,
            X.loc[te, selected] if len(te) else None,
            labels[te].to_numpy() if len(te) else None,
            outer_folds=outer_folds,
            seed=seed,
        )
        write_run(res, cdir, {"signature": "clinical", "variables": selected})
        new["clinical"] = res
    combine = cfg.get("combine_with") or []
    if combine == "best" or combine == ["best"]:
        aucs = {n: r.metrics.get("val/auroc_patient", -1) for n, r in results.items()}
        combine = [max(aucs, key=aucs.get)] if aucs else []
    unknown = [c for c in combine if c not in results]
    if unknown:
        raise ValueError(
            f"clinical.combine_with names {unknown}: not signatures of this experiment ({list(results)})"
        )
    if combine:
        Xc = X[selected].copy() if selected else pd.DataFrame(index=X.index)
        for c in combine:
            s_tr = _signature_scores(results[c], tr.astype(str), "val")
            s_te = _signature_scores(results[c], te.astype(str), "test")
            Xc[f"sig_{c}"] = pd.concat([pd.Series(s_tr.values, index=tr), pd.Series(s_te.values, index=te)])
        res = evaluate_signature(
            "combined",
            lr_pipe(),
            None,
            Xc.loc[tr],
            y_tr,
            Xc.loc[te] if len(te) else None,
            labels[te].to_numpy() if len(te) else None,
            outer_folds=outer_folds,
            seed=seed,
        )
        res.selected_features = list(Xc.columns)
        cmb = out / "combined"
        write_run(res, cmb, {"signature": "combined", "clinical": selected, "signatures": list(combine)})
        new["combined"] = res
        info["combined_with"] = list(combine)
        note = _nomogram(Xc.loc[tr], y_tr, cmb)
        if note:
            info["nomogram_note"] = note
    info["results"] = new
    return info
