"""Read the inputs of a report: run directories or patient-level predictions CSVs.

A *run directory* (written by ``her2mri-train`` / ``her2mri-eval``, ARCHITECTURE.md section 6) holds
``predictions/{split}_patients.csv`` (``pid,label,prob,n_slices[,site]``), ``metrics.json`` and optionally
a ``gradcam/`` folder of PNGs. A *bare CSV* needs at least ``pid,label,prob`` (``site`` optional). Any source
can be given a display name as ``NAME=PATH``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2mri.data.errors import DataError
from her2mri.runs.rundir import read_run_dir

__all__ = [
    "REQUIRED_COLUMNS",
    "ModelSource",
    "SplitPredictions",
    "align_on_common_pids",
    "load_source",
    "load_sources",
    "parse_source_arg",
    "read_predictions_csv",
]

REQUIRED_COLUMNS: tuple[str, ...] = ("pid", "label", "prob")
RESERVED_NAMES: tuple[str, ...] = ("all", "none")  # used by decision curves for treat-all / treat-none


@dataclass(frozen=True)
class SplitPredictions:
    """Patient-level predictions of one split of one model.

    Attributes:
        path: the CSV file read.
        pids: patient ids (unique).
        labels: 0/1 labels, ``int64``.
        probs: predicted probabilities of HER2-positive, ``float64`` in [0, 1].
        sites: site per patient (``None`` where unknown), or ``None`` without a ``site`` column.
    """

    path: Path
    pids: tuple[str, ...]
    labels: np.ndarray
    probs: np.ndarray
    sites: tuple[str | None, ...] | None = None

    def subset(self, pids: list[str]) -> SplitPredictions:
        """The rows of ``pids`` in that order (each must be present)."""
        pos = {p: i for i, p in enumerate(self.pids)}
        idx = np.asarray([pos[p] for p in pids], dtype=np.int64)
        sites = None if self.sites is None else tuple(self.sites[i] for i in idx)
        return SplitPredictions(self.path, tuple(pids), self.labels[idx], self.probs[idx], sites)


@dataclass(frozen=True)
class ModelSource:
    """One model of the report.

    Attributes:
        name: display name (unique within a report).
        source: the path given (run directory or CSV).
        test: predictions of the evaluated split.
        val: predictions of the validation split (for the Youden threshold), or ``None``.
        run_dir: the run directory, or ``None`` for a bare CSV.
        gradcam_dir: ``<run_dir>/gradcam`` when it holds PNGs, else ``None``.
        locked_threshold: the locked threshold stored in the run's ``metrics.json`` (train or eval run),
            else ``None``.
        split: the split read from a run directory (``None`` for a bare CSV).
        val_origin: where ``val`` came from: ``"run"`` (the run's own validation predictions) or
            ``"training run"`` (an eval run of a checkpoint: the validation predictions of the training run
            that wrote the checkpoint, so the threshold is *locked* before the external data are seen).
    """

    name: str
    source: Path
    test: SplitPredictions
    val: SplitPredictions | None = None
    run_dir: Path | None = None
    gradcam_dir: Path | None = None
    locked_threshold: float | None = None
    split: str | None = None
    val_origin: str | None = None


# ----------------------------------------------------------------------------------------------- CSV
def _lines(df: pd.DataFrame, bad: np.ndarray, k: int = 5) -> str:
    rows = np.flatnonzero(bad)[:k]
    shown = ", ".join(f"line {int(r) + 2} (pid {df['pid'].iloc[r]!r})" for r in rows)
    more = f" and {int(bad.sum()) - len(rows)} more" if bad.sum() > len(rows) else ""
    return shown + more


def read_predictions_csv(path: str | Path) -> SplitPredictions:
    """Read and check a patient-level predictions CSV.

    Rows whose label is empty or ``-1`` (unknown, e.g. an external cohort) are dropped with a warning.

    Args:
        path: CSV with columns ``pid,label,prob`` (and optionally ``n_slices``, ``site``).

    Returns:
        The :class:`SplitPredictions`.

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: unreadable file, missing column, no rows, duplicate pid, label not 0/1, probability not a
            number in [0, 1]; the message names the file and the offending lines.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions CSV not found.")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as a CSV ({exc}).") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}. "
            "A predictions CSV needs pid,label,prob (site optional)."
        )
    df["pid"] = df["pid"].str.strip()
    unknown = df["label"].str.strip().isin(["", "-1"]).to_numpy()
    if unknown.any():
        warnings.warn(f"{path}: {int(unknown.sum())} patient(s) without a label are left out.", stacklevel=2)
        df = df.loc[~unknown].reset_index(drop=True)
    if df.empty:
        raise DataError(f"{path}: no labelled patients.")
    empty_pid = (df["pid"] == "").to_numpy()
    if empty_pid.any():
        raise DataError(f"{path}: empty pid at {_lines(df, empty_pid)}.")
    dup = df["pid"].duplicated(keep=False).to_numpy()
    if dup.any():
        raise DataError(f"{path}: duplicate pid at {_lines(df, dup)}; one row per patient is expected.")
    label_num = pd.to_numeric(df["label"].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad_label = ~np.isin(label_num, [0.0, 1.0])
    if bad_label.any():
        raise DataError(
            f"{path}: column 'label' must be 0 or 1 (or -1/empty for unknown); "
            f"bad at {_lines(df, bad_label)}."
        )
    prob = pd.to_numeric(df["prob"].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad_prob = ~np.isfinite(prob) | (prob < 0.0) | (prob > 1.0)
    if bad_prob.any():
        raise DataError(
            f"{path}: column 'prob' must be a probability in [0, 1]; bad at {_lines(df, bad_prob)}."
        )
    sites = None
    if "site" in df.columns:
        sites = tuple(s.strip() or None for s in df["site"].tolist())
        if all(s is None for s in sites):
            sites = None
    return SplitPredictions(path, tuple(df["pid"].tolist()), label_num.astype(np.int64), prob, sites)


# ----------------------------------------------------------------------------------------------- sources
def parse_source_arg(arg: str) -> tuple[str | None, Path]:
    """Split ``NAME=PATH`` into ``(NAME, PATH)``; a plain path (or one that exists with ``=``) has no name."""
    if "=" in arg and not Path(arg).exists():
        name, _, path = arg.partition("=")
        if not name.strip():
            raise ValueError(f"source {arg!r} has an empty NAME before '='.")
        if not path:
            raise ValueError(f"source {arg!r} has an empty PATH after '='.")
        return name.strip(), Path(path)
    return None, Path(arg)


def run_name(run_dir: Path) -> str:
    """Display name of a run directory.

    In order: ``experiment_name`` or ``run_name`` in the config of its ``metrics.json``, the Hydra experiment
    choice (``.hydra/hydra.yaml``), the model name in the config, the folder name.

    Raises:
        DataError: ``metrics.json`` exists but cannot be read.
    """
    run = read_run_dir(run_dir)
    if run.read_error:
        raise DataError(run.read_error)
    config = run.payload.get("config")
    config = config if isinstance(config, dict) else {}
    for key in ("experiment_name", "run_name"):
        if isinstance(config.get(key), str) and config[key]:
            return config[key]
    if run.choices.get("experiment") not in (None, "null", ""):
        return str(run.choices["experiment"])
    model = config.get("model")
    if isinstance(model, dict) and isinstance(model.get("name"), str):
        return model["name"]
    if isinstance(model, str) and model:
        return model
    return run_dir.name


def _stored_threshold(run_dir: Path | None) -> float | None:
    """``locked_threshold.value`` of ``<run_dir>/metrics.json`` (None when absent or not chosen)."""
    if run_dir is None:
        return None
    run = read_run_dir(run_dir)
    if run.read_error:
        raise DataError(run.read_error)
    return run.locked_threshold


def _run_split(run_dir: Path) -> str | None:
    """The ``split`` an eval run scored (``config.split`` of its metrics.json), or ``None``."""
    run = read_run_dir(run_dir)
    if run.read_error:
        raise DataError(run.read_error)
    cfg = run.payload.get("config")
    value = cfg.get("split") if isinstance(cfg, dict) else None
    return str(value) if isinstance(value, str) and value else None


def training_val_csv(run_dir: Path, val_split: str) -> Path | None:
    """Validation predictions of the training run whose checkpoint an eval run scored (locked threshold).

    An eval run's metrics.json records ``ckpt_path`` (``<train run>/checkpoints/<name>.ckpt``); the training
    run's ``predictions/{val_split}_patients.csv`` is returned when it exists.
    """
    run = read_run_dir(run_dir)
    if run.read_error:
        raise DataError(run.read_error)
    ckpt_path = run.ckpt_path
    if ckpt_path is None:
        return None
    candidate = ckpt_path.parent.parent / "predictions" / f"{val_split}_patients.csv"
    return candidate if candidate.is_file() else None


def _check_run_status(run_dir: Path) -> None:
    """Refuse a run directory whose ``metrics.json`` says the run failed; warn when it has none.

    Raises:
        DataError: ``status`` is not ``ok`` (the predictions may be those of an unfinished run).
    """
    run = read_run_dir(run_dir)
    if not run.has_metrics:
        warnings.warn(
            f"{run_dir}: no metrics.json, so the run may not have finished; reporting its predictions anyway",
            UserWarning,
            stacklevel=3,
        )
        return
    run.require_ok()


def load_source(arg: str | Path, split: str = "test", val_split: str | None = "val") -> ModelSource:
    """Load one report input: a run directory or a predictions CSV, optionally named ``NAME=PATH``.

    Args:
        arg: ``PATH`` or ``NAME=PATH``.
        split: split evaluated in the report (``predictions/{split}_patients.csv`` of a run directory).
        val_split: split used to choose the Youden threshold (``None``: never read). For a run directory it is
            ``predictions/{val_split}_patients.csv``; for a CSV named ``{split}_patients.csv`` its sibling
            ``{val_split}_patients.csv``. Missing validation predictions are not an error.

    Returns:
        A :class:`ModelSource`.
    """
    name, path = parse_source_arg(str(arg))
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run directory or predictions CSV.")
    val = None
    gradcam = None
    used_split: str | None = None
    val_origin: str | None = None
    if path.is_dir():
        run_dir = path
        _check_run_status(path)
        pred_dir = path / "predictions"
        test_csv = pred_dir / f"{split}_patients.csv"
        own = _run_split(path)
        if not test_csv.is_file() and own and own != split and (pred_dir / f"{own}_patients.csv").is_file():
            # an eval run of another split (e.g. split=all on an external manifest): use what it scored
            test_csv, split = pred_dir / f"{own}_patients.csv", own
        used_split = split
        if not test_csv.is_file():
            have = sorted(p.name for p in pred_dir.glob("*_patients.csv")) if pred_dir.is_dir() else []
            raise FileNotFoundError(
                f"{test_csv}: not found in run directory {path} (split={split!r}); "
                f"available: {have or 'none'}."
            )
        test = read_predictions_csv(test_csv)
        val_csv = pred_dir / f"{val_split}_patients.csv" if val_split else None
        if val_csv is not None and val_split != split and val_csv.is_file():
            val, val_origin = read_predictions_csv(val_csv), "run"
        elif val_split and val_split != split:
            locked = training_val_csv(path, val_split)
            if locked is not None:
                val, val_origin = read_predictions_csv(locked), "training run"
        if (path / "gradcam").is_dir() and any((path / "gradcam").glob("*.png")):
            gradcam = path / "gradcam"
        display = name or run_name(path)
    else:
        run_dir = None
        test = read_predictions_csv(path)
        if val_split and val_split != split and path.name == f"{split}_patients.csv":
            sibling = path.with_name(f"{val_split}_patients.csv")
            if sibling.is_file():
                val, val_origin = read_predictions_csv(sibling), "run"
        display = name or path.stem
    return ModelSource(
        display, path, test, val, run_dir, gradcam, _stored_threshold(run_dir), used_split, val_origin
    )


def _unique_names(sources: list[ModelSource]) -> list[ModelSource]:
    counts: dict[str, int] = {}
    for s in sources:
        counts[s.name] = counts.get(s.name, 0) + 1
    out: list[ModelSource] = []
    used: set[str] = set()
    for s in sources:
        name = s.name
        if counts[name] > 1:
            base = s.run_dir.name if s.run_dir is not None else s.source.parent.name or s.source.stem
            name = f"{s.name} ({base})"
        k = 2
        candidate = name
        while candidate in used:
            candidate = f"{name} #{k}"
            k += 1
        used.add(candidate)
        out.append(replace(s, name=candidate))
    return out


def load_sources(
    args: list[str | Path], split: str = "test", val_split: str | None = "val"
) -> list[ModelSource]:
    """Load every input with :func:`load_source`; duplicate display names get the folder name appended.

    Raises:
        ValueError: no input, or a model named ``all`` / ``none`` (reserved for decision curves).
    """
    if not args:
        raise ValueError("sources is empty: give at least one run directory or predictions CSV.")
    sources = _unique_names([load_source(a, split, val_split) for a in args])
    for s in sources:
        if s.name.lower() in RESERVED_NAMES:
            raise ValueError(f"model name {s.name!r} ({s.source}) is reserved; rename it with NAME=PATH.")
    return sources


def align_on_common_pids(sources: list[ModelSource]) -> tuple[list[ModelSource], dict[str, Any]]:
    """Restrict every model's evaluated predictions to the patients all models share.

    Args:
        sources: the models.

    Returns:
        ``(aligned sources, info)``: the test predictions of each source hold the common pids in sorted order;
        ``info`` has ``n_common`` and per model ``n_total`` and ``n_dropped``, and ``warnings`` (a list of
        messages; also issued as ``UserWarning``).

    Raises:
        DataError: no common patient, or a patient whose label differs between two files.
    """
    common = set(sources[0].test.pids)
    for s in sources[1:]:
        common &= set(s.test.pids)
    if not common:
        files = ", ".join(str(s.test.path) for s in sources)
        raise DataError(f"the models share no patient id: {files}.")
    pids = sorted(common)
    ref = sources[0].test.subset(pids)
    messages: list[str] = []
    per_model: dict[str, dict[str, int]] = {}
    aligned: list[ModelSource] = []
    for s in sources:
        sub = s.test.subset(pids)
        diff = np.flatnonzero(sub.labels != ref.labels)
        if diff.size:
            ex = ", ".join(repr(pids[i]) for i in diff[:5])
            raise DataError(
                f"{s.test.path}: labels differ from {ref.path} for {diff.size} common patient(s) (pid {ex})."
            )
        n_total = len(s.test.pids)
        per_model[s.name] = {"n_total": n_total, "n_dropped": n_total - len(pids)}
        if n_total != len(pids):
            messages.append(
                f"{s.name}: {n_total - len(pids)} of {n_total} patients ({s.test.path}) are not scored by "
                f"every model and are left out; all results use the {len(pids)} common patients."
            )
        aligned.append(replace(s, test=sub))
    for m in messages:
        warnings.warn(m, stacklevel=2)
    info = {"n_common": len(pids), "models": per_model, "warnings": messages}
    return aligned, info
