"""``her2mri-synth OUT --n N --seed S``: write a synthetic BreastDCEDL-style I-SPY2 cohort.

``--format dicom`` (or ``--dicom``) writes the same patients as DICOM studies, one folder per patient, with
their masks and a ``labels.csv``, the input of ``her2mri-import`` (:mod:`her2mri.data.synth_dicom`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from her2mri.data.synth import DEFAULT_SHAPE, make_synthetic_cohort


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``her2mri-synth``."""
    p = argparse.ArgumentParser(
        prog="her2mri-synth",
        description="Write a synthetic DCE-MRI cohort in the BreastDCEDL I-SPY2 layout (dce/, mask/, "
        "metadata.csv) with a planted HER2 kinetic signal (HER2+ washout, HER2- persistent enhancement).",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--n", type=int, default=40, help="number of patients (default 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=list(DEFAULT_SHAPE),
        help=f"volume shape (default {' '.join(map(str, DEFAULT_SHAPE))})",
    )  # fmt: skip
    p.add_argument(
        "--n-times", type=int, nargs="+", default=[6],
        help="acquisitions per patient; several values are drawn per patient (default 6; e.g. 6 7)",
    )  # fmt: skip
    p.add_argument("--pos-fraction", type=float, default=0.4, help="fraction of HER2+ patients (default 0.4)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="test share per class (default 0.2)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation share per class (default 0.2)")
    p.add_argument("--difficulty", type=float, default=1.0, help="class overlap, larger = harder (default 1)")
    p.add_argument("--noise-sd", type=float, default=12.0, help="noise standard deviation (default 12)")
    p.add_argument("--dtype", choices=("uint16", "float64"), default="uint16", help="NIfTI data type")
    p.add_argument("--layout", choices=("folders", "patient"), default="folders", help="folder layout")
    p.add_argument("--no-site-column", action="store_true", help="do not add the 'site' column")
    p.add_argument(
        "--format", choices=("nifti", "dicom"), default="nifti", dest="fmt",
        help="nifti (default: BreastDCEDL layout) or dicom (one DICOM study folder per patient, masks and "
        "labels.csv, for her2mri-import)",
    )  # fmt: skip
    p.add_argument("--dicom", action="store_const", const="dicom", dest="fmt", help="same as --format dicom")
    p.add_argument(
        "--dicom-layout", choices=("series", "temporal", "times", "enhanced", "mixed"), default="series",
        help="DICOM layout: one series per acquisition (default), one series with Temporal Position "
        "Identifiers, one series told apart by times only, one Enhanced MR multi-frame file, or the four in "
        "turn",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    kwargs = dict(
        n=args.n,
        seed=args.seed,
        shape=tuple(args.shape),
        n_times=args.n_times[0] if len(args.n_times) == 1 else tuple(args.n_times),
        pos_fraction=args.pos_fraction,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        difficulty=args.difficulty,
        noise_sd=args.noise_sd,
        site_column=not args.no_site_column,
        show_progress=not args.quiet,
    )
    try:
        if args.fmt == "dicom":
            from her2mri.data.synth_dicom import make_synthetic_dicom_cohort

            cohort = make_synthetic_dicom_cohort(args.out, dicom_layout=args.dicom_layout, **kwargs)
        else:
            cohort = make_synthetic_cohort(args.out, dtype=args.dtype, layout=args.layout, **kwargs)
    except ValueError as exc:
        print(f"her2mri-synth: error: {exc}", file=sys.stderr)
        return 2
    n_pos = sum(cohort.labels)
    print(
        f"wrote {len(cohort.pids)} patients ({n_pos} HER2+) to {cohort.root} "
        f"in {time.perf_counter() - t0:.1f} s; "
        f"{'labels' if args.fmt == 'dicom' else 'metadata'}: {cohort.metadata_csv}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
