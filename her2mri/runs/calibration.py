"""``her2mri-eval ... recalibrate=platt|isotonic|temperature conformal_alpha=0.1``: fit, save and apply.

After the checkpoint has been scored on ``split``, a calibration set is taken (``calibration.source``):

- ``split`` (default): another split of the same cohort, ``calibration.split`` (default ``val``), scored
  with the same checkpoint; it must differ from the evaluated split.
- ``fraction``: a stratified, seeded ``calibration.fraction`` of the evaluated patients; the recalibrated
  metrics are then computed on the other patients only (the held-out part).
- ``manifest``: a separate manifest CSV (``calibration.manifest_csv``, e.g. 30 labelled cases of the new
  site), scored with the same checkpoint and preprocessing.

On it a recalibrator (:func:`her2mri.stats.fit_recalibrator`) and/or split-conformal sets
(:func:`her2mri.stats.fit_conformal`) are fitted. With both, the calibration set is split (stratified,
seeded) so that the conformal quantile is computed on patients the recalibrator was not fitted on
(``calibration.conformal_share``, default half): the coverage guarantee needs a score function fixed before
the conformal patients are seen. The result is written as ``calibration.json`` in the run directory and as
``<checkpoint>.calibration.json`` beside the checkpoint (:mod:`her2mri.training.calibrator`), then applied
to the evaluated (held-out) patients: ``predictions/{split}_recalibrated_patients.csv``
(``pid,label,prob,prob_raw`` + ``call`` + ``site``) and before/after metrics (``{split}/recal/*``,
``{split}/conformal/*``) in metrics.json.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from her2mri import stats
from her2mri.stats.conformal import CONFORMAL_MODES
from her2mri.stats.recalibration import DEFAULT_PLATT_C, RECALIBRATION_METHODS
from her2mri.training.calibrator import CalibrationBundle, calibration_path, save_calibration

log = logging.getLogger(__name__)

__all__ = [
    "CALIBRATION_SOURCES",
    "calibrate_after_eval",
    "calibration_metrics",
    "check_calibration_config",
    "split_calibration_set",
]

CALIBRATION_SOURCES: tuple[str, ...] = ("split", "fraction", "manifest")


def _options(cfg: DictConfig) -> dict[str, Any]:
    c = cfg.get("calibration") or {}
    c = OmegaConf.to_container(c, resolve=True) if isinstance(c, DictConfig) else dict(c)
    opts = {
        "method": cfg.get("recalibrate"),
        "alpha": cfg.get("conformal_alpha"),
        "source": c.get("source", "split"),
        "split": c.get("split", "val"),
        "fraction": float(c.get("fraction", 0.3)),
        "manifest_csv": c.get("manifest_csv"),
        "seed": int(c.get("seed", 0)),
        "mode": c.get("conformal_mode", "marginal"),
        "share": float(c.get("conformal_share", 0.5)),
        "platt_c": float(c.get("platt_c", DEFAULT_PLATT_C)),
        "name": c.get("name"),
        "save_beside_ckpt": bool(c.get("save_beside_ckpt", True)),
    }
    if opts["method"] is not None and opts["method"] not in RECALIBRATION_METHODS:
        raise ValueError(
            f"recalibrate={opts['method']!r}; valid: {', '.join(RECALIBRATION_METHODS)} or null."
        )
    if opts["alpha"] is not None and not 0.0 < float(opts["alpha"]) < 1.0:
        raise ValueError(f"conformal_alpha={opts['alpha']!r} must be in (0, 1) or null.")
    if opts["source"] not in CALIBRATION_SOURCES:
        raise ValueError(f"calibration.source={opts['source']!r}; valid: {', '.join(CALIBRATION_SOURCES)}.")
    if opts["source"] == "fraction" and not 0.0 < opts["fraction"] < 1.0:
        raise ValueError(f"calibration.fraction={opts['fraction']!r} must be in (0, 1).")
    if opts["source"] == "manifest" and not opts["manifest_csv"]:
        raise ValueError("calibration.source=manifest needs calibration.manifest_csv=/path/to/manifest.csv.")
    if opts["mode"] not in CONFORMAL_MODES:
        raise ValueError(f"calibration.conformal_mode={opts['mode']!r}; valid: {', '.join(CONFORMAL_MODES)}.")
    if not 0.0 < opts["share"] < 1.0:
        raise ValueError(f"calibration.conformal_share={opts['share']!r} must be in (0, 1).")
    return opts


def check_calibration_config(cfg: DictConfig, split: str) -> None:
    """Fail before any scoring when the calibration options are invalid or overlap the evaluated split.

    Raises:
        ValueError: a bad option, or ``calibration.source=split`` with the evaluated split (or ``all``).
    """
    opts = _options(cfg)
    if opts["method"] is None and opts["alpha"] is None:
        return
    if opts["source"] == "split" and (opts["split"] == split or split == "all"):
        raise ValueError(
            f"calibration.split={opts['split']!r} overlaps the evaluated split={split!r}: calibrate on "
            "another split, or use calibration.source=fraction or manifest."
        )


def split_calibration_set(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a stratified, seeded ``fraction`` of the patients (at least one of each class).

    Raises:
        ValueError: fewer than 2 patients of a class (a stratified split is impossible).
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    counts = np.bincount(labels.astype(np.int64), minlength=2)
    if counts.min() < 2:
        raise ValueError(
            "a stratified calibration split needs >= 2 patients of each class; got "
            f"{counts.tolist()} (neg, pos)."
        )
    idx = np.arange(labels.size)
    _, chosen = train_test_split(idx, test_size=fraction, stratify=labels, random_state=seed)
    mask = np.zeros(labels.size, dtype=bool)
    mask[chosen] = True
    return mask


def calibration_metrics(
    y: np.ndarray, p_raw: np.ndarray, bundle: CalibrationBundle, prefix: str
) -> tuple[dict[str, float], dict[str, Any]]:
    """Before/after calibration metrics and conformal coverage of ``bundle`` on labelled patients.

    Returns:
        ``(flat metrics for metrics.json, detail dict)``; undefined statistics are left out with a note.
    """
    out: dict[str, float] = {}
    detail: dict[str, Any] = {"notes": []}
    applied = bundle.apply(p_raw)
    if bundle.recalibrator is not None:
        for tag, p in (("before", p_raw), ("after", applied["prob"])):
            out[f"{prefix}/recal/brier_{tag}"] = stats.brier_score(y, p)
            out[f"{prefix}/recal/ece_{tag}"] = stats.expected_calibration_error(y, p)
            try:
                c = stats.calibration_stats(y, p)
                out[f"{prefix}/recal/intercept_{tag}"] = c.intercept
                out[f"{prefix}/recal/slope_{tag}"] = c.slope
            except ValueError as exc:
                detail["notes"].append(f"calibration {tag}: {exc}")
    if bundle.conformal is not None:
        cov = stats.conformal_coverage(bundle.conformal, y, applied["prob"])
        detail["conformal"] = cov
        for k in (
            "coverage",
            "coverage_pos",
            "coverage_neg",
            "share_uncertain",
            "share_empty",
            "share_single",
        ):
            if cov[k] is not None:
                out[f"{prefix}/conformal/{k}"] = float(cov[k])
        out[f"{prefix}/conformal/alpha"] = bundle.conformal.alpha
    return out, detail


def _score_other(cfg: DictConfig, trainer: Any, setup: Any, opts: dict[str, Any], split: str) -> Any:
    """Patient predictions of the calibration split or manifest, scored with the same checkpoint."""
    from her2mri.runs.scoring import load_for_eval, score_split

    if opts["source"] == "split":
        if opts["split"] == split or split == "all":
            raise ValueError(
                f"calibration.split={opts['split']!r} overlaps the evaluated split={split!r}: calibrate on "
                "another split, or use calibration.source=fraction or manifest."
            )
        _, patients, _ = score_split(trainer, setup, opts["split"])
        return patients
    cal_cfg = cfg.copy()
    with open_dict(cal_cfg):
        cal_cfg.data.source = "manifest"
        cal_cfg.data.manifest_csv = str(opts["manifest_csv"])
        cal_cfg.data.setdefault("axis_order", "zyx")
        cal_cfg.data.require_label = True
    cal_setup = load_for_eval(cal_cfg, setup.ckpt_path)
    _, patients, _ = score_split(trainer, cal_setup, "all")
    return patients


def _write_csv(
    path: Path,
    pids: list[str],
    y: np.ndarray,
    p_raw: np.ndarray,
    applied: dict[str, Any],
    sites: Mapping | None,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with_site = bool(sites) and any(sites.get(p) for p in pids)  # type: ignore[union-attr]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        head = ["pid", "label", "prob", "prob_raw"]
        head += ["call"] if applied["call"] is not None else []
        head += ["site"] if with_site else []
        w.writerow(head)
        for i, pid in enumerate(pids):
            row: list[Any] = [pid, int(y[i]), repr(float(applied["prob"][i])), repr(float(p_raw[i]))]
            if applied["call"] is not None:
                row.append(applied["call"][i])
            if with_site:
                row.append(sites.get(pid) or "")  # type: ignore[union-attr]
            w.writerow(row)


def calibrate_after_eval(
    cfg: DictConfig,
    trainer: Any,
    setup: Any,
    split: str,
    out_dir: Path,
    sites: Mapping[str, str | None] | None = None,
    write: bool = True,
) -> dict[str, float]:
    """Fit the recalibrator / conformal sets on the calibration set, save them, apply them to ``split``.

    Args:
        cfg: the eval config (``recalibrate``, ``conformal_alpha``, ``calibration.*``).
        trainer: the Lightning trainer used for scoring.
        setup: the :class:`her2mri.runs.scoring.EvalSetup` already scored on ``split``.
        split: the evaluated split.
        out_dir: the run directory.
        sites: ``pid -> site`` (written to the recalibrated predictions).
        write: write files (DDP rank 0).

    Returns:
        The metrics to add to metrics.json (empty unless ``recalibrate`` or ``conformal_alpha`` is set).
    """
    opts = _options(cfg)
    if opts["method"] is None and opts["alpha"] is None:
        return {}
    _, evaluated = setup.module.predictions[split]
    known = evaluated.labels >= 0
    pids = [p for p, k in zip(evaluated.pids, known, strict=True) if k]
    y, p = evaluated.labels[known].astype(np.int64), evaluated.probs[known].astype(np.float64)
    info: dict[str, Any] = {"source": opts["source"]}
    if opts["source"] == "fraction":
        mask = split_calibration_set(y, opts["fraction"], opts["seed"])
        y_cal, p_cal = y[mask], p[mask]
        keep = ~mask
        pids = [pid for pid, k in zip(pids, keep, strict=True) if k]
        y, p = y[keep], p[keep]
        info.update({"fraction": opts["fraction"], "seed": opts["seed"], "of_split": split})
    else:
        cal = _score_other(cfg, trainer, setup, opts, split)
        ok = cal.labels >= 0
        y_cal, p_cal = cal.labels[ok].astype(np.int64), cal.probs[ok].astype(np.float64)
        overlap = sorted(set(cal.pids) & set(pids))
        if overlap:
            raise ValueError(
                f"{len(overlap)} calibration patient(s) are also evaluated (e.g. {overlap[:3]}): the "
                "calibration set must be disjoint from the evaluated patients."
            )
        info.update(
            {"split": opts["split"]} if opts["source"] == "split" else {"manifest_csv": opts["manifest_csv"]}
        )
    info.update({"n": int(y_cal.size), "n_pos": int(y_cal.sum())})
    rec_part = np.ones(y_cal.size, dtype=bool)
    if opts["method"] is not None and opts["alpha"] is not None:
        conf_mask = split_calibration_set(y_cal, opts["share"], opts["seed"] + 1)
        rec_part = ~conf_mask
        info.update({"conformal_share": opts["share"], "n_recalibration": int(rec_part.sum())})
    recalibrator = None
    if opts["method"] is not None:
        recalibrator = stats.fit_recalibrator(
            y_cal[rec_part], p_cal[rec_part], opts["method"], platt_c=opts["platt_c"]
        )
    conformal = None
    if opts["alpha"] is not None:
        conf_part = ~rec_part if opts["method"] is not None else rec_part
        q_cal = recalibrator.apply(p_cal[conf_part]) if recalibrator is not None else p_cal[conf_part]
        conformal = stats.fit_conformal(y_cal[conf_part], q_cal, float(opts["alpha"]), opts["mode"])
        if conformal.qhat.get("all", 0.0) is None or None in conformal.qhat.values():
            log.warning(
                "conformal: %d calibration patients are too few for alpha=%s: every call is 'uncertain'",
                int(conf_part.sum()),
                opts["alpha"],
            )
    bundle = CalibrationBundle(recalibrator, conformal, str(setup.ckpt_path), info)
    metrics, _ = calibration_metrics(y, p, bundle, split)
    metrics[f"{split}/recal/n_calibration"] = float(y_cal.size)
    metrics[f"{split}/recal/n_evaluated"] = float(y.size)
    if write:
        save_calibration(bundle, out_dir / "calibration.json")
        if opts["save_beside_ckpt"]:
            target = calibration_path(setup.ckpt_path, opts["name"])
            if target.exists():
                log.warning("%s exists and is replaced by the new calibration", target)
            save_calibration(bundle, target)
            log.info("calibration saved beside the checkpoint: %s", target)
        applied = bundle.apply(p)
        _write_csv(out_dir / "predictions" / f"{split}_recalibrated_patients.csv", pids, y, p, applied, sites)
    return metrics
