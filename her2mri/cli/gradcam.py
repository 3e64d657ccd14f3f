"""``her2mri-gradcam RUN_DIR``: Grad-CAM gallery for a finished ``her2mri-train`` run.

Loads the run's best checkpoint (``ckpt_path`` in ``metrics.json``, or ``--ckpt``), rebuilds the run's data
module from ``.hydra/config.yaml`` with the checkpoint's preprocessing, and writes overlays of the fused RGB
slice, the Grad-CAM map (one per head for THDA-ResNet) and the tumour contour to ``RUN_DIR/gradcam/``, where
``her2mri-report`` picks them up as a gallery.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="her2mri-gradcam", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="run directory of her2mri-train (has metrics.json and .hydra/)")
    p.add_argument("--ckpt", type=Path, default=None, help="checkpoint to explain (default: the run's best)")
    p.add_argument("--n", type=int, default=8, help="number of slices (one per patient), default 8")
    p.add_argument("--split", default="test", help="split to draw slices from (train|val|test), default test")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/gradcam)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``her2mri-gradcam``; returns the exit status."""
    args = _parse(argv)
    run = args.run_dir
    cfg_file = run / ".hydra" / "config.yaml"
    metrics_file = run / "metrics.json"
    if not cfg_file.is_file():
        print(f"her2mri-gradcam: {cfg_file}: missing (not a her2mri-train run directory)", file=sys.stderr)
        return 2
    ckpt = args.ckpt
    if ckpt is None:
        if not metrics_file.is_file():
            print(f"her2mri-gradcam: {metrics_file}: missing; pass --ckpt", file=sys.stderr)
            return 2
        ckpt = json.loads(metrics_file.read_text()).get("ckpt_path")
        if not ckpt:
            print(f"her2mri-gradcam: {metrics_file}: no ckpt_path recorded; pass --ckpt", file=sys.stderr)
            return 2
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        print(f"her2mri-gradcam: {ckpt}: checkpoint not found", file=sys.stderr)
        return 2

    from omegaconf import OmegaConf

    from her2mri.data.build import build_datamodule
    from her2mri.training.module import load_classifier
    from her2mri.viz import save_gradcam_gallery

    module = load_classifier(ckpt, map_location="cpu")
    cfg = OmegaConf.load(cfg_file)
    datamodule = build_datamodule(cfg.data, module.hparams.data_spec["preprocess"])
    paths = save_gradcam_gallery(module, datamodule, args.out or run / "gradcam", n=args.n, split=args.split)
    print(f"her2mri-gradcam: wrote {len(paths)} PNGs to {args.out or run / 'gradcam'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
