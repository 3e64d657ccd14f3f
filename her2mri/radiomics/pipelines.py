"""Run one radiomics / DLR / clinical-fusion / URAN experiment end to end.

``run_experiment(cases, cfg, out_dir)``: labels -> train/test split -> feature extraction (radiomics of the
tumour and rings, optional retest extraction, optional deep features) -> for each *signature* (feature
blocks + selection steps + model) cross-validated predictions on train and held-out predictions on test ->
clinical univariable / stepwise tables, clinical and combined models, nomogram -> ``summary.csv``.

Each signature (and ``clinical`` / ``combined``) gets a run directory ``out_dir/<name>/`` with
``metrics.json`` and ``predictions/{val,test}_patients.csv`` (docs/ARCHITECTURE.md section 6), so
``her2mri-report`` reads them like a deep-model run. The configuration keys are documented in
docs/radiomics.md and in ``her2mri/conf/radiomics.yaml``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from her2mri.radiomics.cases import RadiomicsCase, cases_frame
from her2mri.radiomics.clinical_fusion import target_name
from her2mri.radiomics.evaluate import SignatureResult, build_pipeline, evaluate_signature, write_run
from her2mri.radiomics.extract import RETEST_PREFIX, SEP, RegionSpec, extract_cohort, load_params
from her2mri.radiomics.labels import apply_label
from her2mri.radiomics.models import default_grid, make_model, prefixed_grid
from her2mri.radiomics.selection import build_selection_steps

DEEP_BLOCK = "deep"


def case_labels(cases: Sequence[RadiomicsCase], kind: str = "record") -> pd.Series:
    """Label per pid: the record's label (``record``) or one computed from clinical IHC/ISH columns."""
    if kind == "record":
        vals = [c.label for c in cases]
    else:
        vals = apply_label(kind, [c.clinical for c in cases])
    return pd.Series(vals, index=[c.pid for c in cases], dtype="object", name="label")


def split_cases(labels: pd.Series, splits: pd.Series, mode: str, test_size: float, seed: int) -> pd.Series:
    """``train`` / ``test`` per pid.

    Args:
        labels: 0/1 per pid.
        splits: the records' split per pid (train/val/test/None).
        mode: ``records`` (test = records with split ``test``, the rest train), ``random`` (stratified,
            seeded), or ``auto`` (``records`` when some record says ``test``, else ``random``).
        test_size: fraction for ``random``.
        seed: seed for ``random``.
    """
    if mode not in ("auto", "records", "random"):
        raise ValueError(f"split.mode={mode!r}: expected 'auto', 'records' or 'random'")
    if mode == "auto":
        mode = "records" if (splits == "test").any() else "random"
    if mode == "records":
        return pd.Series(np.where(splits == "test", "test", "train"), index=labels.index)
    if test_size <= 0:
        return pd.Series("train", index=labels.index)
    tr, te = train_test_split(labels.index, test_size=test_size, stratify=labels.values, random_state=seed)
    out = pd.Series("train", index=labels.index)
    out[te] = "test"
    return out


def _block_of(col: str) -> str:
    c = col[len(RETEST_PREFIX) :] if col.startswith(RETEST_PREFIX) else col
    if c.startswith("dl__"):
        return DEEP_BLOCK
    parts = c.split(SEP)
    return parts[1] if len(parts) >= 3 else c


def select_columns(table: pd.DataFrame, blocks: Sequence[str], retest: bool) -> pd.DataFrame:
    """Columns of the feature table that belong to the given blocks (``tumour``, ``ring5mm``, ``deep``)."""
    cols = [
        c
        for c in table.columns
        if _block_of(c) in set(blocks) and (retest or not c.startswith(RETEST_PREFIX))
    ]
    if not cols:
        raise ValueError(
            f"features={list(blocks)}: no such feature block (have {sorted({_block_of(c) for c in table})})"
        )
    return table[cols]


def _cfg(d: Mapping[str, Any] | None, key: str, default: Any) -> Any:
    if d is None:
        return default
    v = d.get(key, default)
    return default if v is None else v


