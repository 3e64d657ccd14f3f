"""pyradiomics feature extraction over a cohort: tumour + peritumoral rings, 2-D or 3-D, parallel and cached.

pyradiomics is an optional extra: ``pip install her2mri[radiomics]`` (``pyradiomics-bhklab==3.1.4`` and
``scikit-image``). Without it, :func:`require_pyradiomics` raises an ``ImportError`` saying so.

Features are named ``{image}__{region}__{pyradiomics name}``, e.g. ``early__ring5mm__original_glcm_Contrast``;
features of a second extraction for the ICC filter are prefixed ``retest__``. 2-D images are extracted as true
2-D SimpleITK images (``shape2D``, 2-D texture matrices), never as a one-slice volume.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2mri.data.errors import DataError
from her2mri.extras import install_hint, require
from her2mri.radiomics.cases import RadiomicsCase, read_case_arrays
from her2mri.radiomics.rings import distance_to_mask, ring_regions

INSTALL_HINT = install_hint("radiomics")
FEATURE_VERSION = "1"
RETEST_PREFIX = "retest__"
SEP = "__"
MASK_VARIANTS = ("none", "mask2", "erode", "dilate")


def require_pyradiomics() -> Any:
    """Import and return the ``radiomics`` module, or raise ImportError with the install command."""
    radiomics = require("radiomics", "radiomics feature extraction")
    require("radiomics.featureextractor", "radiomics feature extraction")
    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    # pykwalify validates the parameter file once per case and logs "validation.valid" at INFO each time
    logging.getLogger("pykwalify").setLevel(logging.WARNING)
    return radiomics


def load_params(params: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Load a pyradiomics parameter YAML, or copy a dict (``setting``, ``imageType``, ``featureClass``)."""
    if isinstance(params, Mapping):
        return json.loads(json.dumps(dict(params)))  # deep, plain copy (also turns OmegaConf into dicts)
    import yaml

    path = Path(params)
    if not path.is_file():
        raise ValueError(f"params={str(params)!r}: pyradiomics parameter file not found")
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise DataError(f"{path}: a pyradiomics parameter file must be a mapping, got {type(data).__name__}")
    return data


def _params_for_dim(params: dict[str, Any], ndim: int) -> dict[str, Any]:
    """Adapt shape classes to the image dimension: ``shape`` for 3-D, ``shape2D`` for 2-D images."""
    p = json.loads(json.dumps(params))
    fc = p.get("featureClass")
    if isinstance(fc, dict):
        if ndim == 2 and "shape" in fc:
            fc["shape2D"] = fc.pop("shape")
        if ndim == 3 and "shape2D" in fc and not p.get("setting", {}).get("force2D", False):
            fc.pop("shape2D")
    if ndim == 2:
        p.setdefault("setting", {})
        p["setting"].pop("force2D", None)  # a true 2-D image needs no force2D
    return p


@dataclass(frozen=True)
class RegionSpec:
    """Which regions to extract: the tumour and/or rings of the given widths (mm), clipped to ``clip``.

    Args:
        tumour: extract the tumour region.
        rings_mm: ring widths in mm (each ring is ``0 < d <= w`` mm outside the tumour).
        clip: ``image`` (clip to the field of view) or ``breast_mask`` (clip to the case's breast mask).
    """

    tumour: bool = True
    rings_mm: tuple[float, ...] = ()
    clip: str = "image"

    def __post_init__(self) -> None:
        if self.clip not in ("image", "breast_mask"):
            raise ValueError(f"clip={self.clip!r}: expected 'image' or 'breast_mask'")
        if not self.tumour and not self.rings_mm:
            raise ValueError("RegionSpec: neither the tumour nor any ring is selected")


def perturb_mask(mask: np.ndarray, spacing: Sequence[float], mode: str, mm: float = 1.0) -> np.ndarray:
    """Erode or dilate a mask by ``mm`` millimetres (spacing-exact), for a second (retest) extraction.

    An erosion that would leave fewer than max(10, 25 %) of the voxels, or a region less than 2 voxels wide
    in two axes, is replaced by a dilation of the same distance, with a warning (small tumours).
    """
    mask = np.asarray(mask, bool)
    if mode == "dilate":
        return distance_to_mask(mask, spacing) <= mm
    if mode == "erode":
        from scipy import ndimage

        inner = ndimage.distance_transform_edt(mask, sampling=tuple(float(s) for s in spacing)) > mm
        extent = [int(np.ptp(ix)) + 1 for ix in np.nonzero(inner)] if inner.any() else [0]
        if inner.sum() < max(10, 0.25 * mask.sum()) or sorted(extent)[-2:][0] < 2:
            warnings.warn(
                f"erosion by {mm} mm leaves {int(inner.sum())} of {int(mask.sum())} voxels (too small or "
                "flat for radiomics); the mask is dilated by the same distance instead",
                stacklevel=2,
            )
            return distance_to_mask(mask, spacing) <= mm
        return inner
    raise ValueError(f"mode={mode!r}: expected 'erode' or 'dilate'")


