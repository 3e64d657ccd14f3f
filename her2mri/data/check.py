"""Validate a cohort without training: every problem of every case, one table (``her2mri-check``).

:func:`check_cohort` reads the cohort the way training does (the same :class:`DCEDataModule` options) and
collects **every** problem instead of stopping at the first:

* the cohort table: a reader error (e.g. a non-numeric phase index) is narrowed down to its rows by reading
  the table one row at a time, so each bad row is listed and the good rows are still checked;
* each case: files readable, the three phases on one grid, no all-zero / NaN phase volume, a mask that is
  present, binary (0/1), not empty and on the image grid (or a tumour box), the preprocessing of the run
  (slice selection, crop, normalisation) runs and selects slices, spacing present and plausible;
* the cohort: labels, split assignment (cases left out), class balance per split and per site (a split or
  site with one class makes its AUC undefined).

Each problem is a :class:`Problem` ``(case, file, problem, severity)``; severity ``error`` (training would
fail or learn from broken data) or ``warning`` (training runs, but look at it). Warnings that the readers and
the preprocessing emit are collected as problems too.
"""

from __future__ import annotations

import copy
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from her2mri.data.errors import DataError
from her2mri.data.records import CaseRecord

SEVERITIES: tuple[str, ...] = ("error", "warning")
#: columns of a manifest CSV that hold paths (made absolute when a row is re-read on its own)
_MANIFEST_PATH_COLS: tuple[str, ...] = ("pre", "early", "late", "mask", "rgb", "mask2", "breast_mask")
#: slice thickness / pixel spacing outside these bounds (mm) is reported as implausible
SPACING_Z_RANGE: tuple[float, float] = (0.2, 10.0)
SPACING_XY_RANGE: tuple[float, float] = (0.1, 5.0)


@dataclass(frozen=True)
class Problem:
    """One problem found by :func:`check_cohort`."""

    case: str
    file: str
    problem: str
    severity: str = "error"


@dataclass
class CheckReport:
    """Result of :func:`check_cohort`.

    Attributes:
        problems: every problem found, in the order found.
        n_cases: cases read from the cohort table.
        n_checked: cases whose files were checked.
        summary: per split ``{"patients", "pos", "neg", "unknown"}`` (split ``none``: cases left out).
        balance: per split and site ``{"patients", "pos", "neg"}``.
    """

    problems: list[Problem] = field(default_factory=list)
    n_cases: int = 0
    n_checked: int = 0
    summary: dict[str, dict[str, int]] = field(default_factory=dict)
    balance: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    @property
    def n_errors(self) -> int:
        """Problems of severity ``error``."""
        return sum(p.severity == "error" for p in self.problems)

    @property
    def n_warnings(self) -> int:
        """Problems of severity ``warning``."""
        return sum(p.severity == "warning" for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "n_cases": self.n_cases,
            "n_checked": self.n_checked,
            "n_errors": self.n_errors,
            "n_warnings": self.n_warnings,
            "problems": [asdict(p) for p in self.problems],
            "summary": self.summary,
            "balance": self.balance,
        }


# --------------------------------------------------------------------------------------------- messages
_PATH_PREFIX = re.compile(
    r"^(?P<file>/[^:]+|[A-Za-z]:\\[^:]+|[^\s:]+\.(?:nii\.gz|nii|nrrd|nhdr|mha|mhd|csv|png|jpg)):\s"
)
_PID_IN_MSG = re.compile(r"\b(?:pid|case)\s+([A-Za-z0-9._-]+)")


def _split_message(msg: str) -> tuple[str, str]:
    """``(file, problem)`` from a ``"<file>: <problem>"`` DataError message (file ``""`` when absent)."""
    m = _PATH_PREFIX.match(msg)
    if m:
        return m.group("file"), msg[m.end() :].strip()
    return "", msg


def _warnings_to_problems(
    caught: Iterable[warnings.WarningMessage], case: str | None, file: str = ""
) -> list[Problem]:
    out = []
    for w in caught:
        text = str(w.message)
        wfile, problem = _split_message(text)
        who = case
        if who is None:
            m = _PID_IN_MSG.search(text)
            who = m.group(1) if m else "(cohort)"
        out.append(Problem(who, wfile or file, problem, "warning"))
    return out


