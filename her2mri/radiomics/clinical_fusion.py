"""Clinical model and combined model (clinical + signatures) of an experiment, with its nomogram.

On the training cohort only: univariable logistic regressions of every clinical variable and a descriptive
stepwise multivariable table (``clinical/univariable.csv``, ``clinical/multivariable.csv``); then

- ``clinical``: pipeline [stepwise selection -> z-score -> logistic regression]. The stepwise search is a
  step of the pipeline (:class:`~her2mri.radiomics.clinical.StepwiseSelector`), so it is refitted inside
  every cross-validation fold, like every radiomics selection step.
- ``combined``: the same on the clinical variables + the logit of each chosen signature's probability
  (columns ``sig_<name>``). Training rows use the signature's *out-of-fold* probabilities, so the combined
  model never sees a signature score fitted on the same patient; test rows use the held-out probabilities.
  With ``combine_with: best`` every signature is a candidate and
  :class:`~her2mri.radiomics.clinical.BestColumnSelector` picks the best one on the training rows of each
  fold only.
- The logistic regressions are penalised (``penalty: ridge``, ``C: 1.0`` on z-scored inputs): with few
  patients an unpenalised fit diverges under separation (a published nomogram showed OR 1.7e-13 with CI
  [0, inf]). When the classes are separable on a final model's inputs a warning says so
  (:func:`~her2mri.radiomics.clinical.separation`).
- ``combined/nomogram.png`` from the fitted combined model's coefficients (:mod:`her2mri.stats.nomogram`),
  its risk axis naming the predicted target (``Risk of HER2-low``, ``Risk of HER2 status change``, ...).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2mri.io_utils import atomic_write
from her2mri.radiomics.clinical import (
    BestColumnSelector,
    StepwiseSelector,
    encode_clinical,
    separation,
    stepwise_logistic,
    univariable_table,
)
from her2mri.radiomics.evaluate import SignatureResult, build_pipeline, evaluate_signature, write_run
from her2mri.radiomics.models import make_model
from her2mri.radiomics.selection import build_selection_steps

PENALTIES = ("ridge", "none")
TARGET_NAMES = {
    "record": "HER2-positive",
    "binary": "HER2-positive",
    "low_vs_zero": "HER2-low",
    "change": "HER2 status change",
}


def target_name(label_cfg: Mapping[str, Any] | None) -> str:
    """What the models predict, for axis labels: ``label.target_name`` or the name of ``label.kind``."""
    label_cfg = label_cfg or {}
    if label_cfg.get("target_name"):
        return str(label_cfg["target_name"])
    return TARGET_NAMES.get(str(label_cfg.get("kind", "record")), "HER2-positive")


LEAKY_COLUMNS = {"HER2", "HER2pos", "HR_HER2_STATUS", "TripleNeg", "HRposHER2neg", "label", "her2"}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _signature_scores(res: SignatureResult, pids: pd.Index, stage: str) -> pd.Series:
    df = res.val if stage == "val" else res.test
    if df is None:
        return pd.Series(np.nan, index=pids)
    return pd.Series(_logit(df["prob"].to_numpy()), index=df["pid"].astype(str)).reindex(pids)


def _nomogram(est: Any, X: pd.DataFrame, out: Path, target: str) -> str | None:
    """Nomogram of the fitted combined pipeline, on the raw scale of its inputs."""
    try:
        from her2mri.radiomics.persist import linear_formula
        from her2mri.stats.nomogram import axis_values, build_nomogram, plot_nomogram
    except ImportError:
        return "her2mri.stats.nomogram not available"
    try:
        f = linear_formula(est)
        if f is None:
            return "nomogram: the combined model is not linear"
        coef = np.asarray(f["coefficients"]) / np.asarray(f["sd"])
        b0 = float(f["intercept"] - np.sum(coef * np.asarray(f["mean"])))
        labels = {c: (f"{c[4:]} signature (logit)" if c.startswith("sig_") else c) for c in f["features"]}
        coefs = {labels[c]: float(b) for c, b in zip(f["features"], coef, strict=True)}
        values = {labels[c]: axis_values(X[c].to_numpy()) for c in f["features"]}
        nom = build_nomogram(coefs, b0, values)
        fig = plot_nomogram(nom, title=f"Combined model ({target})", risk_label=f"Risk of {target}")
        atomic_write(out / "nomogram.png", lambda fh: fig.savefig(fh, format="png", dpi=120))
        return None
    except Exception as exc:  # a nomogram is a figure: never fail the experiment for it
        warnings.warn(f"nomogram not drawn: {exc}", stacklevel=2)
        return f"nomogram failed: {exc}"


def _final_inputs(est: Any) -> list[str]:
    """Columns that reach the model of a fitted pipeline (after the selectors)."""
    from her2mri.radiomics.evaluate import selected_feature_names

    return selected_feature_names(est)


def _check_separation(name: str, X: pd.DataFrame, y: np.ndarray, penalty: str, C: float) -> str | None:
    if X.shape[1] == 0 or not separation(X.to_numpy(float), y):
        return None
    fix = (
        f"the ridge-penalised fit (clinical.C={C}) keeps the estimates finite; report its ORs, not those of "
        "an unpenalised fit"
        if penalty == "ridge"
        else "the unpenalised fit (clinical.penalty=none) diverges: use clinical.penalty=ridge"
    )
    msg = (
        f"{name}: the two classes are completely separated by {list(X.columns)} on the {len(y)} training "
        f"cases (an unpenalised logistic regression has no finite estimate: odds ratios 0 or infinity); {fix}"
    )
    warnings.warn(msg, stacklevel=2)
    return msg


def run_clinical(
    frame: pd.DataFrame,
    labels: pd.Series,
    split: pd.Series,
    results: Mapping[str, SignatureResult],
    cfg: Mapping[str, Any],
    out: Path,
    outer_folds: int,
    seed: int,
    target: str = "HER2-positive",
    progress: bool = False,
) -> dict[str, Any]:
    """Clinical tables, the clinical and combined models; returns info and ``results`` (new run results).

    Args:
        frame: cases frame (clinical columns), indexed by pid.
        labels: 0/1 per pid.
        split: ``train`` / ``test`` per pid.
        results: the signatures' results (their out-of-fold and test probabilities feed the combined model).
        cfg: the ``clinical`` config section (``variables``, ``criterion``, ``p_enter``, ``p_remove``,
            ``combine_with``, ``penalty``, ``C``).
        out: experiment run directory.
        outer_folds: folds of the out-of-fold predictions.
        seed: seed of the folds.
        target: what is predicted (nomogram axis).
        progress: show tqdm bars.
    """
    variables = list(cfg.get("variables") or [])
    leaky = sorted(set(variables) & LEAKY_COLUMNS)
    if leaky:
        raise ValueError(f"clinical.variables contains {leaky}: these columns encode the HER2 label itself")
    penalty = str(cfg.get("penalty", "ridge") or "ridge")
    if penalty not in PENALTIES:
        raise ValueError(f"clinical.penalty={penalty!r}: expected one of {PENALTIES}")
    C = float(cfg.get("C", 1.0) or 1.0)
    if C <= 0:
        raise ValueError(f"clinical.C={C}: must be > 0")
    missing = [v for v in variables if v not in frame.columns]
    if not variables or missing:
        msg = f"clinical model skipped: variables {variables} (missing in the cohort: {missing})"
        warnings.warn(msg, stacklevel=2)
        return {"clinical_note": msg, "results": {}, "models": {}}
    tr, te = split[split == "train"].index, split[split == "test"].index
    X = encode_clinical(frame[variables])
    y_tr = labels[tr].to_numpy()
    cdir = out / "clinical"
    cdir.mkdir(parents=True, exist_ok=True)
    uni = univariable_table(X.loc[tr], y_tr)
    uni.to_csv(cdir / "univariable.csv", index=False)
    crit = str(cfg.get("criterion", "aic"))
    p_enter, p_remove = float(cfg.get("p_enter", 0.05)), float(cfg.get("p_remove", 0.10))
    step = stepwise_logistic(X.loc[tr], y_tr, criterion=crit, p_enter=p_enter, p_remove=p_remove)
    step.table.to_csv(cdir / "multivariable.csv", index=False)  # descriptive, all training rows
    new: dict[str, SignatureResult] = {}
    models: dict[str, dict[str, Any]] = {}
    info: dict[str, Any] = {
        "clinical_selected_descriptive": step.selected,
        "stepwise_history": step.history,
        "clinical_penalty": penalty,
        "clinical_encoded_columns": list(X.columns),
        "target": target,
    }
    notes: list[str] = []

    def lr_pipe(best: bool = False):  # noqa: ANN202
        model = make_model("lr", C=C if penalty == "ridge" else float("inf"))
        steps: list[tuple[str, Any]] = [("stepwise", StepwiseSelector(crit, p_enter, p_remove, "sig_"))]
        if best:
            steps.append(("best_signature", BestColumnSelector("sig_")))
        return build_pipeline([*steps, *build_selection_steps(["zscore"])], model)

    def evaluate(name: str, Xm: pd.DataFrame, best: bool = False) -> SignatureResult:
        return evaluate_signature(
            name,
            lr_pipe(best),
            None,
            Xm.loc[tr],
            y_tr,
            Xm.loc[te] if len(te) else None,
            labels[te].to_numpy() if len(te) else None,
            outer_folds=outer_folds,
            seed=seed,
            progress=progress,
        )

    res = evaluate("clinical", X)
    selected = _final_inputs(res.estimator)
    res.selected_features = selected
    write_run(res, cdir, {"signature": "clinical", "variables": variables, "selected": selected})
    new["clinical"] = res
    models["clinical"] = {"estimator": res.estimator, "kind": "clinical", "variables": variables}
    info["clinical_selected"] = selected
    note = _check_separation("clinical", X.loc[tr, selected], y_tr, penalty, C)
    if note:
        notes.append(note)
    combine = cfg.get("combine_with") or []
    best = combine == "best" or combine == ["best"]
    if best:
        combine = list(results)
    unknown = [c for c in combine if c not in results]
    if unknown:
        raise ValueError(
            f"clinical.combine_with names {unknown}: not signatures of this experiment ({list(results)})"
        )
    if combine:
        Xc = X.copy()
        for c in combine:
            s_tr = _signature_scores(results[c], tr.astype(str), "val")
            s_te = _signature_scores(results[c], te.astype(str), "test")
            Xc[f"sig_{c}"] = pd.concat([pd.Series(s_tr.values, index=tr), pd.Series(s_te.values, index=te)])
        res = evaluate("combined", Xc, best=best)
        used = _final_inputs(res.estimator)
        res.selected_features = used
        chosen = [c[4:] for c in used if c.startswith("sig_")]
        cmb = out / "combined"
        write_run(
            res,
            cmb,
            {
                "signature": "combined",
                "clinical": [c for c in used if not c.startswith("sig_")],
                "signatures": chosen,
                "candidates": list(combine),
                "best": best,
            },
        )
        new["combined"] = res
        models["combined"] = {
            "estimator": res.estimator,
            "kind": "combined",
            "variables": variables,
            "signatures": list(combine),
        }
        info["combined_with"] = chosen
        info["combine_candidates"] = list(combine)
        note = _check_separation("combined", Xc.loc[tr, used], y_tr, penalty, C)
        if note:
            notes.append(note)
        note = _nomogram(res.estimator, Xc.loc[tr], cmb, target)
        if note:
            info["nomogram_note"] = note
    if notes:
        info["separation"] = notes
    info["results"] = new
    info["models"] = models
    return info
