"""``her2mri-report RUN_OR_CSV [RUN_OR_CSV ...] --out DIR``: HTML evaluation report of one or more models.

Sources on the same patients are compared paired; sources on disjoint patients (an internal test set and an
external site) are shown side by side as cohorts with unpaired comparisons. Example::

    her2mri-report internal=outputs/eval/int external=outputs/eval/ext --clinical clinical.csv --out report/
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from her2mri.report.build import DEFAULT_MAX_GRADCAM
from her2mri.stats.patient_metrics import DEFAULT_N_BOOT, FALLBACK_THRESHOLD


def _threshold(text: str) -> str | float:
    if text in ("youden", "locked"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be 'locked', 'youden' or a number in [0, 1], got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be 'locked', 'youden' or a number in [0, 1], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``her2mri-report``."""
    p = argparse.ArgumentParser(
        prog="her2mri-report",
        description="Self-contained HTML evaluation report (plus PNGs and report.json with every number) "
        "from "
        "run directories (predictions/{split}_patients.csv) or patient-level predictions CSVs "
        "(pid,label,prob[,site]). Name a model with NAME=PATH.",
    )
    p.add_argument(
        "sources", nargs="+", metavar="RUN_OR_CSV", help="run directory or CSV, optionally NAME=PATH"
    )
    p.add_argument("--out", required=True, help="output folder (report.html, report.json, PNGs)")
    p.add_argument("--split", default="test", help="split evaluated in run directories (default test)")
    p.add_argument(
        "--val-split", default="val",
        help="split whose predictions choose the Youden threshold (default val; 'none' to never use one)",
    )  # fmt: skip
    p.add_argument(
        "--threshold", type=_threshold, default="locked",
        help="'locked' (default: the threshold chosen on validation in training and stored in the run's "
        f"metrics.json; {FALLBACK_THRESHOLD} with a warning when none is stored), 'youden' (chosen on "
        "--val-split, applied to --split) or a fixed probability",
    )  # fmt: skip
    p.add_argument(
        "--n-boot", type=int, default=DEFAULT_N_BOOT, help=f"bootstrap replicates (default {DEFAULT_N_BOOT})"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--conf-level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--title", default="HER2 evaluation report", help="report title")
    p.add_argument(
        "--max-gradcam", type=int, default=DEFAULT_MAX_GRADCAM,
        help=f"Grad-CAM PNGs per run shown in the gallery (default {DEFAULT_MAX_GRADCAM}; 0 = none)",
    )  # fmt: skip
    p.add_argument(
        "--clinical", default=None, metavar="CSV",
        help="clinical variables (pid + columns) for Table 1 and subgroups (age bands, --subgroups)",
    )  # fmt: skip
    p.add_argument("--age-col", default="age", help="clinical column of age in years (default age)")
    p.add_argument(
        "--age-bands", type=_floats, default=(50.0,),
        help="comma-separated age band edges in years (default 50: <50 and >=50)",
    )  # fmt: skip
    p.add_argument(
        "--subgroups", type=_names, default=(),
        help="comma-separated clinical columns whose levels are subgroups (e.g. HR,grade)",
    )  # fmt: skip
    p.add_argument(
        "--features", default=None, metavar="CSV",
        help="per-patient numeric features (pid + columns) added to the site-shortcut probe",
    )  # fmt: skip
    p.add_argument(
        "--cohort-names", type=_names, default=None,
        help="names of the cohorts (sources on disjoint patients) in order of first appearance "
        "(default internal,external)",
    )  # fmt: skip
    p.add_argument(
        "--cohorts", type=_names, default=None,
        help="one cohort label per source, in order (e.g. internal,external): sources with the same label "
        "form a cohort. Default: cohorts are found from shared patient ids",
    )  # fmt: skip
    p.add_argument(
        "--site-probe-warn", type=float, default=0.7,
        help="site-probe AUC from which the report warns of a site shortcut (default 0.7)",
    )  # fmt: skip
    return p


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    values = tuple(x.strip() for x in text.split(",") if x.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    from her2mri.report.build import build_report  # heavy imports after argument parsing

    t0 = time.perf_counter()
    try:
        paths = build_report(
            args.sources,
            args.out,
            split=args.split,
            val_split=None if args.val_split.lower() == "none" else args.val_split,
            threshold=args.threshold,
            n_boot=args.n_boot,
            seed=args.seed,
            conf_level=args.conf_level,
            title=args.title,
            max_gradcam=args.max_gradcam,
            clinical=args.clinical,
            features=args.features,
            age_col=args.age_col,
            age_bands=args.age_bands,
            subgroups=args.subgroups,
            cohort_names=args.cohort_names,
            cohorts=args.cohorts,
            site_probe_warn=args.site_probe_warn,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"her2mri-report: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print(f"her2mri-report: wrote {paths.html} and {paths.json} ({time.perf_counter() - t0:.1f} s)")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