def _run(fn: Callable[[], Any], case: str, file: str, problems: list[Problem]) -> Any:
    """Call ``fn``; DataError/ValueError/OSError and warnings become problems; returns the result or None."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn()
        except (DataError, ValueError, OSError) as exc:
            efile, problem = _split_message(str(exc))
            problems.append(Problem(case, efile or file, problem, "error"))
            result = None
    problems.extend(_warnings_to_problems(caught, case, file))
    return result


# --------------------------------------------------------------------------------------------- records
def _table_of(dm: Any) -> tuple[str, Path] | None:
    for attr in ("metadata_csv", "manifest_csv", "index_csv"):
        value = getattr(dm, attr, None)
        if (
            value is not None
            and getattr(dm, "source", None)
            == {
                "metadata_csv": "breastdcedl",
                "manifest_csv": "manifest",
                "index_csv": "rgb_slices",
            }[attr]
        ):
            return attr, Path(value)
    return None


def _row_id(row: pd.Series, index: int) -> str:
    for col in ("pid", "case_id", "patient_id", "PatientID", "id"):
        if col in row.index and isinstance(row[col], str) and row[col].strip():
            return row[col].strip()
    return f"row {index + 2}"


def load_records_per_row(dm: Any, problems: list[Problem]) -> list[CaseRecord]:
    """The datamodule's records; when the reader rejects the table, re-read it one row (case) at a time.

    Each row that fails on its own becomes a problem naming the case and the table; the other rows are kept.
    Rows are re-read from temporary one-row copies (relative manifest paths made absolute), written in a
    temporary folder that is removed afterwards.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            records = list(dm.load_records())
            problems.extend(_warnings_to_problems(caught, None))
            return records
        except (DataError, ValueError, OSError) as exc:
            first_error = str(exc)
    table = _table_of(dm)
    if table is None:
        file, problem = _split_message(first_error)
        problems.append(Problem("(cohort)", file, problem, "error"))
        return []
    attr, csv = table
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - the reader's message is the better one
        file, problem = _split_message(first_error)
        problems.append(Problem("(cohort)", file or str(csv), f"{problem} ({type(exc).__name__})", "error"))
        return []
    group_col = "case_id" if "case_id" in df.columns and attr == "manifest_csv" else None
    if attr == "manifest_csv":
        for col in _MANIFEST_PATH_COLS:
            if col in df.columns:
                df[col] = [
                    str((csv.parent / v).resolve()) if v and not Path(v).is_absolute() else v for v in df[col]
                ]
    groups: list[pd.DataFrame]
    if group_col is not None:
        groups = [g for _, g in df.groupby(group_col, sort=False)]
    elif attr == "index_csv":
        key = next((c for c in ("pid", "case_id", "patient_id") if c in df.columns), None)
        groups = (
            [g for _, g in df.groupby(key, sort=False)] if key else [df.iloc[[i]] for i in range(len(df))]
        )
    else:
        groups = [df.iloc[[i]] for i in range(len(df))]
    records: list[CaseRecord] = []
    with tempfile.TemporaryDirectory(prefix="her2mri-check-") as tmp:
        one = Path(tmp) / csv.name
        for group in groups:
            case = _row_id(group.iloc[0], int(group.index[0]))
            group.to_csv(one, index=False)
            sub = copy.copy(dm)
            setattr(sub, attr, one)
            if attr == "index_csv" and getattr(dm, "image_dir", None) is None:
                sub.image_dir = csv.parent
            found: list[Problem] = []
            got = _run(lambda sub=sub: sub.load_records(), case, str(csv), found)
            # a one-row table makes cohort-wide warnings (e.g. "files without a row") for the other rows
            problems.extend(p for p in found if p.severity == "error" or case in p.problem)
            if got:
                records.extend(got)
    # the per-row reading names the temporary copy: point messages at the real table
    for i, p in enumerate(problems):
        if p.file.endswith(csv.name) and p.file != str(csv):
            problems[i] = Problem(p.case, str(csv), p.problem.replace(str(one), str(csv)), p.severity)
    return records


# --------------------------------------------------------------------------------------------- per case
def check_case(record: CaseRecord, preprocess_cfg: Any, problems: list[Problem]) -> bool:
    """Check one case (files, values, mask, spacing, the run's preprocessing); returns True when usable."""
    from her2mri.data.prepare import preprocess_record

    case = record.pid
    main_file = str(record.phase_paths[0]) if record.phase_paths else str((record.rgb_paths or ("",))[0])
    if record.phase_paths is not None and record.mask_path is None and record.bbox is None:
        has_box = any(k.startswith("bbox") for k in record.extra)
        if not has_box:
            problems.append(
                Problem(case, main_file, "no tumour mask and no tumour box: the tumour cannot be located")
            )
            return False
    if record.spacing is not None:
        z, y, x = (float(v) for v in record.spacing)
        if not (SPACING_Z_RANGE[0] <= z <= SPACING_Z_RANGE[1]) or not all(
            SPACING_XY_RANGE[0] <= v <= SPACING_XY_RANGE[1] for v in (y, x)
        ):
            problems.append(
                Problem(case, main_file, f"implausible spacing (z, y, x) = {record.spacing} mm", "warning")
            )
    n_before = sum(p.severity == "error" for p in problems)
    _run(lambda: preprocess_record(record, preprocess_cfg), case, main_file, problems)
    return sum(p.severity == "error" for p in problems) == n_before


# --------------------------------------------------------------------------------------------- cohort
def _count(records: Sequence[CaseRecord]) -> dict[str, int]:
    labels = [r.label for r in records]
    return {
        "patients": len(records),
        "pos": sum(y == 1 for y in labels),
        "neg": sum(y == 0 for y in labels),
        "unknown": sum(y is None for y in labels),
    }


