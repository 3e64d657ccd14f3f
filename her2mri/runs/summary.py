"""Collect the ``metrics.json`` of runs and multiruns into one table: mean ± sd per experiment and setting.

A *run* is a directory with a ``metrics.json`` (written by ``her2mri-train`` / ``her2mri-eval``) or with a
Hydra ``.hydra/config.yaml`` but no ``metrics.json`` (a job that was killed or is still running). Runs are
grouped by ``(task, experiment, setting)``:

- ``task``: ``task_name`` of the run (``train``, ``eval``, ``debug``...);
- ``experiment``: the ``experiment=`` choice of the run (from ``.hydra/hydra.yaml``), else ``-``;
- ``setting``: the command-line overrides of the run (``.hydra/overrides.yaml``) whose values differ between
  the runs of the same task and experiment, except the replicate keys (``seed``, ``data.fold``,
  ``data.seed`` by default: these are what the mean and sd are taken over), ``sweep``, ``hydra.*`` and
  ``paths.*``.

A run is *failed* when its ``metrics.json`` has ``status`` other than ``ok`` or when it has none. Failed runs
are listed (with their error) and left out of the means. Undefined metrics (``null`` in the JSON, e.g. an AUC
on a one-class split) are left out of that metric's mean; the count used is shown when it is smaller than the
number of runs.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from her2mri.runs.rundir import read_run_dir

#: override keys that index replicates (averaged over), never part of a setting
DEFAULT_REPLICATE_KEYS: tuple[str, ...] = ("seed", "data.fold", "data.seed")
#: override key prefixes that never make a setting (output locations, Hydra internals)
IGNORED_PREFIXES: tuple[str, ...] = ("hydra.", "paths.")
#: metric name endings shown by default in summary.md (summary.csv has every metric)
DEFAULT_MD_SUFFIXES: tuple[str, ...] = (
    "/auroc_patient",
    "/auroc_patient_best",
    "/balanced_accuracy_patient",
    "/balanced_accuracy_patient_valthr",
)
MISSING = "(unset)"


@dataclass
class RunResult:
    """One run directory.

    Attributes:
        path: the run directory.
        task: ``task_name`` of the run.
        experiment: the ``experiment=`` choice or ``-``.
        overrides: ``key -> value`` of the command-line overrides (leading ``+``/``++``/``~`` stripped).
        status: ``ok``, ``failed``, or ``missing`` (no metrics.json).
        error: the error message of a failed run ('' otherwise).
        metrics: ``stage/name -> float`` (NaN for ``null``).
        seed: the run's seed (None when unknown).
        fold: the k-fold index when ``data.split_mode`` is ``kfold`` (else None).
        setting: filled by :func:`assign_settings`.
    """

    path: Path
    task: str
    experiment: str
    overrides: dict[str, str]
    status: str
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    fold: int | None = None
    setting: str = ""

    @property
    def ok(self) -> bool:
        """True when the run finished with ``status: ok``."""
        return self.status == "ok"


@dataclass
class GroupSummary:
    """Mean and sd of every metric over the ok runs of one ``(task, experiment, setting)``."""

    task: str
    experiment: str
    setting: str
    n_runs: int
    n_failed: int
    seeds: list[int]
    folds: list[int]
    mean: dict[str, float]
    sd: dict[str, float]
    count: dict[str, int]
    oof: list[Any] = field(default_factory=list)  # PooledOOF per seed (k-fold groups only)

    @property
    def oof_auroc(self) -> float:
        """Pooled out-of-fold AUC (mean over seeds when several), ``nan`` when not pooled."""
        values = [o.auroc for o in self.oof if math.isfinite(o.auroc)]
        return statistics.fmean(values) if values else float("nan")


# ---------------------------------------------------------------------- reading
def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def read_run(run_dir: str | Path) -> RunResult:
    """Read one run directory (``metrics.json`` and the Hydra side files, :func:`read_run_dir`).

    Args:
        run_dir: a directory holding ``metrics.json`` and/or ``.hydra/config.yaml``.

    Returns:
        The :class:`RunResult` (``setting`` still empty).
    """
    run = read_run_dir(run_dir)
    config = run.config
    data = config.get("data")
    fold = None
    if isinstance(data, Mapping) and data.get("split_mode") == "kfold":
        fold = _as_int(data.get("fold"))
    return RunResult(
        path=run.path,
        task=str(config.get("task_name", "-")),
        experiment=run.experiment or "-",
        overrides=dict(run.overrides),
        status=run.status,
        error=run.error,
        metrics={str(k): _as_float(v) for k, v in run.metrics.items()},
        seed=_as_int(config.get("seed")),
        fold=fold,
    )


def find_run_dirs(roots: Iterable[str | Path]) -> list[Path]:
    """Every run directory below (or equal to) each root, sorted, without duplicates.

    Raises:
        FileNotFoundError: a root does not exist.
    """
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"summary root {str(root)!r} does not exist")
        for m in root.rglob("metrics.json"):
            found.add(m.parent.resolve())
        for c in root.rglob(".hydra/config.yaml"):
            found.add(c.parent.parent.resolve())
    return sorted(found)


def collect_runs(roots: Iterable[str | Path]) -> list[RunResult]:
    """:func:`read_run` on every run directory below the roots."""
    return [read_run(d) for d in find_run_dirs(roots)]


# ---------------------------------------------------------------------- grouping
def assign_settings(
    runs: Sequence[RunResult], replicate_keys: Sequence[str] = DEFAULT_REPLICATE_KEYS
) -> None:
    """Fill ``run.setting``: the overrides whose values differ within each ``(task, experiment)``.

    Args:
        runs: the runs (modified in place).
        replicate_keys: override keys averaged over (never part of a setting).
    """
    skip = set(replicate_keys) | {
        "experiment",
        "sweep",
    }  # sweep=<name> only made the jobs; their values count
    by_exp: dict[tuple[str, str], list[RunResult]] = {}
    for r in runs:
        by_exp.setdefault((r.task, r.experiment), []).append(r)
    for members in by_exp.values():
        keys = sorted(
            {k for r in members for k in r.overrides if k not in skip and not k.startswith(IGNORED_PREFIXES)}
        )
        varying = [k for k in keys if len({r.overrides.get(k, MISSING) for r in members}) > 1]
        for r in members:
            parts = [f"{k}={r.overrides.get(k, MISSING)}" for k in varying]
            r.setting = " ".join(parts) if parts else "-"


def _mean_sd(values: Sequence[float]) -> tuple[float, float, int]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan"), 0
    mean = statistics.fmean(finite)
    sd = statistics.stdev(finite) if len(finite) > 1 else float("nan")
    return mean, sd, len(finite)


def _pooled_oof(ok: Sequence[RunResult], oof_ci: str, n_boot: int) -> list[Any]:
    """Pooled OOF AUC per seed of the k-fold runs of a group (empty when no run has a fold)."""
    from her2mri.runs.oof import pooled_oof_auc

    by_seed: dict[int | None, list[RunResult]] = {}
    for r in ok:
        if r.fold is not None:
            by_seed.setdefault(r.seed, []).append(r)
    return [
        pooled_oof_auc([r.path for r in rs], [int(r.fold) for r in rs], seed, method=oof_ci, n_boot=n_boot)  # type: ignore[arg-type]
        for seed, rs in sorted(by_seed.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    ]


def summarize_runs(
    runs: Sequence[RunResult], oof_ci: str = "delong", n_boot: int = 2000
) -> list[GroupSummary]:
    """Mean ± sd (sample sd, ``ddof=1``) of every metric over the ok runs of each group.

    For k-fold groups (``sweep=folds``) the test predictions of the folds are also pooled per seed into one
    out-of-fold AUC with a CI (:func:`her2mri.runs.oof.pooled_oof_auc`).

    Args:
        runs: runs with ``setting`` filled (see :func:`assign_settings`).
        oof_ci: CI of the pooled out-of-fold AUC: ``delong`` or ``bootstrap``.
        n_boot: bootstrap replicates when ``oof_ci="bootstrap"``.

    Returns:
        One :class:`GroupSummary` per ``(task, experiment, setting)``, sorted.
    """
    groups: dict[tuple[str, str, str], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.task, r.experiment, r.setting), []).append(r)
    out: list[GroupSummary] = []
    for (task, exp, setting), members in sorted(groups.items()):
        ok = [r for r in members if r.ok]
        names = sorted({k for r in ok for k in r.metrics})
        mean: dict[str, float] = {}
        sd: dict[str, float] = {}
        count: dict[str, int] = {}
        for name in names:
            mean[name], sd[name], count[name] = _mean_sd([r.metrics.get(name, float("nan")) for r in ok])
        out.append(
            GroupSummary(
                task=task,
                experiment=exp,
                setting=setting,
                n_runs=len(ok),
                n_failed=len(members) - len(ok),
                seeds=sorted({r.seed for r in ok if r.seed is not None}),
                folds=sorted({r.fold for r in ok if r.fold is not None}),
                mean=mean,
                sd=sd,
                count=count,
                oof=_pooled_oof(ok, oof_ci, n_boot),
            )
        )
    return out


# ---------------------------------------------------------------------- writing
def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else ""


def format_cell(group: GroupSummary, metric: str, digits: int = 3) -> str:
    """``"0.712 ± 0.034"``; ``"0.712"`` for one run; ``"(n=2)"`` appended when fewer runs had a value."""
    if metric not in group.mean or group.count.get(metric, 0) == 0:
        return "–"
    text = _fmt(group.mean[metric], digits)
    if math.isfinite(group.sd[metric]):
        text += f" ± {_fmt(group.sd[metric], digits)}"
    if group.count[metric] < group.n_runs:
        text += f" (n={group.count[metric]})"
    return text


def default_md_metrics(groups: Sequence[GroupSummary]) -> list[str]:
    """Metrics shown by default in summary.md: patient AUC and balanced accuracy of every stage present.

    Per-site (``<stage>/site_<s>/...``) and per-member (``<stage>/member<i>/...``) metrics are left to
    summary.csv (or ``--metrics``).
    """
    names = {m for g in groups for m in g.mean}
    order = {"val": 0, "test": 1, "all": 2}
    picked = [
        m for m in names if m.endswith(DEFAULT_MD_SUFFIXES) and "/site_" not in m and "/member" not in m
    ]
    return sorted(picked, key=lambda m: (order.get(m.split("/", 1)[0], 3), m))


def write_summary_csv(groups: Sequence[GroupSummary], path: str | Path) -> Path:
    """One row per group: identifiers, counts, then ``<metric>_mean``, ``<metric>_sd``, ``<metric>_n``."""
    path = Path(path)
    names = sorted({m for g in groups for m in g.mean})
    header = ["task", "experiment", "setting", "n_runs", "n_failed", "seeds", "folds"]
    header += ["oof_auroc", "oof_ci_low", "oof_ci_high", "oof_ci_method", "oof_n", "oof_n_seeds"]
    for m in names:
        header += [f"{m}_mean", f"{m}_sd", f"{m}_n"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for g in groups:
            row: list[Any] = [g.task, g.experiment, g.setting, g.n_runs, g.n_failed]
            row += [" ".join(map(str, g.seeds)), " ".join(map(str, g.folds))]
            one = g.oof[0] if len(g.oof) == 1 else None
            row += [
                _fmt(g.oof_auroc, 6),
                _fmt(one.ci_low, 6) if one else "",
                _fmt(one.ci_high, 6) if one else "",
                g.oof[0].method if g.oof else "",
                one.n if one else "",
                sum(math.isfinite(o.auroc) for o in g.oof) if g.oof else "",
            ]
            for m in names:
                row += [_fmt(g.mean.get(m, float("nan")), 6), _fmt(g.sd.get(m, float("nan")), 6)]
                row.append(g.count.get(m, 0))
            w.writerow(row)
    return path


def write_runs_csv(runs: Sequence[RunResult], path: str | Path) -> Path:
    """One row per run: path, identifiers, status, error, then every metric."""
    path = Path(path)
    names = sorted({m for r in runs for m in r.metrics})
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "task", "experiment", "setting", "seed", "fold", "status", "error", *names])
        for r in runs:
            row: list[Any] = [str(r.path), r.task, r.experiment, r.setting]
            row += ["" if r.seed is None else r.seed, "" if r.fold is None else r.fold, r.status, r.error]
            row += [_fmt(r.metrics.get(m, float("nan")), 6) for m in names]
            w.writerow(row)
    return path


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_oof_cell(group: GroupSummary, digits: int = 3) -> str:
    """``"0.712 (0.650-0.770)"`` for one seed, ``"0.712 (mean of 3 seeds)"`` for several, ``"–"`` for none."""
    ok = [o for o in group.oof if math.isfinite(o.auroc)]
    if not ok:
        return "–"
    if len(ok) == 1:
        o = ok[0]
        return f"{_fmt(o.auroc, digits)} ({_fmt(o.ci_low, digits)}–{_fmt(o.ci_high, digits)})"
    return f"{_fmt(group.oof_auroc, digits)} (mean of {len(ok)} seeds)"


def write_oof_csv(groups: Sequence[GroupSummary], path: str | Path) -> Path | None:
    """One row per k-fold group and seed: the pooled out-of-fold AUC and its CI (None: no k-fold group)."""
    rows = [(g, o) for g in groups for o in g.oof]
    if not rows:
        return None
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["task", "experiment", "setting", "seed", "folds", "n", "n_pos", "auroc", "ci_low", "ci_high"]
            + ["ci_method", "conf_level", "notes"]
        )
        for g, o in rows:
            w.writerow(
                [
                    g.task,
                    g.experiment,
                    g.setting,
                    "" if o.seed is None else o.seed,
                    " ".join(map(str, o.folds)),
                ]
                + [o.n, o.n_pos, _fmt(o.auroc, 6), _fmt(o.ci_low, 6), _fmt(o.ci_high, 6), o.method]
                + [o.conf_level, "; ".join(o.notes)]
            )
    return path


def format_markdown(
    groups: Sequence[GroupSummary],
    runs: Sequence[RunResult],
    metrics: Sequence[str] | None = None,
    digits: int = 3,
) -> str:
    """The markdown summary: one table (mean ± sd per group) and the list of failed runs."""
    metrics = list(metrics) if metrics else default_md_metrics(groups)
    lines = ["# Run summary", ""]
    n_ok = sum(r.ok for r in runs)
    lines.append(f"{len(runs)} runs: {n_ok} ok, {len(runs) - n_ok} failed or unfinished. ")
    lines.append("Cells: mean ± sd (sample sd) over the ok runs of a group (seeds / folds).")
    lines.append("")
    has_oof = any(g.oof for g in groups)
    if has_oof:
        lines.append(
            "Pooled OOF AUC: the test predictions of the k folds pooled (one per patient) with a "
            f"{next(g.oof[0].method for g in groups if g.oof)} 95% CI; per seed in oof_pooled.csv."
        )
        lines.append("")
    header = ["task", "experiment", "setting", "n", "seeds", "folds", *metrics]
    if has_oof:
        header.append("pooled OOF AUC (95% CI)")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * len(header)) + "|")
    for g in groups:
        cells = [g.task, g.experiment, g.setting, str(g.n_runs)]
        cells += [",".join(map(str, g.seeds)) or "–", ",".join(map(str, g.folds)) or "–"]
        cells += [format_cell(g, m, digits) for m in metrics]
        if has_oof:
            cells.append(format_oof_cell(g, digits))
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    failed = [r for r in runs if not r.ok]
    lines += ["", f"## Failed or unfinished runs ({len(failed)})", ""]
    if not failed:
        lines.append("None.")
    for r in failed:
        lines.append(f"- `{r.path}` ({r.task}, {r.experiment}, {r.setting}): **{r.status}**: {r.error}")
    return "\n".join(lines) + "\n"


def summarize(
    roots: Sequence[str | Path],
    out_dir: str | Path | None = None,
    replicate_keys: Sequence[str] = DEFAULT_REPLICATE_KEYS,
    metrics: Sequence[str] | None = None,
    oof_ci: str = "delong",
    n_boot: int = 2000,
) -> tuple[list[RunResult], list[GroupSummary], str]:
    """Collect, group and write ``summary.csv``, ``summary.md``, ``runs.csv`` (+ ``oof_pooled.csv``: k-fold).

    Args:
        roots: directories searched recursively for runs.
        out_dir: where to write the three files (default: the first root).
        replicate_keys: override keys averaged over (see :data:`DEFAULT_REPLICATE_KEYS`).
        metrics: metrics shown in summary.md (default: :func:`default_md_metrics`).
        oof_ci: CI of the pooled out-of-fold AUC of k-fold groups: ``delong`` (default) or ``bootstrap``.
        n_boot: bootstrap replicates for ``oof_ci="bootstrap"``.

    Returns:
        ``(runs, groups, markdown)``.

    Raises:
        ValueError: ``roots`` is empty, or no run was found.
    """
    if not roots:
        raise ValueError("roots=[] : give at least one directory to summarise")
    runs = collect_runs(roots)
    if not runs:
        raise ValueError(f"roots={[str(r) for r in roots]}: no run directory (metrics.json or .hydra/) found")
    assign_settings(runs, replicate_keys)
    groups = summarize_runs(runs, oof_ci=oof_ci, n_boot=n_boot)
    text = format_markdown(groups, runs, metrics)
    out = Path(out_dir) if out_dir is not None else Path(roots[0])
    out.mkdir(parents=True, exist_ok=True)
    write_summary_csv(groups, out / "summary.csv")
    write_runs_csv(runs, out / "runs.csv")
    write_oof_csv(groups, out / "oof_pooled.csv")
    (out / "summary.md").write_text(text, encoding="utf-8")
    return runs, groups, text
