"""On-disk cache of preprocessed cases: ``cache_dir/<cfg.key()>/<pid>-<source_hash>.npz``.

* ``cfg.key()`` changes with any preprocessing option, so each configuration has its own folder (with a
  ``config.json`` for humans).
* ``source_hash`` covers every source file (resolved path, size, modification time) and the record metadata
  that changes the result (spacing, bbox, axis order, tumour z-range), so an edited or replaced file, or
  corrected metadata, gives a new entry.
* Writes are atomic: the arrays go to a hidden temporary file in the same folder, which is then renamed
  (``os.replace``). A killed run leaves at most a stray ``.tmp`` file, never a half-written ``.npz``.
* An unreadable entry is treated as a miss (with a warning) and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

import numpy as np

from her2mri.data.errors import DataError
from her2mri.data.preprocess_config import PreprocessConfig
from her2mri.data.records import CaseRecord
from her2mri.io_utils import atomic_write, atomic_write_text, clean_stale_temps

ARRAY_KEYS: tuple[str, ...] = ("images", "masks", "slice_idx")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(pid: str) -> str:
    """Pid made safe as a file name (anything but letters, digits, ``._-`` becomes ``_``)."""
    return _SAFE.sub("_", pid) or "_"


def source_hash(record: CaseRecord) -> str:
    """16-hex-digit hash of the record's source files (path, size, mtime) and result-changing metadata.

    Raises:
        DataError: a source file does not exist (naming it).
    """
    h = hashlib.sha1()
    for path in record.source_files():
        p = Path(path)
        try:
            st = p.stat()
        except FileNotFoundError:
            raise DataError(f"{p}: file not found (case {record.pid})") from None
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    meta = {
        "spacing": record.spacing,
        "bbox": record.bbox,
        "axis_order": record.extra.get("axis_order"),
        "z": [record.extra.get("mask_start"), record.extra.get("mask_end")],
        "rgb_bboxes": record.extra.get("rgb_bboxes"),
        "rgb_slice_index": record.rgb_slice_index,
    }
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


_CACHE_TMP_RE = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")


def atomic_save_npz(path: Path, arrays: dict[str, np.ndarray], compress: bool = False) -> Path:
    """Save ``arrays`` as ``path`` (.npz) atomically (temporary sibling, fsync, ``os.replace``).

    Raises:
        OSError: the write failed (a full disk is named); no partial ``.npz`` and no temporary file remain.
    """
    save = np.savez_compressed if compress else np.savez
    return atomic_write(Path(path), lambda fh: save(fh, **arrays))


class CaseCache:
    """Cache of preprocessed cases for one :class:`PreprocessConfig`.

    Args:
        cache_dir: root folder of the cache (shared by all configurations).
        cfg: the preprocessing configuration (its ``key()`` names the sub-folder).
        compress: store compressed ``.npz`` (smaller, slower to read). Default False.

    Example:
        >>> cache = CaseCache("/tmp/h2cache", PreprocessConfig())  # doctest: +SKIP
        >>> arrays = cache.load(record) or cache.save(record, compute(record))  # doctest: +SKIP
    """

    def __init__(self, cache_dir: str | Path, cfg: PreprocessConfig, compress: bool = False) -> None:
        self.root = Path(cache_dir)
        self.cfg = cfg
        self.compress = bool(compress)
        self.dir = self.root / cfg.key()
        clean_stale_temps(self.dir)  # temporary files of killed writers
        clean_stale_temps(self.dir, (_CACHE_TMP_RE,))  # and of older her2mri versions

    def path(self, record: CaseRecord) -> Path:
        """Cache file of ``record`` (it may not exist)."""
        return self.dir / f"{safe_name(record.pid)}-{source_hash(record)}.npz"

    def _write_config(self) -> None:
        cfg_file = self.dir / "config.json"
        if not cfg_file.exists():
            atomic_write_text(cfg_file, json.dumps(self.cfg.to_dict(), indent=1, sort_keys=True))

    def has(self, record: CaseRecord) -> bool:
        """Whether a (complete) entry for ``record`` exists."""
        return self.path(record).is_file()

    def load(self, record: CaseRecord) -> dict[str, np.ndarray] | None:
        """Cached arrays of ``record`` (``images``, ``slice_idx``, optional ``masks``); None on a miss."""
        path = self.path(record)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:
            warnings.warn(
                f"{path}: unreadable cache entry ({type(exc).__name__}: {exc}); recomputing", stacklevel=2
            )
            return None
        problem = self.check_entry(arrays)
        if problem is not None:
            warnings.warn(f"{path}: invalid cache entry ({problem}); recomputing", stacklevel=2)
            return None
        return arrays

    def check_entry(self, arrays: dict[str, np.ndarray]) -> str | None:
        """What is wrong with a cache entry for this configuration (missing arrays, wrong shape), or None."""
        for key in ("images", "slice_idx"):
            if key not in arrays:
                return f"no {key!r} array (arrays: {sorted(arrays)})"
        images, n = arrays["images"], len(arrays["slice_idx"])
        ndim = 4 if self.cfg.views == "single" else 5
        size = int(self.cfg.image_size)
        if images.ndim != ndim or images.shape[-3] != 3 or images.shape[-2:] != (size, size):
            want = "(S, 3, {0}, {0})" if ndim == 4 else "(S, 3, 3, {0}, {0})"
            return f"images have shape {images.shape}, expected {want.format(size)} for this configuration"
        if len(images) != n or ("masks" in arrays and len(arrays["masks"]) != n):
            return f"{len(images)} images but {n} slice indices"
        return None

    def save(self, record: CaseRecord, arrays: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        """Store ``arrays`` for ``record`` atomically and remove older entries of the same pid.

        Returns:
            The stored arrays (None values dropped).
        """
        self._write_config()
        clean = {k: np.asarray(v) for k, v in arrays.items() if v is not None}
        path = atomic_save_npz(self.path(record), clean, self.compress)
        stale = re.compile(rf"^{re.escape(safe_name(record.pid))}-[0-9a-f]{{16}}\.npz$")
        for other in self.dir.iterdir():
            if other != path and stale.match(other.name):
                other.unlink(missing_ok=True)
        return clean
