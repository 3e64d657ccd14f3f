"""``her2mri-summarize DIR [DIR ...]``: one table of every run and multirun below the given directories.

Writes ``summary.csv`` (one row per experiment and setting: mean, sd and count of every metric),
``summary.md`` (the same as a markdown table of the patient-level metrics, plus the failed runs) and
``runs.csv`` (one row per run) and, for ``sweep=folds`` runs, ``oof_pooled.csv`` (the pooled out-of-fold
AUC with its CI per seed, also a column of summary.md) into ``--out`` (default: the first DIR), and prints
the markdown. Examples::

    her2mri-summarize multirun/
    her2mri-summarize outputs/ multirun/ --out results/ --metrics test/auroc_patient,val/auroc_patient
    her2mri-summarize multirun/eval/2026-01-01_12-00-00 --replicate-keys ckpt_path
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from her2mri.runs.summary import DEFAULT_REPLICATE_KEYS, summarize


def _csv_list(text: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``her2mri-summarize``."""
    p = argparse.ArgumentParser(
        prog="her2mri-summarize",
        description="Collect metrics.json of runs and multiruns: mean ± sd over seeds/folds per experiment "
        "and setting (the overrides that differ between runs), failed runs listed.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="directories searched recursively for runs")
    p.add_argument("--out", default=None, help="output folder (default: the first DIR)")
    p.add_argument(
        "--metrics", type=_csv_list, default=None,
        help="comma-separated metrics shown in summary.md (default: every */auroc_patient and "
        "*/balanced_accuracy_patient; summary.csv always has all)",
    )  # fmt: skip
    p.add_argument(
        "--replicate-keys", type=_csv_list, default=list(DEFAULT_REPLICATE_KEYS),
        help="comma-separated override keys averaged over, never part of a setting "
        f"(default: {','.join(DEFAULT_REPLICATE_KEYS)}; add ckpt_path to average evaluations of several "
        "checkpoints)",
    )  # fmt: skip
    p.add_argument(
        "--oof-ci", choices=("delong", "bootstrap"), default="delong",
        help="CI of the pooled out-of-fold AUC of sweep=folds runs (default delong)",
    )  # fmt: skip
    p.add_argument(
        "--n-boot", type=int, default=2000, help="bootstrap replicates for --oof-ci bootstrap (default 2000)"
    )
    p.add_argument("--quiet", action="store_true", help="do not print the markdown table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 2 bad arguments or nothing found)."""
    args = build_parser().parse_args(argv)
    try:
        if args.n_boot < 1:
            raise ValueError(f"--n-boot must be >= 1; got {args.n_boot}")
        runs, groups, text = summarize(
            args.dirs, args.out, args.replicate_keys, args.metrics, oof_ci=args.oof_ci, n_boot=args.n_boot
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"her2mri-summarize: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    if not args.quiet:
        print(text)  # noqa: T201 - the CLI's output
    out = args.out or args.dirs[0]
    print(  # noqa: T201
        f"{len(runs)} runs in {len(groups)} groups -> {out}/summary.csv, summary.md, runs.csv",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