def build_feature_table(
    cases: Sequence[RadiomicsCase], cfg: Mapping[str, Any], blocks: set[str], retest: bool
) -> pd.DataFrame:
    """Radiomics (main and retest) and deep features of all cases, one row per pid."""
    ex = cfg.get("extraction", {}) or {}
    tables = []
    regions_needed = blocks - {DEEP_BLOCK}
    if regions_needed:
        rings = tuple(float(w) for w in _cfg(ex, "rings_mm", []))
        spec = RegionSpec(tumour="tumour" in regions_needed, rings_mm=rings, clip=_cfg(ex, "clip", "image"))
        params = load_params(cfg["pyradiomics"])
        crop = ex.get("crop_pad", 8)
        common = dict(
            crop_pad=None if crop is None else int(crop),
            n_jobs=int(_cfg(ex, "n_jobs", 1)),
            cache_dir=ex.get("cache_dir"),
            progress=bool(_cfg(ex, "progress", True)),
            backend=ex.get("backend"),
            scheduler=ex.get("scheduler"),
        )
        tables.append(extract_cohort(cases, params, spec, **common))
        if retest:
            variant = _cfg(ex, "retest", "erode")
            tables.append(
                extract_cohort(
                    cases,
                    params,
                    spec,
                    mask_variant=variant,
                    perturb_mm=float(_cfg(ex, "perturb_mm", 1.0)),
                    **common,
                )
            )
    if DEEP_BLOCK in blocks:
        from her2mri.radiomics.dlr import deep_features, load_backbone

        dcfg = cfg.get("deep", {}) or {}
        model = load_backbone(
            _cfg(dcfg, "backbone", "resnet18"),
            dcfg.get("checkpoint"),
            dcfg.get("weights"),
            dcfg.get("model_kwargs"),
        )
        kw = dict(
            image_size=int(_cfg(dcfg, "image_size", 224)),
            margin_px=int(_cfg(dcfg, "margin_px", 10)),
            batch_size=int(_cfg(dcfg, "batch_size", 16)),
        )
        tables.append(deep_features(cases, model, **kw))
        if retest:
            tables.append(
                deep_features(
                    cases,
                    model,
                    mask_variant=_cfg(ex, "retest", "erode"),
                    perturb_mm=float(_cfg(ex, "perturb_mm", 1.0)),
                    **kw,
                )
            )
    return pd.concat(tables, axis=1)


def _signature_pipeline(  # noqa: ANN202
    sig: Mapping[str, Any], cfg: Mapping[str, Any], seed: int, memory: Any = None
):
    sel = dict(cfg.get("selection", {}) or {})
    sel.update(sig.get("selection", {}) or {})
    steps_names = list(sig.get("steps", ["zscore", "univariate", "correlation", "lasso"]))
    sel_kwargs = {k: v for k, v in sel.items() if v is not None}
    steps = build_selection_steps(steps_names, random_state=seed, **sel_kwargs)
    pre = []
    if sig.get("pca") and DEEP_BLOCK in sig.get("features", []):
        from her2mri.radiomics.dlr import DeepPCA

        pre.append(("pca", DeepPCA(int(sig["pca"]))))
        if steps and steps[0][0] == "icc":  # ICC must see the retest columns before the PCA mixes them
            pre.insert(0, steps.pop(0))
    model_name = str(sig.get("model", "lr"))
    model = make_model(model_name, random_state=seed, **dict(sig.get("model_kwargs", {}) or {}))
    grid = sig.get("grid")
    grid = default_grid(model_name) if grid is None else dict(grid)
    return build_pipeline(steps, model, pre, memory=memory), prefixed_grid(grid)


@contextmanager
def selection_cache(enabled: bool = True) -> Iterator[Any]:
    """A ``joblib.Memory`` in a fresh temporary folder for one experiment (removed afterwards), or None.

    The pipelines cache their fitted selection steps there (``Pipeline(memory=...)``): within a fold every
    grid candidate reuses one selection fit, and signatures with the same features and steps (URAN, its
    ablation and ``hkfs_lr``) share them. The folder is her2mri's own and is deleted when the run ends.

    Args:
        enabled: False yields None (no cache; ``cv.cache_selection: false``).
    """
    if not enabled:
        yield None
        return
    import tempfile

    from joblib import Memory

    with tempfile.TemporaryDirectory(prefix="her2mri-selection-") as d:
        yield Memory(d, verbose=0)