def _to_sitk(arr: np.ndarray, spacing: Sequence[float]) -> Any:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing)[::-1])  # SimpleITK: (x, y, z)
    return img


def extract_regions(
    image: np.ndarray,
    regions: Mapping[str, np.ndarray],
    spacing: Sequence[float],
    params: Mapping[str, Any],
    crop_pad: int | None = 8,
) -> dict[str, float]:
    """Features (pyradiomics) of one image in each region, keyed ``{region}__{feature}``.

    With ``normalize: true`` the whole image is normalised first, exactly as pyradiomics does
    (``imageoperations.normalizeImage``). Then the image and the regions are cropped to the regions' bounding
    box plus ``crop_pad`` voxels per side. Features of the Original image equal those of an uncropped
    extraction; filtered images (wavelet, LoG) differ only by boundary effects farther than ``crop_pad``
    voxels from the region. Cropping makes extraction on large volumes much faster (docs/radiomics.md).

    Args:
        image: 2-D (H, W) or 3-D (Z, Y, X) array.
        regions: region name -> boolean mask of the image's shape.
        spacing: pixel/voxel spacing in mm, array axis order.
        params: pyradiomics parameters (``setting`` / ``imageType`` / ``featureClass``).
        crop_pad: voxels kept around the regions; None: no cropping.
    """
    require_pyradiomics()
    import SimpleITK as sitk
    from radiomics import featureextractor, imageoperations

    if image.ndim not in (2, 3):
        raise ValueError(f"image has {image.ndim} dimensions: expected a 2-D or 3-D array")
    if crop_pad is not None and crop_pad < 0:
        raise ValueError(f"crop_pad={crop_pad}: must be >= 0 or None")
    p = _params_for_dim(dict(params), image.ndim)
    settings = p.setdefault("setting", {}) or {}
    arr = np.ascontiguousarray(image, dtype=np.float32)
    if settings.get("normalize", False):
        norm = imageoperations.normalizeImage(_to_sitk(arr, spacing), **settings)
        arr = sitk.GetArrayFromImage(norm)
        settings["normalize"] = False
        p["setting"] = settings
    regs = {k: np.asarray(v, bool) for k, v in regions.items()}
    if crop_pad is not None and regs:
        union = np.logical_or.reduce(list(regs.values()))
        if union.any():
            idx = np.nonzero(union)
            sl = tuple(
                slice(max(0, int(i.min()) - crop_pad), min(n, int(i.max()) + 1 + crop_pad))
                for i, n in zip(idx, union.shape, strict=True)
            )
            arr = np.ascontiguousarray(arr[sl])
            regs = {k: v[sl] for k, v in regs.items()}
    extractor = featureextractor.RadiomicsFeatureExtractor(p)
    sitk_img = _to_sitk(arr, spacing)
    out: dict[str, float] = {}
    for name, region in regs.items():
        sitk_mask = _to_sitk(np.ascontiguousarray(region, dtype=np.uint8), spacing)
        feats = extractor.execute(sitk_img, sitk_mask, label=1)
        for k, v in feats.items():
            if k.startswith("diagnostics_"):
                continue
            out[f"{name}{SEP}{k}"] = float(np.asarray(v))
    return out


