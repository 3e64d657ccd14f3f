"""Optional N4 bias-field correction (SimpleITK), fitted on a shrunk image, cached by ``joblib.Memory``.

The paper reports that N4 slightly degraded deep-learning performance, so it is off by default
(``PreprocessConfig.n4 = False``); it is here for the ablation.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from her2mri.data.errors import DataError


def n4_correct(
    volume: np.ndarray,
    spacing: tuple[float, float, float],
    shrink_factor: int,
    iterations: tuple[int, ...],
    convergence: float,
) -> np.ndarray:
    """Bias-corrected float32 copy of ``volume`` (the computation :class:`N4BiasCorrection` caches).

    Args:
        volume: one phase (Z, Y, X).
        spacing: voxel size (z, y, x) in mm.
        shrink_factor: in-plane shrink for the fit.
        iterations: maximum iterations per fitting level.
        convergence: convergence threshold of the fit.
    """
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(volume.astype(np.float32, copy=False))
    img.SetSpacing([float(spacing[2]), float(spacing[1]), float(spacing[0])])
    mask = sitk.OtsuThreshold(img, 0, 1, 200)
    if not sitk.GetArrayViewFromImage(mask).any():  # flat image: fit on every voxel
        mask = sitk.Cast(img * 0 + 1, sitk.sitkUInt8)
    shrink = [min(shrink_factor, img.GetSize()[0]), min(shrink_factor, img.GetSize()[1]), 1]
    small = sitk.Shrink(img, shrink)
    small_mask = sitk.Shrink(mask, shrink)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(iterations))
    corrector.SetConvergenceThreshold(convergence)
    corrector.Execute(small, small_mask)
    log_bias = corrector.GetLogBiasFieldAsImage(img)
    bias = np.exp(sitk.GetArrayFromImage(log_bias).astype(np.float32))
    out = volume.astype(np.float32) / bias
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)


def _n4_cached(
    volume: np.ndarray,
    key: dict[str, Any],
    spacing: tuple[float, float, float],
    shrink_factor: int,
    iterations: tuple[int, ...],
    convergence: float,
) -> np.ndarray:
    """:func:`n4_correct` keyed by ``key`` (file identity or array digest): joblib ignores ``volume``."""
    return n4_correct(volume, spacing, shrink_factor, iterations, convergence)


def volume_key(volume: np.ndarray, source: str | Path | None) -> dict[str, Any]:
    """The cache key of a volume: its file's resolved path, size and mtime (ns), or the SHA-1 of its bytes.

    joblib would hash the array itself with MD5 on every call (about 3 times slower than one SHA-1 here, and
    twice: once to count the hit, once to load it), so the volume is passed to joblib as an ignored argument
    and this small key is hashed instead.
    """
    if source is not None:
        st = Path(source).stat()
        return {"path": str(Path(source).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    arr = np.ascontiguousarray(volume)
    return {"shape": arr.shape, "dtype": arr.dtype.str, "sha1": hashlib.sha1(arr.data).hexdigest()}


class N4BiasCorrection:
    """N4 bias-field correction of one 3-D phase (Tustison et al., IEEE TMI 2010; SimpleITK).

    The bias field is fitted on the image shrunk by ``shrink_factor`` in-plane (not along z, whose slices are
    already few), inside an Otsu foreground mask, then evaluated at full resolution and divided out.
    Results are cached on disk by ``joblib.Memory`` when ``cache_dir`` is set (under ``cache_dir/joblib/``),
    keyed by the source file (resolved path, size, mtime), the spacing and the parameters, or by the SHA-1 of
    the array when no path is given (:func:`volume_key`). joblib writes each entry to a temporary name and
    renames it, so concurrent workers never read a partial entry; an unreadable entry is logged and
    recomputed. The cache holds pickles: point ``cache_dir`` only at a folder her2mri wrote.

    Args:
        shrink_factor: in-plane shrink for the fit, 1 to 16 (4 is SimpleITK's usual choice, about 2 s for a
            256 x 256 x 80 volume).
        iterations: maximum iterations per fitting level; its length is the number of levels.
        convergence: convergence threshold of the fit, > 0.
        cache_dir: folder of the disk cache, or None for no cache.

    Example:
        >>> n4 = N4BiasCorrection(shrink_factor=2, iterations=(5,), cache_dir=None)
        >>> vol = np.random.default_rng(0).uniform(50, 150, (4, 16, 16)).astype(np.float32)
        >>> n4(vol, spacing=(2.0, 0.7, 0.7)).shape
        (4, 16, 16)
    """

    def __init__(
        self,
        shrink_factor: int = 4,
        iterations: Sequence[int] = (50, 50, 30, 20),
        convergence: float = 1e-6,
        cache_dir: str | Path | None = None,
    ) -> None:
        if (
            isinstance(shrink_factor, bool)
            or int(shrink_factor) != shrink_factor
            or not 1 <= shrink_factor <= 16
        ):
            raise ValueError(f"shrink_factor={shrink_factor!r} must be an integer in [1, 16].")
        its = tuple(int(i) for i in iterations)
        if not its or min(its) < 1:
            raise ValueError(f"iterations={iterations!r} must be a non-empty sequence of positive integers.")
        if not float(convergence) > 0:
            raise ValueError(f"convergence={convergence!r} must be > 0.")
        self.shrink_factor = int(shrink_factor)
        self.iterations = its
        self.convergence = float(convergence)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.cache_hits = 0
        self.cache_misses = 0
        self._cached: Any = self._memoize()

    def params(self) -> dict[str, object]:
        """Parameters that enter the cache key."""
        return {"shrink": self.shrink_factor, "iterations": list(self.iterations), "conv": self.convergence}

    def _memoize(self) -> Any:
        """The memoized (joblib) :func:`_n4_cached` in ``cache_dir`` (None without a cache)."""
        if self.cache_dir is None:
            return None
        from joblib import Memory

        memory = Memory(
            location=str(self.cache_dir), verbose=0
        )  # a str location: entries in cache_dir/joblib
        return memory.cache(_n4_cached, ignore=["volume"])

    def __getstate__(self) -> dict[str, Any]:
        """Picklable state (DataLoader workers); the memoized function is rebuilt from ``cache_dir``."""
        return {**self.__dict__, "_cached": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cached = self._memoize()

    def __call__(
        self, volume: np.ndarray, spacing: Sequence[float], source: str | Path | None = None
    ) -> np.ndarray:
        """Bias-corrected float32 copy of ``volume`` (Z, Y, X); ``spacing`` is (z, y, x) in mm.

        Args:
            volume: one phase.
            spacing: voxel size (z, y, x) in mm.
            source: file the volume was read from (cache key); None hashes the array.
        """
        volume = np.asarray(volume)
        if volume.ndim != 3:
            raise DataError(
                f"{source or 'volume'}: N4 needs a 3-D (Z, Y, X) volume, got shape {volume.shape}"
            )
        if len(spacing) != 3 or min(float(s) for s in spacing) <= 0:
            raise ValueError(f"spacing={spacing!r} must be three positive numbers (z, y, x) in mm.")
        sp = (float(spacing[0]), float(spacing[1]), float(spacing[2]))
        args = (sp, self.shrink_factor, self.iterations, self.convergence)
        func = self._cached
        if func is None:
            return n4_correct(volume, *args)
        call = (volume, volume_key(volume, source), *args)
        if func.check_call_in_cache(*call):
            self.cache_hits += 1
        else:
            self.cache_misses += 1
        out = func(*call)
        if getattr(out, "shape", None) != volume.shape:  # a file rewritten with the same size and mtime
            warnings.warn(
                f"{source or 'volume'}: N4 cache entry has shape {getattr(out, 'shape', None)}, the volume "
                f"{volume.shape}; recomputing",
                stacklevel=2,
            )
            out = func.call(*call)[0]
        return out
