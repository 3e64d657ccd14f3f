"""Preprocess a cohort once (optionally in parallel), through the on-disk cache.

:func:`preprocess_record` reads one case (volumes or RGB slices) and runs the deterministic pipeline of
:mod:`her2mri.data.pipeline`; :func:`prepare_cohort` does it for every record, skipping cached ones, with a
tqdm progress bar, and returns the arrays of every case.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from her2mri.data.cache import CaseCache
from her2mri.data.errors import DataError
from her2mri.data.io import load_case_arrays, read_rgb
from her2mri.data.preprocess_config import PreprocessConfig
from her2mri.data.records import CaseRecord


def _volume_bbox(record: CaseRecord, has_mask: bool) -> tuple[int, ...] | None:
    """Bbox argument of ``preprocess_case``: 6 values (with the z-range) when there is no voxel mask."""
    if has_mask or record.bbox is None:
        return None
    z0, z1 = record.extra.get("mask_start"), record.extra.get("mask_end")
    if z0 is None or z1 is None:
        return tuple(record.bbox)
    return (int(z0), int(z1), *record.bbox)


def _rgb_boxes(record: CaseRecord) -> list[tuple[int, int, int, int] | None] | None:
    """Per-slice (x, y, w, h) boxes -> (row0, row1, col0, col1) inclusive."""
    boxes = record.extra.get("rgb_bboxes")
    if not boxes:
        return None
    out: list[tuple[int, int, int, int] | None] = []
    for b in boxes:
        if b is None or b[2] <= 0 or b[3] <= 0:
            out.append(None)
        else:
            x, y, w, h = (int(v) for v in b)
            out.append((y, y + h - 1, x, x + w - 1))
    return out


def preprocess_record(
    record: CaseRecord, cfg: PreprocessConfig, n4_cache_dir: str | Path | None = None
) -> dict[str, np.ndarray]:
    """Read and preprocess one case.

    Returns:
        ``{"images": uint8|float16 (S, 3, H, W) or (S, 3, 3, H, W), "slice_idx": int32 (S,)}`` plus
        ``"masks"``: uint8 (S, H, W) when the case has a voxel mask.

    Raises:
        DataError: naming the file or the case (see :mod:`her2mri.data.io` and the pipeline).
    """
    from her2mri.data.pipeline import preprocess_case, preprocess_rgb_slices

    if record.rgb_paths:
        imgs = [read_rgb(p) for p in record.rgb_paths]
        shapes = {im.shape for im in imgs}
        if len(shapes) > 1:
            raise DataError(
                f"{record.rgb_paths[0]}: slices of case {record.pid} differ in size: {sorted(shapes)}"
            )
        spacing_yx = tuple(record.spacing[1:]) if record.spacing is not None else None
        out = preprocess_rgb_slices(
            np.stack(imgs),
            cfg,
            _rgb_boxes(record),
            spacing_yx=spacing_yx,
            slice_idx=record.rgb_slice_index,
            case_id=record.pid,
        )
    elif record.phase_paths:
        # compact lossless type (uint16) in the files' memory layout: no float copy, no transposing copy
        phases, mask, spacing = load_case_arrays(record, dtype=None, contiguous=False)
        out = preprocess_case(
            phases,
            mask,
            spacing,
            cfg,
            bbox=_volume_bbox(record, mask is not None),
            case_id=f"{record.pid} ({record.phase_paths[0].parent})",
            phase_paths=record.phase_paths,
            n4_cache_dir=n4_cache_dir,
        )
    else:
        raise DataError(f"case {record.pid}: record has neither phase files nor RGB slices")
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
