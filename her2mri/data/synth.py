"""Synthetic DCE-MRI cohort in exactly the BreastDCEDL I-SPY2 layout, with a planted HER2 kinetic signal.

Layout written under ``out`` (as the BreastDCEDL I-SPY2 release)::

    dce/{pid}_spy2_vis1_dce_aqc_{k}.nii.gz    one 3-D volume per acquisition k = 0..n_times-1
    mask/{pid}_spy2_vis1_mask.nii.gz          binary tumour mask (uint8 {0, 1})
    metadata.csv                              the 29 combined BreastDCEDL columns (+ ``site``)
    synth_truth.csv                           the planted per-patient parameters (for checks and demos)

Like the real release: arrays are (z, y, x), values are integers (uint16 by default), the affine is identity
and the header spacing (1 mm) is wrong on purpose; the real spacing is in ``xy_spacing``/``slice_thick``.

Signal: the relative enhancement of the tumour follows ``A * (1 - exp(-t / tau)) * exp(-w * t)``. HER2+
tumours are drawn with a faster uptake (smaller ``tau``), a higher peak and washout (``w > 0``: late lower
than early); HER2- tumours with slower uptake and persistent or plateau enhancement (``w <= 0``). The
distributions overlap, so a patient-level kinetic feature (late/early enhancement ratio) separates the
classes well but not perfectly (AUC about 0.85-0.9 over many patients).

Nuisances: a site-dependent scanner gain (sites A/B/C: x0.6, x1.0, x1.6, plus an offset), bright enhancing
vessels, an enhancing heart in the chest, background parenchymal enhancement of the fibroglandular tissue,
Gaussian noise (magnitude in air), and two breast-shaped body regions over a dark background.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

METADATA_COLUMNS: tuple[str, ...] = (
    "pid", "pCR", "n_xy", "n_z", "n_times", "pre", "post_early", "post_late", "slice_thick", "xy_spacing",
    "mask_start", "mask_end", "sraw", "eraw", "scol", "ecol", "tum_vol", "age", "menopause", "race_white",
    "race_black", "HR", "HER2", "HR_HER2_STATUS", "TripleNeg", "HER2pos", "HRposHER2neg", "dataset", "test",
)  # fmt: skip
SITES: dict[str, tuple[float, float]] = {"A": (0.6, 20.0), "B": (1.0, 0.0), "C": (1.6, 60.0)}
DEFAULT_SHAPE: tuple[int, int, int] = (32, 128, 128)
FRAME_MINUTES: float = 1.4  # time between acquisitions


@dataclass
class SyntheticCohort:
    """What :func:`make_synthetic_cohort` wrote.

    Args:
        root: the cohort folder.
        metadata_csv: the metadata CSV.
        truth_csv: the planted per-patient parameters.
        pids: patient ids in CSV order.
        labels: HER2pos per pid, same order.
    """

    root: Path
    metadata_csv: Path
    truth_csv: Path
    pids: list[str]
    labels: list[int]


def _curve(t: np.ndarray, amp: float, tau: float, w: float) -> np.ndarray:
    """Relative enhancement ``amp * (1 - exp(-t/tau)) * exp(-w t)`` at times ``t`` (minutes)."""
    return amp * (1.0 - np.exp(-t / tau)) * np.exp(-w * t)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], cell: int) -> np.ndarray:
    """Smooth random field in about [-1, 1]: coarse Gaussian noise upsampled linearly (fast)."""
    from scipy.ndimage import zoom

    coarse = tuple(max(2, math.ceil(s / cell) + 1) for s in shape)
    noise = rng.standard_normal(coarse).astype(np.float32)
    up = zoom(noise, [s / c for s, c in zip(shape, coarse, strict=True)], order=1, mode="nearest")
    up = up[: shape[0], : shape[1], : shape[2]]
    return np.clip(up / 1.5, -1.0, 1.0).astype(np.float32)


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _split_labels(
    rng: np.random.Generator, labels: np.ndarray, test_frac: float, val_frac: float
) -> np.ndarray:
    """Stratified split codes per patient: 0 train, 1 test, 2 val."""
    codes = np.zeros(len(labels), dtype=int)
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n = len(idx)
        n_test = round(test_frac * n) if n >= 3 else 0
        n_val = round(val_frac * n) if n >= 3 else 0
        n_test, n_val = max(n_test, 1 if n >= 3 else 0), max(n_val, 1 if n >= 3 else 0)
        codes[idx[:n_test]] = 1
        codes[idx[n_test : n_test + n_val]] = 2
    return codes


def _kinetics(rng: np.random.Generator, her2: int, difficulty: float) -> tuple[float, float, float]:
    """Draw (amp, tau, w) of the tumour curve; ``difficulty`` widens the class distributions."""
    s = difficulty
    if her2:
        amp = rng.normal(1.5, 0.35 * s)
        tau = rng.uniform(0.35, 0.9)
        w = rng.normal(0.08, 0.065 * s)
    else:
        amp = rng.normal(1.25, 0.35 * s)
        tau = rng.uniform(0.6, 1.6)
        w = rng.normal(-0.005, 0.065 * s)
    return float(max(amp, 0.3)), float(tau), float(w)


def _make_patient(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    n_times: int,
    her2: int,
    gain: float,
    offset: float,
    noise_sd: float,
    difficulty: float,
    n_vessels: tuple[int, int] = (2, 5),
) -> tuple[list[np.ndarray], np.ndarray, dict[str, float]]:
    """One patient: a list of ``n_times`` uint16 volumes, the uint8 mask, and the planted truth."""
    nz, ny, nx = shape
    zz = np.linspace(-1.0, 1.0, nz, dtype=np.float32)[:, None, None]
    yy = np.linspace(0.0, 1.0, ny, dtype=np.float32)[None, :, None]
    xx = np.linspace(0.0, 1.0, nx, dtype=np.float32)[None, None, :]

    # body: two breasts (anterior = small rows) and the chest (posterior), shrinking towards the z ends
    zscale = np.sqrt(np.clip(1.0 - (zz / 1.15) ** 2, 0.05, 1.0))
    ry, rx = rng.uniform(0.28, 0.38), rng.uniform(0.17, 0.22)
    breast_l = _ellipse(yy, xx, 0.62, 0.28, ry * zscale, rx * zscale)
    breast_r = _ellipse(yy, xx, 0.62, 0.72, ry * zscale, rx * zscale)
    chest = _ellipse(yy, xx, 1.05, 0.5, 0.42, 0.5)
    breast = (breast_l | breast_r) & (yy < 0.8)
    body = breast | chest
    heart = _ellipse(yy, xx, 1.0, 0.5, 0.14, 0.16) & (np.abs(zz) < 0.6)

    fgt_field = _smooth_field(rng, shape, cell=max(4, nx // 16))
    density = rng.uniform(-0.2, 0.4)
    fgt = breast & (fgt_field > density)
    s0 = np.zeros(shape, dtype=np.float32)
    s0[body] = 320.0  # fat / chest wall (fat-suppressed T1: mid grey)
    s0[fgt] = 520.0
    s0[chest & ~breast] = 420.0
    s0 *= 1.0 + 0.08 * _smooth_field(rng, shape, cell=max(8, nx // 6))  # coil shading
    s0[heart] = 380.0

    # tumour: irregular ellipsoid inside one breast
    side = 0.28 if rng.random() < 0.5 else 0.72
    cz = rng.uniform(-0.3, 0.3)
    cy, cx = rng.uniform(0.45, 0.62), side + rng.uniform(-0.05, 0.05)
    r_in = rng.uniform(0.035, 0.075)  # fraction of the field of view
    r_z = max(r_in * nx / nz * rng.uniform(0.8, 1.3), 2.5 / nz)
    dist = (
        ((zz - cz) / (2 * r_z)) ** 2
        + ((yy - cy) / r_in) ** 2
        + ((xx - cx) / (r_in * rng.uniform(0.8, 1.25))) ** 2
    )
    # tumour-local random fields: only the box around the tumour needs them
    near = np.argwhere(dist <= 2.0)
    lo, hi = near.min(axis=0), near.max(axis=0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    sub = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    rough = np.full(shape, 10.0, dtype=np.float32)
    rough[box] = _smooth_field(rng, sub, cell=max(2, nx // 32))
    tumour = (dist + 0.35 * rough <= 1.0) & body
    if tumour.sum() < 8:  # tiny volumes: keep at least a small blob
        tumour = (dist <= 1.5) & body
    amp, tau, w = _kinetics(rng, her2, difficulty)
    hetero = np.ones(shape, dtype=np.float32)
    hetero[box] = 0.75 + 0.25 * _smooth_field(rng, sub, cell=max(2, nx // 40))  # per-voxel variability
    s0[tumour] = 480.0

    # vessels: tubes wandering along z
    vessels = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(n_vessels[0], n_vessels[1]))):
        vy, vx = rng.uniform(0.4, 0.75), rng.choice([0.2, 0.36, 0.64, 0.8]) + rng.uniform(-0.03, 0.03)
        amp_y, amp_x, ph = rng.uniform(0.01, 0.04), rng.uniform(0.01, 0.04), rng.uniform(0, 2 * np.pi)
        path_y = vy + amp_y * np.sin(2.5 * zz + ph)
        path_x = vx + amp_x * np.cos(2.0 * zz + ph)
        rad = rng.uniform(0.6, 1.3) / nx
        vessels |= (((yy - path_y) ** 2 + (xx - path_x) ** 2) <= rad**2 * 1.2) & breast
    s0[vessels] = 300.0

    bpe_amp = rng.uniform(0.03, 0.35)
    t = np.arange(n_times, dtype=np.float64) * FRAME_MINUTES
    rim = np.clip(0.7 + 0.5 * dist, 0.7, 1.2)  # the rim enhances more than the core
    # (flat voxel indices, scanner-scaled baseline, enhancement curve) of each enhancing structure
    parts = [
        (np.flatnonzero(tumour), (s0 * hetero * rim)[tumour], _curve(t, amp, tau, w)),
        (np.flatnonzero(fgt & ~tumour), s0[fgt & ~tumour], _curve(t, bpe_amp, 3.0, -0.02)),
        (np.flatnonzero(vessels), s0[vessels], _curve(t, 2.6, 0.25, 0.06)),
        (np.flatnonzero(heart), s0[heart], _curve(t, 3.0, 0.2, 0.12)),
    ]
    base = (gain * s0 + offset * body).astype(np.float32)
    vols: list[np.ndarray] = []
    for k in range(n_times):
        vol = base + rng.standard_normal(shape, dtype=np.float32) * np.float32(noise_sd)
        flat = vol.reshape(-1)
        for idx, vals, curve in parts:
            flat[idx] += (gain * curve[k]) * vals
        np.abs(vol, out=vol)  # magnitude image: Rician-like noise floor in air
        np.rint(vol, out=vol)
        np.clip(vol, 0, 65535, out=vol)
        vols.append(vol.astype(np.uint16))
    truth = {"amp": amp, "tau": tau, "w": w, "bpe_amp": bpe_amp, "tumour_voxels": float(tumour.sum())}
    return vols, tumour.astype(np.uint8), truth


def _save_nifti(arr: np.ndarray, path: Path, dtype: str) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(arr.astype(dtype), affine=np.eye(4))
    img.header.set_zooms((1.0, 1.0, 1.0))  # wrong on purpose, as in the real release
    nib.save(img, str(path))


def make_synthetic_cohort(
    out: str | Path,
    n: int = 40,
    seed: int = 0,
    shape: Sequence[int] = DEFAULT_SHAPE,
    n_times: int | Sequence[int] = 6,
    pos_fraction: float = 0.4,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
    difficulty: float = 1.0,
    noise_sd: float = 12.0,
    dtype: str = "uint16",
    layout: str = "folders",
    site_column: bool = True,
    show_progress: bool = False,
    sites: Mapping[str, Sequence[float]] | None = None,
    n_vessels: Sequence[int] = (2, 5),
) -> SyntheticCohort:
    """Write a synthetic BreastDCEDL-style I-SPY2 cohort with a planted HER2 kinetic signal.

    Deterministic per ``seed``: the same arguments write the same voxels and CSV.

    Args:
        out: output folder (created; existing files of the same names are overwritten).
        n: number of patients, >= 2.
        seed: random seed.
        shape: (Z, Y, X) of every volume; default (32, 128, 128) keeps CPU training fast.
        n_times: acquisitions per patient: an int (6 -> phases 0, 2, 5) or a sequence to draw from per patient
            (e.g. (6, 7): phases (0, 2, 5) or (0, 2, 6), as in I-SPY2).
        pos_fraction: fraction of HER2+ patients, in (0, 1) (default 0.4; I-SPY2 is about 0.25).
        test_fraction: fraction per class with ``test`` = 1.
        val_fraction: fraction per class with ``test`` = 2.
        difficulty: width of the class-conditional kinetic distributions (1 = default; larger = harder).
        noise_sd: Gaussian noise standard deviation before the scanner gain.
        dtype: stored NIfTI data type, ``uint16`` (default) or ``float64`` (as the real release stores it).
        layout: ``folders`` (``dce/`` and ``mask/`` side by side) or ``patient`` (one folder per patient).
        site_column: add a ``site`` column (A/B/C) after the 29 BreastDCEDL columns.
        show_progress: show a tqdm progress bar.
        sites: scanner sites ``{name: (gain, offset)}`` drawn uniformly per patient; None = :data:`SITES`
            (A/B/C). Held-out and external cohorts use their own gains (``tools/heldout_benchmark.py``).
        n_vessels: ``(low, high)``: each patient gets ``low`` to ``high - 1`` enhancing vessels.

    Returns:
        A :class:`SyntheticCohort`.

    Example:
        >>> cohort = make_synthetic_cohort("/tmp/synth", n=4, seed=0, shape=(8, 32, 32))  # doctest: +SKIP
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n={n!r} must be an integer >= 2")
    shape_t = tuple(int(s) for s in shape)
    if len(shape_t) != 3 or shape_t[0] < 4 or min(shape_t[1:]) < 16:
        raise ValueError(f"shape={tuple(shape)!r} must be (Z, Y, X) with Z >= 4 and Y, X >= 16")
    times = [int(n_times)] if isinstance(n_times, (int, np.integer)) else [int(v) for v in n_times]
    if not times or min(times) < 3:
        raise ValueError(f"n_times={n_times!r} must be >= 3 (or a sequence of such)")
    if not 0.0 < pos_fraction < 1.0:
        raise ValueError(f"pos_fraction={pos_fraction!r} must be in (0, 1)")
    if not (0 <= test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise ValueError(f"test_fraction={test_fraction!r}, val_fraction={val_fraction!r} must sum below 1")
    if dtype not in ("uint16", "float64"):
        raise ValueError(f"dtype={dtype!r} must be 'uint16' or 'float64'")
    if layout not in ("folders", "patient"):
        raise ValueError(f"layout={layout!r} must be 'folders' or 'patient'")
    if difficulty <= 0:
        raise ValueError(f"difficulty={difficulty!r} must be > 0")

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_pos = min(max(1, round(pos_fraction * n)), n - 1)
    labels = rng.permutation(np.array([1] * n_pos + [0] * (n - n_pos)))
    split_codes = _split_labels(rng, labels, test_fraction, val_fraction)
    site_table = {str(k): (float(v[0]), float(v[1])) for k, v in (sites or SITES).items()}
    if not site_table or any(g <= 0 for g, _ in site_table.values()):
        raise ValueError(f"sites={sites!r} must map site names to (gain > 0, offset)")
    vessels_range = tuple(int(v) for v in n_vessels)
    if len(vessels_range) != 2 or not 0 <= vessels_range[0] < vessels_range[1]:
        raise ValueError(f"n_vessels={n_vessels!r} must be (low, high) with 0 <= low < high")
    site_names = list(site_table)
    site_of = [site_names[i] for i in rng.integers(0, len(site_names), size=n)]

    rows, truths = [], []
    iterator = range(n)
    if show_progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="synthesising", unit="patient")
    for i in iterator:
        prng = np.random.default_rng([seed, i, 7919])
        pid = f"SYN2-{i + 1:06d}"
        nt = int(times[int(prng.integers(0, len(times)))])
        her2 = int(labels[i])
        gain, offset = site_table[site_of[i]]
        vols, mask, truth = _make_patient(
            prng, shape_t, nt, her2, gain, offset, noise_sd, difficulty, vessels_range
        )
        if layout == "folders":
            dce_dir, mask_dir = root / "dce", root / "mask"
        else:
            dce_dir = mask_dir = root / pid
        dce_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        for k, vol in enumerate(vols):
            _save_nifti(vol, dce_dir / f"{pid}_spy2_vis1_dce_aqc_{k}.nii.gz", dtype)
        _save_nifti(mask, mask_dir / f"{pid}_spy2_vis1_mask.nii.gz", "uint8")

        zs, rs, cs = np.nonzero(mask)
        xy = float(np.round(prng.uniform(0.6, 0.8), 4))
        thick = float(prng.choice([1.5, 2.0, 2.5]))
        hr = int(prng.random() < (0.5 if her2 else 0.65))
        status = "HER2pos" if her2 else ("HRposHER2neg" if hr else "TripleNeg")
        rows.append(
            {
                "pid": pid,
                "pCR": int(prng.random() < (0.55 if her2 else 0.25)),
                "n_xy": shape_t[1],
                "n_z": shape_t[0],
                "n_times": nt,
                "pre": 0,
                "post_early": 2,
                "post_late": nt - 1,
                "slice_thick": thick,
                "xy_spacing": xy,
                "mask_start": int(zs.min()),
                "mask_end": int(zs.max()),
                "sraw": int(rs.min()),
                "eraw": int(rs.max()),
                "scol": int(cs.min()),
                "ecol": int(cs.max()),
                "tum_vol": float(mask.sum() * xy * xy * thick / 1000.0),
                "age": int(prng.integers(28, 75)),
                "menopause": int(prng.random() < 0.5),
                "race_white": int(prng.random() < 0.75),
                "race_black": 0,
                "HR": hr,
                "HER2": her2,
                "HR_HER2_STATUS": status,
                "TripleNeg": int(status == "TripleNeg"),
                "HER2pos": her2,
                "HRposHER2neg": int(status == "HRposHER2neg"),
                "dataset": "spy2",
                "test": int(split_codes[i]),
            }
        )
        rows[-1]["race_black"] = int(not rows[-1]["race_white"] and prng.random() < 0.6)
        if site_column:
            rows[-1]["site"] = site_of[i]
        truths.append({"pid": pid, "HER2pos": her2, "site": site_of[i], "n_times": nt, **truth})

    meta = pd.DataFrame(rows)
    csv = root / "metadata.csv"
    meta.to_csv(csv, index=False)
    truth_csv = root / "synth_truth.csv"
    pd.DataFrame(truths).to_csv(truth_csv, index=False)
    return SyntheticCohort(
        root=root,
        metadata_csv=csv,
        truth_csv=truth_csv,
        pids=list(meta["pid"]),
        labels=[int(v) for v in meta["HER2pos"]],
    )
