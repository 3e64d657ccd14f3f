"""Time pyradiomics extraction per case: 3-D tumour with and without wavelets.

Cases: the real pyradiomics breast1 NRRD (143-voxel lesion) and a synthetic 256x256x80 volume with an
ellipsoidal tumour (spacing 2 x 0.7 x 0.7 mm), with
her2mri/conf/pyradiomics/mri_3d.yaml and mri_3d_wavelet.yaml.
Usage: python tools/bench_radiomics.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from her2mri.radiomics.cases import RadiomicsCase
from her2mri.radiomics.extract import RegionSpec, extract_case, load_params

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real" / "pyradiomics_breast1" / "data"


def synthetic_case(tmp: Path) -> RadiomicsCase:
    import nibabel as nib

    rng = np.random.default_rng(0)
    shape, sp = (80, 256, 256), (2.0, 0.7, 0.7)
    img = rng.normal(200, 20, shape).astype(np.float32)
    zz, yy, xx = np.indices(shape, sparse=True)
    mask = ((zz - 40) * sp[0] / 10) ** 2 + ((yy - 128) * sp[1] / 12) ** 2 + ((xx - 128) * sp[2] / 9) ** 2 <= 1
    img[mask] += 150
    nib.save(nib.Nifti1Image(img, np.eye(4)), str(tmp / "img.nii"))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), str(tmp / "mask.nii"))
    return RadiomicsCase("synthetic", {"early": tmp / "img.nii"}, tmp / "mask.nii", sp)


def main() -> None:
    """Print seconds per case for each case x parameter set."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cases = [synthetic_case(Path(d))]
        if REAL.is_dir():
            cases.insert(
                0,
                RadiomicsCase(
                    "breast1",
                    {"t1": REAL / "breast1_image.nrrd"},
                    REAL / "breast1_label.nrrd",
                    None,
                    axis_order="xyz",
                ),
            )
        for case in cases:
            for pname in ("mri_3d", "mri_3d_wavelet"):
                params = load_params(ROOT / "her2mri" / "conf" / "pyradiomics" / f"{pname}.yaml")
                extract_case(case, params, RegionSpec())  # warm-up
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    feats = extract_case(case, params, RegionSpec())
                    times.append(time.perf_counter() - t0)
                print(
                    f"{case.pid:10s} {pname:15s} {len(feats):5d} features  {np.median(times):6.2f} s/case "
                    f"(median of {args.repeats})"
                )


if __name__ == "__main__":
    main()
