"""``her2mri-export CKPT OUT_DIR``: a self-contained, code-free copy of a checkpoint (safetensors + JSON).

The folder holds ``model.safetensors`` (the weights; a format that cannot run code) and ``spec.json`` (model
spec, hyper-parameters, preprocessing ``data_spec``, the checkpoint's ``her2mri`` metadata such as a locked
threshold). ``her2mri-eval ckpt_path=OUT_DIR``, ``her2mri-predict`` and
:func:`her2mri.training.module.load_classifier` accept it. Absolute paths (data root, metadata CSV,
cache) are replaced by ``<redacted>`` unless ``--keep-paths`` is given: an export is made to be shared.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``her2mri-export``."""
    p = argparse.ArgumentParser(
        prog="her2mri-export",
        description="Export a her2mri-train checkpoint to OUT_DIR/model.safetensors + OUT_DIR/spec.json "
        "(self-contained, loads without unpickling).",
    )
    p.add_argument("ckpt", metavar="CKPT", help="a her2mri-train checkpoint (.ckpt) or an earlier export")
    p.add_argument("out_dir", metavar="OUT_DIR", help="export folder (new, empty, or an earlier export)")
    p.add_argument(
        "--keep-paths",
        action="store_true",
        help="keep absolute data paths in spec.json (default: replaced by <redacted>, for sharing)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT_DIR")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    from her2mri.training.export import export_classifier

    try:
        out = export_classifier(args.ckpt, args.out_dir, redact=not args.keep_paths, overwrite=args.overwrite)
    except (FileNotFoundError, ValueError) as err:
        print(f"her2mri-export: {err}", file=sys.stderr)
        return 2
    print(f"her2mri-export: wrote {out}/model.safetensors and {out}/spec.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
