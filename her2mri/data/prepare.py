"""Preprocess a cohort once (optionally in parallel), through the on-disk cache.

:func:`preprocess_record` reads and preprocesses one case (volumes or RGB slices) with the MONAI ``Compose``
of :func:`her2mri.data.pipeline.preprocess_transform`; :func:`prepare_cohort` does it for every record,
skipping cached ones, with a tqdm progress bar, and returns the arrays of every case.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from her2mri.data.cache import CaseCache
from her2mri.data.errors import DataError
from her2mri.data.preprocess_config import PreprocessConfig
from her2mri.data.records import CaseRecord


def preprocess_record(
    record: CaseRecord, cfg: PreprocessConfig, n4_cache_dir: str | Path | None = None
) -> dict[str, np.ndarray]:
    """Read and preprocess one case (the ``Compose`` of :func:`~her2mri.data.pipeline.preprocess_transform`).

    Returns:
        ``{"images": uint8|float16 (S, 3, H, W) or (S, 3, 3, H, W), "slice_idx": int32 (S,)}`` plus
        ``"masks"``: uint8 (S, H, W) when the case has a voxel mask.

    Raises:
        DataError: naming the file or the case (see :mod:`her2mri.data.io` and the pipeline).
    """
    from her2mri.data.pipeline import preprocess_transform, run_preprocess

    if record.rgb_paths:
        source = "rgb"
    elif record.phase_paths:
        source = "volume"
    else:
        raise DataError(f"case {record.pid}: record has neither phase files nor RGB slices")
    out = run_preprocess(preprocess_transform(cfg, source, n4_cache_dir=n4_cache_dir), {"record": record})
    arrays = {"images": out.images, "slice_idx": np.asarray(out.slice_idx, dtype=np.int32)}
    if out.masks is not None:
        arrays["masks"] = np.asarray(out.masks, dtype=np.uint8)
    if len(arrays["images"]) == 0:
        raise DataError(f"case {record.pid}: preprocessing selected no slice")
    return arrays


def _work(record: CaseRecord, cfg: PreprocessConfig, cache_dir: str | None, keep: bool) -> dict | None:
    """Worker: compute (and cache) one case; returns the arrays when ``keep`` or without a cache."""
    if cache_dir is None:
        return preprocess_record(record, cfg)
    cache = CaseCache(cache_dir, cfg)
    if keep:
        hit = cache.load(record)
        if hit is not None:
            return hit
    elif cache.has(record):  # another process wrote it meanwhile
        return None
    arrays = cache.save(record, preprocess_record(record, cfg, Path(cache_dir) / "n4"))
    return arrays if keep else None


def prepare_cohort(
    records: Sequence[CaseRecord],
    cfg: PreprocessConfig,
    cache_dir: str | Path | None = None,
    num_workers: int = 0,
    progress: bool = True,
    return_arrays: bool = True,
) -> list[dict[str, np.ndarray]]:
    """Preprocess every record (cached ones are loaded, not recomputed) and return their arrays in order.

    Args:
        records: the cases.
        cfg: preprocessing configuration.
        cache_dir: cache root; None keeps everything in memory only (recomputed by each run).
        num_workers: parallel worker processes (joblib/loky) for the cases not in the cache; 0 or 1 runs in
            this process.
        progress: show a tqdm progress bar.
        return_arrays: False only fills the cache (cached entries are not even read) and returns ``[]``;
            needs ``cache_dir``.

    Raises:
        DataError: from the first case that fails, naming its file.
    """
    from tqdm.auto import tqdm

    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers={num_workers!r} must be an integer >= 0")
    if not return_arrays and cache_dir is None:
        raise ValueError("return_arrays=False needs a cache_dir")
    cache = CaseCache(cache_dir, cfg) if cache_dir is not None else None
    if not return_arrays:
        records = [r for r in records if not cache.has(r)]  # type: ignore[union-attr]
    results: list[dict[str, np.ndarray] | None] = [None] * len(records)
    todo: list[int] = []
    for i, rec in enumerate(records):
        hit = cache.load(rec) if cache is not None and return_arrays else None
        if hit is not None:
            results[i] = hit
        else:
            todo.append(i)
    cdir = str(cache_dir) if cache_dir is not None else None
    bar = tqdm(
        total=len(todo), desc=f"preprocessing ({cfg.key()})", unit="case", disable=not progress or not todo
    )
    if num_workers > 1 and len(todo) > 1:
        from joblib import Parallel, delayed

        keep = cache is None
        jobs = (delayed(_work)(records[i], cfg, cdir, keep) for i in todo)
        par = Parallel(n_jobs=min(num_workers, len(todo)), return_as="generator")
        for i, arrays in zip(todo, par(jobs), strict=True):
            if return_arrays:
                results[i] = arrays if arrays is not None else cache.load(records[i])  # type: ignore[union-attr]
            bar.update(1)
    else:
        for i in todo:
            arrays = _work(records[i], cfg, cdir, keep=return_arrays)
            if return_arrays:
                results[i] = arrays
            bar.update(1)
    bar.close()
    if not return_arrays:
        return []
    missing = [records[i].pid for i, r in enumerate(results) if r is None]
    if missing:
        raise DataError(f"{cache_dir}: cache entries vanished during preprocessing for {missing[:5]}")
    return results  # type: ignore[return-value]
