"""Golden outputs of the deterministic preprocessing, recorded once and compared by tests/test_monai_path.py.

The inputs are rebuilt here on every run, exactly: a synthetic BreastDCEDL cohort (seeded), the real tumour
masks of ``../shared/data/real`` (three I-SPY2 NIfTI masks with integer-formula phases, the pyradiomics
``breast1`` NRRD image and label) and two patients of the real pre-fused RGB slices. Each case is run through
the production entry point (:func:`her2mri.data.prepare.preprocess_record` for files,
:func:`her2mri.data.pipeline.preprocess_case` for in-memory arrays) for every configuration of
:data:`CONFIGS`, and the outputs are stored as exact SHA-256 digests (uint8 and float16 images alike, as
bytes) plus the arrays (images at half resolution) in a compressed ``.npz``.

Record (only when the preprocessing is meant to change, and say so in the CHANGELOG)::

    PYTHONPATH=$PWD .venv/bin/python tests/_golden_preprocess.py
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN = REPO_ROOT / "tests" / "data" / "golden_preprocess.npz"
REAL_DIR = REPO_ROOT.parent / "shared" / "data" / "real"
REAL_MASKS = "breastdcedl_ispy2/ISPY2/data_sample/masks"
REAL_CSV = "breastdcedl_ispy2/ISPY2/metadata_spy2_vis1_for_modeling.csv"
BREAST1 = "pyradiomics_breast1/data"
RGB_INDEX = "fedsubtype_ispy_rgb/subset_index.csv"

_SMALL: dict[str, Any] = {"image_size": 32, "crop_size": 40.0}
#: name -> PreprocessConfig fields (besides _SMALL); together they cover every option of the pipeline
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "adjacent_spread": {"views": "adjacent", "slice_selection": "spread", "n_slices": 3},
    "scales_largest_mm": {
        "views": "scales",
        "slice_selection": "largest",
        "crop_mode": "mm",
        "crop_size": 30.0,
    },
    "phases1_minmax_fg": {
        "views": "phases",
        "phase_channels": 1,
        "normalization": "minmax_volume",
        "stats_mask": "foreground",
    },
    "volume": {"views": "volume", "volume_depth": 5},
    "subtraction_bbox": {
        "channels": "subtraction",
        "normalization": "clip_global_q99",
        "stats_mask": "tumour_bbox",
        "lower_percentile": 1.0,
    },
    "kinetic_slice_f16": {
        "channels": "kinetic",
        "normalization": "clip_global_q98",
        "stats_scope": "slice",
        "cache_dtype": "float16",
    },
    "zscore_all": {"normalization": "zscore", "slice_selection": "all"},
    "cohort": {"stats_scope": "cohort", "cohort_stats": ((0.0, 400.0), (0.0, 700.0), (10.0, 650.0))},
}
#: configurations for pre-fused RGB slices (no normalisation, slice selection or volume views there)
RGB_CONFIGS: tuple[str, ...] = ("default", "adjacent_spread", "scales_largest_mm", "phases1_minmax_fg")


def config(name: str) -> Any:
    """The :class:`PreprocessConfig` of configuration ``name``."""
    from her2mri.data.preprocess_config import PreprocessConfig

    return PreprocessConfig(**{**_SMALL, **CONFIGS[name]})


def formula_phases(mask: np.ndarray) -> np.ndarray:
    """(3, Z, Y, X) uint16 phases from integer formulas (exact on every platform) with an enhancing tumour."""
    z, y, x = np.ogrid[: mask.shape[0], : mask.shape[1], : mask.shape[2]]
    base = (100 + (7 * y + 13 * x + 29 * z) % 97 + (y * x) % 31).astype(np.uint16)
    m = (mask != 0).astype(np.uint16)
    early = base + 2 * ((y + 3 * x) % 17).astype(np.uint16) + 300 * m
    late = base + ((5 * y + x + z) % 23).astype(np.uint16) + 200 * m
    return np.stack(np.broadcast_arrays(base, early, late)).astype(np.uint16)


def synthetic_records(tmp: Path) -> list[Any]:
    """A seeded synthetic cohort (4 patients) and one Duke-like copy without a mask (6-value bbox)."""
    import dataclasses

    from her2mri.data.readers import load_breastdcedl
    from her2mri.data.synth import make_synthetic_cohort

    cohort = make_synthetic_cohort(tmp / "synth", n=4, seed=3, shape=(20, 48, 48), n_times=(6, 7))
    recs = load_breastdcedl(cohort.root, cohort.metadata_csv, nan_split="keep")
    first = recs[0]
    from her2mri.data.io import read_mask

    mask = read_mask(first.mask_path)
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    rows = np.flatnonzero(mask.any(axis=(0, 2)))
    cols = np.flatnonzero(mask.any(axis=(0, 1)))
    duke = dataclasses.replace(
        first,
        pid=first.pid + "-nomask",
        mask_path=None,
        bbox=(int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])),
        extra={**first.extra, "mask_start": int(zs[0]), "mask_end": int(zs[-1])},
    )
    return [*recs, duke]


def real_mask_cases(real_dir: Path) -> Iterator[tuple[str, np.ndarray, np.ndarray, tuple[float, ...]]]:
    """``(name, phases, mask, spacing)`` of the three real I-SPY2 masks (phases: :func:`formula_phases`)."""
    import pandas as pd

    from her2mri.data.io import read_mask

    meta = pd.read_csv(real_dir / REAL_CSV).set_index("pid")
    for f in sorted((real_dir / REAL_MASKS).glob("*_mask.nii.gz")):
        pid = f.name.replace("_spy2_vis1_mask.nii.gz", "")
        mask = read_mask(f)
        row = meta.loc[pid]
        spacing = (float(row["slice_thick"]), float(row["xy_spacing"]), float(row["xy_spacing"]))
        yield pid, formula_phases(mask), mask, spacing


def breast1_record(real_dir: Path) -> Any:
    """The pyradiomics breast1 NRRD image (as all three phases) and its real label, read by world geometry."""
    from her2mri.data.records import CaseRecord

    d = real_dir / BREAST1
    img = d / "breast1_image.nrrd"
    return CaseRecord(
        pid="breast1",
        phase_paths=(img, img, img),
        mask_path=d / "breast1_label.nrrd",
        extra={"axis_order": "affine"},
    )


def rgb_records(real_dir: Path) -> list[Any]:
    """Two patients of the real pre-fused RGB slices (with their tumour boxes)."""
    from her2mri.data.rgb import read_rgb_slices

    recs = read_rgb_slices(real_dir / RGB_INDEX)
    return sorted(recs, key=lambda r: r.pid)[:2]


def _digest(a: np.ndarray | None) -> str:
    if a is None:
        return "none"
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()


def outputs(tmp: Path, real_dir: Path | None) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """``(entry name, arrays)`` for every case x configuration; real-data entries only when ``real_dir``."""
    from her2mri.data.pipeline import preprocess_case
    from her2mri.data.prepare import preprocess_record

    for rec in synthetic_records(tmp):
        for name in CONFIGS:
            yield f"synth/{rec.pid}/{name}", preprocess_record(rec, config(name))
    if real_dir is None:
        return
    for pid, phases, mask, spacing in real_mask_cases(real_dir):
        for name in CONFIGS:
            out = preprocess_case(phases, mask, spacing, config(name), case_id=pid)
            arrays = {"images": out.images, "slice_idx": out.slice_idx}
            if out.masks is not None:
                arrays["masks"] = out.masks
            arrays["crop_window"] = np.asarray(out.crop_window, dtype=np.int64)
            yield f"real/{pid}/{name}", arrays
    rec = breast1_record(real_dir)
    for name in CONFIGS:
        if name == "volume":
            continue  # 21 slices with the tumour on 3: the depth-5 box is covered by the I-SPY2 masks
        yield f"real/breast1/{name}", preprocess_record(rec, config(name))
    for rec in rgb_records(real_dir):
        for name in RGB_CONFIGS:
            yield f"rgb/{rec.pid}/{name}", preprocess_record(rec, config(name))


def flatten(entries: Iterator[tuple[str, dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    """``{entry|key: array}`` plus ``{entry|key|sha256: digest}`` for every output array.

    Images are stored at half resolution (``[..., ::2, ::2]``, to show where a difference is); their digest
    is of the full array, so the comparison stays exact.
    """
    flat: dict[str, np.ndarray] = {}
    for entry, arrays in entries:
        for key, arr in arrays.items():
            arr = np.asarray(arr)
            # images: every second row and column only (the file stays < 1 MB); the digest is of the whole
            flat[f"{entry}|{key}"] = arr[..., ::2, ::2] if key == "images" else arr
            flat[f"{entry}|{key}|sha256"] = np.asarray(_digest(arr))
    return flat


def main() -> int:
    """Record the golden file from the current code (needs ``../shared/data/real``)."""
    import tempfile

    if not REAL_DIR.is_dir():
        print(f"{REAL_DIR} is absent: the golden file needs the real masks", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="her2mri-golden-") as tmp:
        flat = flatten(outputs(Path(tmp), REAL_DIR))
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN, **flat)
    n = sum(not k.endswith("|sha256") for k in flat)
    print(f"{GOLDEN}: {n} arrays, {GOLDEN.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
