"""Validation sections of the report: internal vs external side by side, recalibration, Table 1, subgroups.

Also the conformal calls and the site-shortcut probe (issue 16). Numbers come from :mod:`her2mri.stats`.

*Cohorts*: sources that share patient ids belong to the same cohort (connected by shared pids); sources on
disjoint patients (an internal test set and an external site) are different cohorts. Within a cohort models
are compared with the paired DeLong test on their common patients (as before); across cohorts with the
unpaired DeLong test (pROC ``roc.test(paired = FALSE)``), each source on all its own patients. Each source's
threshold is *locked*: the Youden threshold of its validation predictions (for an eval run of a checkpoint,
those of the training run that wrote it), or the fixed ``--threshold``, never chosen on the evaluated data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2mri import stats
from her2mri.report.collect import RESERVED_NAMES, ModelSource, _unique_names, load_source
from her2mri.report.compute import _delong_block, _per_site
from her2mri.report.roc import roc_points
from her2mri.stats.patient_metrics import json_safe, metrics_detail, try_or_note
from her2mri.stats.subgroups import DEFAULT_AGE_BANDS, age_bands, site_probe, subgroup_table
from her2mri.stats.table1 import table_one

__all__ = [
    "DEFAULT_AGE_BANDS",
    "load_cohort_sources",
    "DEFAULT_SITE_PROBE_WARN",
    "cohort_names",
    "read_clinical_csv",
    "cohort_section",
    "partition_cohorts",
    "recalibration_section",
    "site_probe_section",
    "subgroup_section",
    "table1_section",
]

DEFAULT_SITE_PROBE_WARN = 0.7
_CALL_SETS = {
    "HER2-": (True, False),
    "HER2+": (False, True),
    "uncertain": (True, True),
    "empty": (False, False),
}


def partition_cohorts(sources: Sequence[ModelSource]) -> list[list[int]]:
    """Indices of ``sources`` grouped into cohorts (connected by shared patient ids), in input order."""
    parent = list(range(len(sources)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pid_sets = [set(s.test.pids) for s in sources]
    for i in range(len(sources)):
        for j in range(i + 1, len(sources)):
            if pid_sets[i] & pid_sets[j]:
                parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(sources)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def load_cohort_sources(
    args: list[str | Path],
    split: str = "test",
    val_split: str | None = "val",
    cohort_of: Sequence[str] | None = None,
) -> tuple[list[ModelSource], list[list[int]]]:
    """Load every source and group them into cohorts; display names are made unique *within* a cohort.

    The same model evaluated on an internal test set and on an external site keeps its name in both cohorts
    (the report labels them ``<cohort>: <name>``).

    Args:
        args: the sources (``PATH`` or ``NAME=PATH``).
        split: evaluated split of run directories.
        val_split: validation split of run directories.
        cohort_of: one cohort label per source (sources with the same label form a cohort); default: cohorts
            are found from shared patient ids. Give it when two cohorts reuse the same ids (e.g. two
            synthetic cohorts, or centres that number patients from 1).

    Raises:
        ValueError: no source, a model named ``all`` / ``none`` (reserved for decision curves), or
            ``cohort_of`` of the wrong length.
    """
    if not args:
        raise ValueError("sources is empty: give at least one run directory or predictions CSV.")
    loaded = [load_source(a, split, val_split) for a in args]
    if cohort_of is not None:
        if len(cohort_of) != len(loaded):
            raise ValueError(
                f"cohorts has {len(cohort_of)} label(s) for {len(loaded)} source(s): {list(cohort_of)}."
            )
        order = list(dict.fromkeys(cohort_of))
        groups = [[i for i, c in enumerate(cohort_of) if c == name] for name in order]
    else:
        groups = partition_cohorts(loaded)
    out: list[ModelSource] = list(loaded)
    for g in groups:
        for i, s in zip(g, _unique_names([loaded[i] for i in g]), strict=True):
            out[i] = s
    for s in out:
        if s.name.lower() in RESERVED_NAMES:
            raise ValueError(f"model name {s.name!r} ({s.source}) is reserved; rename it with NAME=PATH.")
    return out, groups


def cohort_names(n: int, names: Sequence[str] | None = None) -> list[str]:
    """``internal``, ``external``, ``external 2``... unless ``names`` (one per cohort) are given."""
    if names:
        if len(names) != n:
            raise ValueError(f"cohort_names has {len(names)} name(s) for {n} cohort(s): {list(names)}.")
        return [str(x) for x in names]
    return ["internal"] + ["external" if n == 2 else f"external {k}" for k in range(1, n)]


def _source_metrics(
    s: ModelSource, threshold: str | float, n_boot: int, seed: int, conf_level: float
) -> dict[str, Any]:
    y, p = s.test.labels, s.test.probs
    val_y = s.val.labels if s.val is not None else None
    val_p = s.val.probs if s.val is not None else None
    detail = metrics_detail(
        y, p, val_y, val_p, threshold=threshold, n_boot=n_boot, seed=seed, conf_level=conf_level,
        locked=s.locked_threshold,
    )  # fmt: skip
    notes = detail["notes"]
    flat = dict(detail["flat"])
    flat["ece"] = try_or_note(notes, "ECE", stats.expected_calibration_error, y, p)
    fpr, tpr, _ = roc_points(y, p)
    curve = try_or_note(notes, "calibration curve", stats.calibration_curve, y, p)
    source = detail["threshold_source"]
    if source == "youden_val" and s.val_origin == "training run":
        source = "youden_val_training_run"
    return {
        "source": str(s.source),
        "predictions_csv": str(s.test.path),
        "split": s.split,
        "val_csv": str(s.val.path) if s.val is not None else None,
        "val_origin": s.val_origin,
        "metrics": flat,
        "threshold_source": source,
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        "calibration_curve": curve.to_dict() if curve is not None else None,
        "per_site": _per_site(y, p, s.test.sites, flat["threshold"], conf_level) if s.test.sites else None,
        "notes": notes,
    }


def cohort_section(
    sources: Sequence[ModelSource],
    groups: list[list[int]],
    names: Sequence[str],
    *,
    threshold: str | float = "youden",
    n_boot: int = 2000,
    seed: int = 0,
    conf_level: float = 0.95,
) -> dict[str, Any]:
    """Side-by-side metrics of every source on its own patients, paired and unpaired comparisons.

    Returns:
        ``{"cohorts": [{"name", "sources", "n_patients", "paired": DeLong block}], "sources": {label: {...}},
        "unpaired": [{"source1", "source2", "cohort1", "cohort2", ...UnpairedDeLongResult}], "notes"}``;
        a source's label is ``"<cohort>: <name>"``.
    """
    out: dict[str, Any] = {"cohorts": [], "sources": {}, "unpaired": [], "notes": []}
    label_of: dict[int, str] = {}
    cohort_of: dict[int, str] = {}
    for cname, idx in zip(names, groups, strict=True):
        labels = []
        for i in idx:
            label = f"{cname}: {sources[i].name}"
            label_of[i], cohort_of[i] = label, cname
            labels.append(label)
            out["sources"][label] = _source_metrics(sources[i], threshold, n_boot, seed, conf_level)
            out["sources"][label]["cohort"] = cname
            out["sources"][label]["model"] = sources[i].name
        common = set.intersection(*(set(sources[i].test.pids) for i in idx))
        paired = None
        if len(idx) > 1 and common:
            pids = sorted(common)
            subs = {sources[i].name: sources[i].test.subset(pids) for i in idx}
            y = next(iter(subs.values())).labels
            paired = _delong_block(list(subs), y, {k: v.probs for k, v in subs.items()}, conf_level)
        n_pat = len(set().union(*(set(sources[i].test.pids) for i in idx)))
        out["cohorts"].append({"name": cname, "sources": labels, "n_patients": n_pat, "paired": paired})
    order = [i for g in groups for i in g]
    for a_pos, i in enumerate(order):
        for j in order[a_pos + 1 :]:
            if cohort_of[i] == cohort_of[j]:
                continue
            si, sj = sources[i].test, sources[j].test
            r = try_or_note(
                out["notes"],
                f"unpaired DeLong {label_of[i]} vs {label_of[j]}",
                stats.delong_test_unpaired,
                si.labels,
                si.probs,
                sj.labels,
                sj.probs,
                conf_level,
            )
            if r is not None:
                out["unpaired"].append(
                    {
                        "source1": label_of[i],
                        "source2": label_of[j],
                        "cohort1": cohort_of[i],
                        "cohort2": cohort_of[j],
                        **r.to_dict(),
                    }
                )
    return json_safe(out)


# --------------------------------------------------------------------------------------------- recalibration
def _recal_csv(s: ModelSource) -> Path | None:
    if s.run_dir is None or s.split is None:
        return None
    path = s.run_dir / "predictions" / f"{s.split}_recalibrated_patients.csv"
    return path if path.is_file() else None


def recalibration_section(labelled: Mapping[str, ModelSource], conf_level: float = 0.95) -> dict[str, Any]:
    """Before/after calibration and conformal coverage of runs with ``{split}_recalibrated_patients.csv``.

    The numbers are computed on the patients of that file (the held-out part when the calibration set was a
    fraction of the evaluated cohort). ``calibration.json`` of the run tells the method and calibration set.
    """
    import json

    models: dict[str, Any] = {}
    for label, s in labelled.items():
        path = _recal_csv(s)
        if path is None:
            continue
        df = pd.read_csv(path, dtype={"pid": str})
        df = df[df["label"].isin([0, 1])]
        y = df["label"].to_numpy(dtype=np.int64)
        entry: dict[str, Any] = {"csv": str(path), "n": int(y.size), "n_pos": int(y.sum()), "notes": []}
        cal_json = s.run_dir / "calibration.json" if s.run_dir is not None else None
        if cal_json is not None and cal_json.is_file():
            data = json.loads(cal_json.read_text(encoding="utf-8"))
            entry["method"] = (data.get("recalibrator") or {}).get("method")
            entry["calibration_set"] = data.get("calibration_set")
            entry["conformal_alpha"] = (data.get("conformal") or {}).get("alpha")
            entry["conformal_mode"] = (data.get("conformal") or {}).get("mode")
        for tag, col in (("before", "prob_raw"), ("after", "prob")):
            p = df[col].to_numpy(dtype=np.float64)
            block: dict[str, Any] = {
                "brier": try_or_note(entry["notes"], f"Brier {tag}", stats.brier_score, y, p),
                "ece": try_or_note(entry["notes"], f"ECE {tag}", stats.expected_calibration_error, y, p),
                "auroc": try_or_note(entry["notes"], f"AUC {tag}", stats.roc_auc, y, p),
            }
            cal = try_or_note(entry["notes"], f"calibration {tag}", stats.calibration_stats, y, p)
            block["intercept"], block["slope"] = (cal.intercept, cal.slope) if cal else (None, None)
            curve = try_or_note(entry["notes"], f"calibration curve {tag}", stats.calibration_curve, y, p, 5)
            block["curve"] = curve.to_dict() if curve is not None else None
            entry[tag] = block
        if "call" in df.columns:
            calls = df["call"].astype(str).tolist()
            bad = sorted(set(calls) - set(_CALL_SETS))
            if bad:
                entry["notes"].append(f"unknown conformal calls {bad} in {path}")
            sets = np.asarray([_CALL_SETS.get(c, (False, False)) for c in calls], dtype=bool)
            covered = sets[np.arange(y.size), y]
            entry["conformal"] = {
                "coverage": float(covered.mean()),
                "coverage_pos": float(covered[y == 1].mean()) if (y == 1).any() else None,
                "coverage_neg": float(covered[y == 0].mean()) if (y == 0).any() else None,
                "share_uncertain": float(np.mean([c == "uncertain" for c in calls])),
                "share_empty": float(np.mean([c == "empty" for c in calls])),
                "n_calls": {c: int(sum(x == c for x in calls)) for c in _CALL_SETS},
            }
            if entry.get("conformal_alpha") is not None:
                entry["conformal"]["target_coverage"] = 1.0 - float(entry["conformal_alpha"])
        models[label] = entry
    return json_safe(models)


# ----------------------------------------------------------------------------------------------- clinical
def read_clinical_csv(path: str | Path) -> pd.DataFrame:
    """A per-patient clinical table (``pid`` + any columns), as strings; ``DataError`` naming the file.

    With a ``cohort`` column (the report's cohort names) the rows are matched on ``(cohort, pid)``, so two
    cohorts may reuse the same patient ids.
    """
    from her2mri.data.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: clinical CSV not found.")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as a CSV ({exc}).") from exc
    df.columns = [str(c).strip() for c in df.columns]
    if "pid" not in df.columns:
        raise DataError(f"{path}: a clinical CSV needs a 'pid' column; found {list(df.columns)}.")
    df["pid"] = df["pid"].str.strip()
    keys = ["cohort", "pid"] if "cohort" in df.columns else ["pid"]
    dup = df.duplicated(subset=keys, keep=False)
    if dup.any():
        raise DataError(
            f"{path}: duplicate {'/'.join(keys)} {sorted(set(df.loc[dup, 'pid']))[:5]}; one row per patient."
        )
    return df.replace({"": np.nan})


def _patients_frame(
    sources: Sequence[ModelSource], groups: list[list[int]], names: Sequence[str]
) -> pd.DataFrame:
    """One row per (group, pid): the validation and evaluated patients of each cohort, with label and site."""
    rows = []
    for cname, idx in zip(names, groups, strict=True):
        seen: set[tuple[str, str]] = set()
        for i in idx:
            s = sources[i]
            parts = [(f"{cname} {s.split or 'evaluated'}", s.test)]
            if s.val is not None and s.val_origin == "run":
                parts.append((f"{cname} val", s.val))
            for gname, pred in parts:
                for k, pid in enumerate(pred.pids):
                    if (gname, pid) in seen:
                        continue
                    seen.add((gname, pid))
                    site = pred.sites[k] if pred.sites is not None else None
                    rows.append(
                        {
                            "pid": pid,
                            "cohort": cname,
                            "group": gname,
                            "HER2 status": "positive" if pred.labels[k] else "negative",
                            "site": site,
                        }
                    )
    df = pd.DataFrame(rows, columns=["pid", "cohort", "group", "HER2 status", "site"])
    if df["site"].isna().all():
        df = df.drop(columns="site")
    return df


def table1_section(
    sources: Sequence[ModelSource],
    groups: list[list[int]],
    names: Sequence[str],
    clinical: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Table 1 of the patients of the report per group (cohort x split), with the clinical columns."""
    df = _patients_frame(sources, groups, names)
    notes: list[str] = []
    if clinical is not None:
        keys = ["pid", "cohort"] if "cohort" in clinical.columns else ["pid"]
        extra = [c for c in clinical.columns if c not in keys and c not in df.columns]
        df = df.merge(clinical[[*keys, *extra]], on=keys, how="left")
        unmatched = int(df[extra].isna().all(axis=1).sum()) if extra else 0
        if unmatched:
            notes.append(f"{unmatched} patient row(s) have no clinical data (pid not in the clinical CSV)")
    table = table_one(df, "group", [c for c in df.columns if c not in ("pid", "cohort", "group")])
    groups_order = [
        c
        for c in table.columns
        if c not in ("variable", "level", "type", "statistical_test", "p_value", "note")
    ]
    return json_safe({"groups": groups_order, "rows": table.to_dict(orient="records"), "notes": notes})


def subgroup_section(
    labelled: Mapping[str, ModelSource],
    thresholds: dict[str, float],
    clinical: pd.DataFrame | None = None,
    *,
    age_col: str = "age",
    age_edges: Sequence[float] = DEFAULT_AGE_BANDS,
    columns: Sequence[str] = (),
    conf_level: float = 0.95,
    cohort_of: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Subgroup AUC and sensitivity/specificity at each source's locked threshold by site, age, columns.

    Args:
        labelled: source label -> source (each on its own patients).
        thresholds: source label -> its threshold (from the cohort section).
        clinical: the clinical table (``pid`` + columns), optional.
        age_col: the clinical column of age in years (banded with ``age_edges``).
        age_edges: age band edges.
        columns: further clinical columns to divide by (each level a subgroup).
        conf_level: confidence level.
        cohort_of: source label -> cohort name (used when the clinical CSV has a ``cohort`` column).

    Returns:
        ``{label: [rows of subgroup_table]}`` and ``notes``.
    """
    out: dict[str, Any] = {"sources": {}, "notes": []}
    if clinical is not None:
        missing = [c for c in columns if c not in clinical.columns]
        if missing:
            raise ValueError(
                f"subgroup column(s) {missing} not in the clinical CSV; columns: {list(clinical.columns)}."
            )
    elif columns:
        raise ValueError(f"subgroups {list(columns)} need a clinical CSV (--clinical).")
    for label, s in labelled.items():
        y, p = s.test.labels, s.test.probs
        thr = float(thresholds[label])
        rows: list[dict[str, Any]] = []
        if s.test.sites is not None:
            rows += subgroup_table(y, p, list(s.test.sites), thr, "site", conf_level)
        if clinical is not None:
            rows_c = clinical
            if "cohort" in clinical.columns and cohort_of is not None:
                rows_c = clinical[clinical["cohort"] == cohort_of.get(label)]
            lookup = rows_c.set_index("pid")
            if age_col in clinical.columns:
                ages = [lookup[age_col].get(pid) for pid in s.test.pids]
                rows += subgroup_table(y, p, age_bands(ages, age_edges), thr, f"{age_col} band", conf_level)
            for col in columns:
                rows += subgroup_table(
                    y, p, [lookup[col].get(pid) for pid in s.test.pids], thr, col, conf_level
                )
        out["sources"][label] = rows
    return json_safe(out)


def site_probe_section(
    labelled: Mapping[str, ModelSource],
    features: pd.DataFrame | None = None,
    warn_at: float = DEFAULT_SITE_PROBE_WARN,
    seed: int = 0,
) -> dict[str, Any]:
    """The site-shortcut probe of every source whose patients come from two or more sites.

    Args:
        labelled: source label -> source.
        features: optional per-patient features (``pid`` + numeric columns) added to the probe's inputs.
        warn_at: probe AUC at which a warning is raised (see :func:`her2mri.stats.subgroups.site_probe`).
        seed: fold seed.

    Returns:
        ``{"sources": {label: probe result}, "notes": [...]}``.
    """
    out: dict[str, Any] = {"sources": {}, "notes": []}
    table = None
    if features is not None:
        table = features.set_index("pid").apply(pd.to_numeric, errors="coerce")
    for label, s in labelled.items():
        if s.test.sites is None:
            continue
        feats = None
        if table is not None:
            feats = table.reindex(list(s.test.pids)).to_numpy(dtype=np.float64)
            if np.isnan(feats).any():
                feats = None
                out["notes"].append(
                    f"{label}: features missing or not numeric for some patients; probe on the outputs only"
                )
        out["sources"][label] = site_probe(
            list(s.test.sites), s.test.probs, s.test.labels, feats, seed=seed, warn_at=warn_at
        )
    return json_safe(out)