def extract_case(
    case: RadiomicsCase,
    params: Mapping[str, Any],
    regions: RegionSpec = RegionSpec(),
    mask_variant: str = "none",
    perturb_mm: float = 1.0,
    crop_pad: int | None = 8,
) -> dict[str, float]:
    """Features of one case: every image x every region.

    Args:
        case: the case.
        params: pyradiomics parameters.
        regions: tumour and rings to extract.
        mask_variant: ``none`` (the tumour mask), ``mask2`` (second reader's mask), ``erode`` / ``dilate``
            (the tumour mask perturbed by ``perturb_mm`` mm) -- the latter three for the ICC retest.
        perturb_mm: erosion/dilation distance in mm.
        crop_pad: voxels kept around the regions (see :func:`extract_regions`); None: no cropping.

    Raises:
        DataError: naming the case and region when a region is empty or extraction fails.
    """
    if mask_variant not in MASK_VARIANTS:
        raise ValueError(f"mask_variant={mask_variant!r}: expected one of {MASK_VARIANTS}")
    images, mask, spacing = read_case_arrays(case, "mask2" if mask_variant == "mask2" else "mask")
    if mask_variant in ("erode", "dilate"):
        mask = perturb_mask(mask, spacing, mask_variant, perturb_mm)
    within = None
    if regions.clip == "breast_mask":
        _, within, _ = read_case_arrays(case, "breast_mask")
    regs = ring_regions(mask, spacing, regions.rings_mm, within=within)
    if not regions.tumour:
        regs.pop("tumour")
    for name, r in regs.items():
        if not r.any():
            raise DataError(
                f"case {case.pid}: region {name!r} is empty (ring clipped away by the image/breast)"
            )
    out: dict[str, float] = {}
    for img_name, img in images.items():
        try:
            feats = extract_regions(img, regs, spacing, params, crop_pad)
        except (ValueError, RuntimeError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(
                f"case {case.pid}: pyradiomics failed on image {case.images[img_name]}: {exc}"
            ) from exc
        out.update({f"{img_name}{SEP}{k}": v for k, v in feats.items()})
    return out


def cache_key(
    cases: Sequence[RadiomicsCase],
    params: Mapping[str, Any],
    regions: RegionSpec,
    mask_variant: str,
    perturb_mm: float,
    crop_pad: int | None = 8,
) -> dict[str, Any]:
    """What the cached feature table depends on: the settings and every source file and spacing.

    joblib.Memory hashes this (small) dict as the cache key of :func:`extract_cohort`: the pyradiomics
    parameters, the regions, the mask variant, the pyradiomics and feature versions, and per case its pid,
    spacing, axis order, image names and the resolved path, size and mtime of every file it reads.
    """
    radiomics = require_pyradiomics()
    settings = {
        "params": json.loads(json.dumps(params, sort_keys=True, default=str)),
        "regions": [regions.tumour, list(regions.rings_mm), regions.clip],
        "mask_variant": mask_variant,
        "perturb_mm": perturb_mm,
        "crop_pad": crop_pad,
        "pyradiomics": getattr(radiomics, "__version__", "?"),
        "feature_version": FEATURE_VERSION,
    }
    files = []
    for c in cases:
        ident = [c.pid, None if c.spacing is None else list(c.spacing), c.axis_order, sorted(c.images)]
        for f in c.source_files():
            st = os.stat(f) if Path(f).exists() else None
            ident.append([str(Path(f).resolve()), st.st_size if st else -1, st.st_mtime_ns if st else -1])
        files.append(ident)
    return {"settings": settings, "cases": files}


def _worker(
    case: RadiomicsCase,
    params: dict,
    regions: RegionSpec,
    mask_variant: str,
    perturb_mm: float,
    crop_pad: int | None,
) -> dict:
    require_pyradiomics()
    return extract_case(case, params, regions, mask_variant, perturb_mm, crop_pad)


BACKENDS = (None, "loky", "multiprocessing", "dask", "ray")
"""Joblib backends for :func:`extract_cohort`; not ``threading``: pyradiomics is not thread-safe."""


@contextmanager
def parallel_backend(backend: str | None = None, scheduler: str | None = None) -> Iterator[None]:
    """The joblib backend of the extraction over cases: local processes, a Dask cluster or a Ray cluster.

    Cases are independent, so extraction scales out with joblib's pluggable backends and nothing else
    changes: ``dask`` sends each case to a ``distributed`` worker (a ``dask-jobqueue`` ``SLURMCluster`` or
    ``dask-scheduler`` + ``dask-worker`` on the nodes; the images must be readable there at the same path),
    ``ray`` to a Ray cluster. A client this function starts is closed afterwards.

    Args:
        backend: see :func:`extract_cohort`.
        scheduler: see :func:`extract_cohort`.
    """
    from joblib import parallel_config

    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {BACKENDS}")
    if backend is None:
        yield
        return
    owned = None
    if backend == "dask":
        try:
            from distributed import Client, get_client
        except ImportError as exc:
            raise ImportError(
                'backend="dask" needs dask.distributed: pip install "her2mri[distributed]"'
            ) from exc
        if scheduler is not None:
            owned = Client(scheduler)
        else:
            try:
                get_client()
            except ValueError:
                # one thread per worker process: pyradiomics is not thread-safe
                owned = Client(processes=True, threads_per_worker=1, dashboard_address=None)
    elif backend == "ray":
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError as exc:
            raise ImportError('backend="ray" needs Ray: pip install "ray[default]"') from exc
        register_ray()
        if not ray.is_initialized():
            ray.init(address=scheduler)
    try:
        with parallel_config(backend=backend):
            yield
    finally:
        if owned is not None:
            owned.close()


def _extract_table(
    key: dict[str, Any],
    cases: Sequence[RadiomicsCase],
    p: dict[str, Any],
    regions: RegionSpec,
    mask_variant: str,
    perturb_mm: float,
    crop_pad: int | None,
    n_jobs: int,
    progress: bool,
    backend: str | None,
    scheduler: str | None,
) -> pd.DataFrame:
    """The feature table (:func:`extract_cohort` without the cache); ``key`` is what joblib.Memory hashes."""
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    require_pyradiomics()
    jobs = (delayed(_worker)(c, p, regions, mask_variant, perturb_mm, crop_pad) for c in cases)
    bar = tqdm(total=len(cases), desc=f"radiomics ({mask_variant})", disable=not progress)
    rows = []
    with parallel_backend(backend, scheduler):
        for feats in Parallel(n_jobs=n_jobs, return_as="generator")(jobs):
            rows.append(feats)
            bar.update(1)
    bar.close()
    df = pd.DataFrame(rows, index=pd.Index([c.pid for c in cases], name="pid"))
    if df.isna().any().any():
        bad = df.columns[df.isna().any()].tolist()
        raise DataError(
            f"feature table: features missing for some cases (different feature sets?): {bad[:5]}"
        )
    if mask_variant != "none":
        df.columns = [RETEST_PREFIX + c for c in df.columns]
    return df


#: arguments of :func:`_extract_table` joblib.Memory does not hash (``key`` stands for the cases; the rest
#: does not change the table)
_NOT_HASHED = ["cases", "n_jobs", "progress", "backend", "scheduler"]


def feature_cache(cache_dir: str | Path) -> Any:
    """The joblib.Memory-cached :func:`_extract_table` whose entries live in ``cache_dir/joblib/``."""
    from joblib import Memory

    return Memory(location=str(cache_dir), verbose=0).cache(_extract_table, ignore=_NOT_HASHED)


def extract_cohort(
    cases: Sequence[RadiomicsCase],
    params: str | Path | Mapping[str, Any],
    regions: RegionSpec = RegionSpec(),
    *,
    mask_variant: str = "none",
    perturb_mm: float = 1.0,
    crop_pad: int | None = 8,
    n_jobs: int = 1,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    backend: str | None = None,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Feature table of a cohort (rows: pid, columns: features), extracted in parallel and cached.

    Args:
        cases: the cohort.
        params: pyradiomics parameter file or dict.
        regions: tumour and rings.
        mask_variant: see :func:`extract_case`; anything but ``none`` prefixes columns with ``retest__``.
        perturb_mm: erosion/dilation distance for ``erode`` / ``dilate``.
        crop_pad: voxels kept around the regions before extraction (see :func:`extract_regions`).
        n_jobs: joblib processes (1: in-process).
        cache_dir: folder of the joblib.Memory cache of feature tables (entries under ``cache_dir/joblib/``,
            keyed by :func:`cache_key`; joblib writes each entry atomically); None: no cache.
        progress: show a tqdm progress bar.
        backend: joblib backend: None (joblib's default, local processes), ``loky``,
            ``multiprocessing``, ``dask`` (a Dask cluster: ``pip install "her2mri[distributed]"``) or
            ``ray`` (``pip install "ray[default]"``); see :func:`parallel_backend`. Not ``threading``:
            pyradiomics is not thread-safe (start Dask workers with ``--nthreads 1``).
        scheduler: ``backend="dask"``: address of the Dask scheduler (``tcp://host:8786``, e.g. of a
            dask-jobqueue SLURM cluster); None: the current client, else a local cluster.
            ``backend="ray"``: the Ray address (None: ``ray.init()`` default).
    """
    if not cases:
        raise ValueError("cases is empty: nothing to extract")
    if n_jobs == 0:
        raise ValueError("n_jobs=0: use a positive number of processes or -1 for all cores")
    p = load_params(params)
    args = (cases, p, regions, mask_variant, perturb_mm, crop_pad, n_jobs, progress, backend, scheduler)
    if cache_dir is None:
        return _extract_table({}, *args)
    key = cache_key(cases, p, regions, mask_variant, perturb_mm, crop_pad)
    return feature_cache(cache_dir)(key, *args)