def check_cohort(
    dm: Any,
    preprocess_cfg: Any,
    *,
    require_label: bool = True,
    progress: bool = True,
) -> CheckReport:
    """Check every case of a datamodule's cohort and the cohort as a whole (see the module docstring).

    Args:
        dm: a :class:`~her2mri.data.datamodule.DCEDataModule` (not set up; nothing is cached).
        preprocess_cfg: the run's :class:`~her2mri.data.preprocess_config.PreprocessConfig`.
        require_label: training needs a label for every case in a split (``data.require_label``).
        progress: a progress bar over the cases.

    Returns:
        The :class:`CheckReport`.
    """
    from tqdm.auto import tqdm

    report = CheckReport()
    problems = report.problems
    records = load_records_per_row(dm, problems)
    report.n_cases = len(records)
    if not records:
        if not any(p.severity == "error" for p in problems):
            problems.append(Problem("(cohort)", "", "the cohort has no case"))
        return report
    usable: list[CaseRecord] = []
    for record in tqdm(records, desc="checking cases", unit="case", disable=not progress):
        if check_case(record, preprocess_cfg, problems):
            usable.append(record)
        report.n_checked += 1
    splits = _run(lambda: dm.resolve_splits(usable), "(cohort)", "", problems) or {}
    by_pid = {r.pid: r for r in usable}
    assigned = set()
    for split in ("train", "val", "test"):
        recs = [by_pid[p] for p in splits.get(split, []) if p in by_pid]
        assigned.update(r.pid for r in recs)
        report.summary[split] = _count(recs)
        per_site: dict[str, list[CaseRecord]] = {}
        for r in recs:
            per_site.setdefault(str(r.site or "unknown"), []).append(r)
        report.balance[split] = {
            site: {k: v for k, v in _count(rs).items() if k != "unknown"}
            for site, rs in sorted(per_site.items())
        }
        c = report.summary[split]
        if recs and require_label and c["unknown"]:
            problems.append(Problem(f"({split})", "", f"{c['unknown']} case(s) without a label in {split}"))
        if split in ("val", "test") and recs and (c["pos"] == 0 or c["neg"] == 0):
            problems.append(
                Problem(
                    f"({split})",
                    "",
                    f"{split} has one class only ({c['pos']} HER2+, {c['neg']} HER2-): its AUC is undefined",
                    "error" if split == "val" else "warning",
                )  # fmt: skip
            )
        if split == "train" and recs and (c["pos"] == 0 or c["neg"] == 0):
            problems.append(Problem("(train)", "", "train has one class only: nothing to learn"))
        for site, counts in report.balance[split].items():
            if (
                len(report.balance[split]) > 1
                and counts["patients"] >= 2
                and (counts["pos"] == 0 or counts["neg"] == 0)
            ):
                problems.append(
                    Problem(
                        f"({split}, site {site})",
                        "",
                        f"site {site} in {split} has one class only "
                        f"({counts['pos']} HER2+, {counts['neg']} HER2-): a model may learn the site",
                        "warning",
                    )  # fmt: skip
                )
    left_out = [r for r in usable if r.pid not in assigned]
    if left_out:
        report.summary["none"] = _count(left_out)
    if splits and not report.summary["train"]["patients"]:
        problems.append(Problem("(train)", "", "no usable training case"))
    return report


# --------------------------------------------------------------------------------------------- output
def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str], max_width: int = 90) -> str:
    """A plain-text table (columns padded; cells longer than ``max_width`` wrapped)."""
    import textwrap

    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [
        min(max_width, max(len(line) for row in cells for line in [row[i]])) for i in range(len(header))
    ]
    out = []
    for n, row in enumerate(cells):
        wrapped = [textwrap.wrap(c, widths[i]) or [""] for i, c in enumerate(row)]
        for k in range(max(len(w) for w in wrapped)):
            out.append(
                "  ".join(
                    (w[k] if k < len(w) else "").ljust(widths[i]) for i, w in enumerate(wrapped)
                ).rstrip()
            )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_report(report: CheckReport) -> str:
    """The printed report: the problem table, the per-split summary and the class balance per split/site."""
    lines = []
    if report.problems:
        n, e, w = len(report.problems), report.n_errors, report.n_warnings
        lines.append(f"== {n} problem(s): {e} error(s), {w} warning(s) ==")
        lines.append(
            format_table(
                [(p.case, p.file, p.problem, p.severity) for p in report.problems],
                ("case", "file", "problem", "severity"),
            )  # fmt: skip
        )
    else:
        lines.append("== no problem found ==")
    lines.append("")
    lines.append(f"== {report.n_cases} case(s) read, {report.n_checked} checked; per split ==")
    rows = [(s, c["patients"], c["pos"], c["neg"], c["unknown"]) for s, c in report.summary.items()]
    lines.append(format_table(rows, ("split", "patients", "HER2+", "HER2-", "no label")))
    bal = [
        (s, site, c["patients"], c["pos"], c["neg"])
        for s, per in report.balance.items()
        for site, c in per.items()
    ]
    if bal:
        lines.append("")
        lines.append("== class balance per split and site ==")
        lines.append(format_table(bal, ("split", "site", "patients", "HER2+", "HER2-")))
    return "\n".join(lines)
