"""``her2mri-import SRC OUT``: DICOM studies (one folder per patient) -> NIfTI cohort + ``manifest.csv``.

Examples::

    her2mri-import /pacs_export /data/cohort --labels labels.csv --site hospitalA
    her2mri-import /pacs_export /data/cohort --pseudonymize --key-file /secure/key.json
    her2mri-import /pacs_export /data/cohort --phases 0,2,5          # or --phases 90s,420s

The cohort is then read with ``data=manifest data.manifest_csv=OUT/manifest.csv`` (see ``docs/dicom.md``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

SALT_ENV: str = "HER2MRI_PSEUDONYM_SALT"


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``her2mri-import``."""
    p = argparse.ArgumentParser(
        prog="her2mri-import",
        description="Import DCE-MRI DICOM studies (one folder per patient, any file names, nested folders "
        "allowed) into NIfTI volumes (one per acquisition, in time order) and a manifest.csv that "
        "data=manifest reads. No protected health information is written.",
    )
    p.add_argument("src", help="folder with one sub-folder per patient")
    p.add_argument("out", help="output cohort folder (manifest.csv, import_report.json, one folder per case)")
    p.add_argument(
        "--phases",
        default=None,
        help="pre,early,late acquisition indices in time order (e.g. 0,2,5; negative = from the end), or "
        "early[,late] seconds after the first post-contrast acquisition (e.g. 90s or 90s,420s); default: "
        "pre = first, early = nearest 120 s after the first post-contrast, late = last",
    )
    p.add_argument(
        "--pseudonymize",
        action="store_true",
        help="case id = salted hash of the Patient ID; the mapping goes to the key file",
    )
    p.add_argument(
        "--salt",
        default=None,
        help=f"secret salt for --pseudonymize (default: ${SALT_ENV}, else the salt stored in the key "
        "file, else a new random one)",
    )
    p.add_argument(
        "--key-file",
        default=None,
        help="pseudonym key file (JSON; default OUT_pseudonym_key.json beside OUT, never inside it)",
    )
    p.add_argument(
        "--labels",
        default=None,
        help="CSV with patient_id and any of label, split, site, joined on the Patient ID",
    )
    p.add_argument("--site", default=None, help="value of the manifest's site column")
    p.add_argument("--masks", default=None, help="folder the mask pattern is relative to (default SRC)")
    p.add_argument(
        "--mask-pattern",
        default=None,
        help="glob of each case's mask with {study} (folder name) and {patient_id}; default "
        "'{study}/**/*mask*' (NIfTI/NRRD/MHA); '' = no masks",
    )
    p.add_argument("--min-phases", type=int, default=3, help="fewest acquisitions of a DCE set (default 3)")
    p.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="stop at the first bad study (default) or skip it and go on",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 bad data, 2 bad arguments)."""
    from her2mri.data.dicom import default_key_file, import_cohort
    from her2mri.data.errors import DataError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="her2mri-import: %(levelname)s: %(message)s")
    salt = args.salt or os.environ.get(SALT_ENV) or None
    t0 = time.perf_counter()
    try:
        manifest = import_cohort(
            Path(args.src),
            Path(args.out),
            pseudonymize=args.pseudonymize,
            salt=salt,
            key_file=None if args.key_file is None else Path(args.key_file),
            phases=args.phases,
            site=args.site,
            labels_csv=None if args.labels is None else Path(args.labels),
            masks_root=None if args.masks is None else Path(args.masks),
            mask_pattern=args.mask_pattern,
            min_phases=args.min_phases,
            on_error=args.on_error,
            show_progress=not args.quiet,
        )
    except DataError as exc:
        print(f"her2mri-import: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"her2mri-import: error: {exc}", file=sys.stderr)
        return 2
    import pandas as pd

    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    n_mask = int((df["mask"] != "").sum())
    msg = (
        f"imported {len(df)} case(s) ({n_mask} with a mask) in {time.perf_counter() - t0:.1f} s; "
        f"manifest: {manifest}"
    )
    if args.pseudonymize:
        key = Path(args.key_file) if args.key_file else default_key_file(Path(args.out))
        msg += f"; pseudonym key (keep it apart from the data): {key}"
    print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