def run_experiment(
    cases: Sequence[RadiomicsCase], cfg: Mapping[str, Any], out_dir: str | Path
) -> dict[str, Any]:
    """Run the experiment described by ``cfg`` on ``cases`` and write its outputs under ``out_dir``.

    Returns:
        ``{"summary": DataFrame, "results": {name: SignatureResult}, "wall_s": float, ...}``.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed = int(_cfg(cfg, "seed", 0))
    cv = cfg.get("cv", {}) or {}
    outer, inner = int(_cfg(cv, "outer_folds", 5)), int(_cfg(cv, "inner_folds", 3))
    labels = case_labels(cases, _cfg(cfg.get("label"), "kind", "record"))
    known = labels.notna()
    n_dropped = int((~known).sum())
    cases = [c for c in cases if known[c.pid]]
    labels = labels[known].astype(int)
    if labels.nunique() < 2:
        raise ValueError(f"label: the cohort has a single class after dropping {n_dropped} unknown label(s)")
    frame = cases_frame(cases)
    spl = cfg.get("split", {}) or {}
    split = split_cases(
        labels, frame["split"], _cfg(spl, "mode", "auto"), float(_cfg(spl, "test_size", 0.3)), seed
    )
    split.to_frame("split").assign(label=labels).to_csv(out / "split.csv", index_label="pid")

    sigs = list(cfg.get("signatures", []) or [])
    if not sigs:
        raise ValueError("signatures is empty: the experiment has nothing to evaluate")
    blocks = {b for s in sigs for b in s.get("features", ["tumour"])}
    retest = any("icc" in s.get("steps", []) for s in sigs)
    t_ex, c_ex = time.perf_counter(), time.process_time()
    table = build_feature_table(cases, cfg, blocks, retest) if blocks else pd.DataFrame(index=labels.index)
    extraction_s = time.perf_counter() - t_ex
    extraction_cpu_s = time.process_time() - c_ex  # this process only (not joblib workers)
    tr, te = split[split == "train"].index, split[split == "test"].index
    results: dict[str, SignatureResult] = {}
    stage_s: dict[str, float] = {"extraction": extraction_s}
    stage_cpu_s: dict[str, float] = {"extraction": extraction_cpu_s}
    models: dict[str, dict[str, Any]] = {}
    progress = bool(_cfg(cfg.get("extraction"), "progress", True))
    with selection_cache(bool(_cfg(cv, "cache_selection", True))) as memory:
        for sig in tqdm(sigs, desc="signatures", disable=not progress):
            name = str(sig["name"])
            t_sig, c_sig = time.perf_counter(), time.process_time()
            X = select_columns(table, sig.get("features", ["tumour"]), "icc" in sig.get("steps", []))
            pipe, grid = _signature_pipeline(sig, cfg, seed, memory)
            res = evaluate_signature(
                name,
                pipe,
                grid,
                X.loc[tr],
                labels[tr].to_numpy(),
                X.loc[te] if len(te) else None,
                labels[te].to_numpy() if len(te) else None,
                outer_folds=outer,
                inner_folds=inner,
                seed=seed,
                progress=progress,
                inner_selection=str(_cfg(cv, "inner_selection", "refit")),
            )
            write_run(res, out / name, {"experiment": cfg.get("name"), "signature": dict(sig)})
            results[name] = res
            models[name] = {
                "estimator": res.estimator,
                "kind": "signature",
                "features": list(sig["features"]) if sig.get("features") else ["tumour"],
            }
            stage_s[f"signature:{name}"] = time.perf_counter() - t_sig
            stage_cpu_s[f"signature:{name}"] = time.process_time() - c_sig
    clin_cfg = cfg.get("clinical", {}) or {}
    clinical_info: dict[str, Any] = {}
    if clin_cfg.get("enabled", False):
        from her2mri.radiomics.clinical_fusion import run_clinical

        t_cl, c_cl = time.perf_counter(), time.process_time()
        clinical_info = run_clinical(
            frame,
            labels,
            split,
            results,
            clin_cfg,
            out,
            outer,
            seed,
            target=target_name(cfg.get("label")),
            progress=progress,
        )
        results.update(clinical_info.pop("results"))
        models.update(clinical_info.pop("models"))
        stage_s["clinical"] = time.perf_counter() - t_cl
        stage_cpu_s["clinical"] = time.process_time() - c_cl
    rows = [{"signature": n, **r.metrics, "n_selected": len(r.selected_features)} for n, r in results.items()]
    summary = pd.DataFrame(rows)
    summary.to_csv(out / "summary.csv", index=False)
    wall = time.perf_counter() - t0
    info = {
        "name": cfg.get("name"),
        "n_cases": len(cases),
        "n_unknown_label_dropped": n_dropped,
        "n_train": len(tr),
        "n_test": len(te),
        "n_features": int(table.shape[1]),
        "target": target_name(cfg.get("label")),
        "extraction_s": extraction_s,
        "extraction_s_per_case": extraction_s / max(1, len(cases)),
        "stage_s": stage_s,
        "stage_cpu_s": stage_cpu_s,
        "wall_s": wall,
        "cpu_s": time.process_time() - c0,
        **clinical_info,
    }
    if bool(cfg.get("save_models", True)):
        from her2mri.radiomics.persist import save_models

        save_models(
            models,
            out,
            dict(cfg),
            {"mode": "train", "clinical_encoded_columns": info.get("clinical_encoded_columns", [])},
        )
        info["models_manifest"] = "models.json"
    (out / "experiment.json").write_text(json.dumps(info, indent=2, default=str))
    return {"summary": summary, "results": results, **info}
