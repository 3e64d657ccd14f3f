"""Optional N4 bias-field correction (SimpleITK), fitted on a shrunk image, with a disk cache.

The paper reports that N4 slightly degraded deep-learning performance, so it is off by default
(``PreprocessConfig.n4 = False``); it is here for the ablation.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from her2mri.data.errors import DataError
from her2mri.io_utils import atomic_write, clean_stale_temps


class N4BiasCorrection:
    """N4 bias-field correction of one 3-D phase (Tustison et al., IEEE TMI 2010; SimpleITK).

    The bias field is fitted on the image shrunk by ``shrink_factor`` in-plane (not along z, whose slices are
    already few), inside an Otsu foreground mask, then evaluated at full resolution and divided out.
    Results are cached on disk when ``cache_dir`` is set, keyed by the source file (path, size, mtime) and the
    parameters, or by a hash of the array when no path is given. Cache files are written to a temporary file
    and moved into place with ``os.replace`` so concurrent workers never read a partial file.

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

    def params(self) -> dict[str, object]:
        """Parameters that enter the cache key."""
        return {"shrink": self.shrink_factor, "iterations": list(self.iterations), "conv": self.convergence}

    def cache_key(self, volume: np.ndarray, spacing: Sequence[float], source: str | Path | None) -> str:
        """sha1 of the source file identity (path, size, mtime) or the array bytes, plus the parameters."""
        h = hashlib.sha1()
        if source is not None:
            st = Path(source).stat()
            ident = {"path": str(Path(source).resolve()), "size": st.st_size, "mtime": st.st_mtime_ns}
            h.update(json.dumps(ident, sort_keys=True).encode())
        else:
            h.update(str((volume.shape, volume.dtype.str)).encode())
            h.update(np.ascontiguousarray(volume).data)
        h.update(
            json.dumps({**self.params(), "spacing": [float(s) for s in spacing]}, sort_keys=True).encode()
        )
        return h.hexdigest()

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
        path = None
        if self.cache_dir is not None:
            path = self.cache_dir / f"n4_{self.cache_key(volume, spacing, source)}.npy"
            cached = self._read_cached(path, volume.shape)
            if cached is not None:
                self.cache_hits += 1
                return cached
            self.cache_misses += 1
        out = self._correct(volume, spacing)
        if path is not None:
            clean_stale_temps(path.parent)  # temporary files of killed writers
            atomic_write(path, lambda fh: np.save(fh, out, allow_pickle=False))
        return out

    @staticmethod
    def _read_cached(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
        """The cached corrected volume, or None when absent, unreadable or of another shape (recomputed)."""
        if not path.is_file():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is recomputed
            warnings.warn(
                f"{path}: unreadable N4 cache entry ({type(exc).__name__}); recomputing", stacklevel=3
            )
            return None
        if arr.shape != tuple(shape):
            warnings.warn(
                f"{path}: N4 cache entry has shape {arr.shape}, the volume {tuple(shape)}; recomputing",
                stacklevel=3,
            )
            return None
        return arr

    def _correct(self, volume: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(volume.astype(np.float32, copy=False))
        img.SetSpacing([float(spacing[2]), float(spacing[1]), float(spacing[0])])
        mask = sitk.OtsuThreshold(img, 0, 1, 200)
        if not sitk.GetArrayViewFromImage(mask).any():  # flat image: fit on every voxel
            mask = sitk.Cast(img * 0 + 1, sitk.sitkUInt8)
        f = self.shrink_factor
        shrink = [min(f, img.GetSize()[0]), min(f, img.GetSize()[1]), 1]
        small = sitk.Shrink(img, shrink)
        small_mask = sitk.Shrink(mask, shrink)
        corrector = sitk.N4BiasFieldCorrectionImageFilter()
        corrector.SetMaximumNumberOfIterations(list(self.iterations))
        corrector.SetConvergenceThreshold(self.convergence)
        corrector.Execute(small, small_mask)
        log_bias = corrector.GetLogBiasFieldAsImage(img)
        bias = np.exp(sitk.GetArrayFromImage(log_bias).astype(np.float32))
        out = volume.astype(np.float32) / bias
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)
