"""Reading volumes, masks and RGB slices from disk, with clear errors.

* NIfTI (``.nii``, ``.nii.gz``) is read with nibabel through ``img.dataobj``: integer data keeps its integer
  type, float data (BreastDCEDL stores uint16 values as float64) is cast to float32. No float64 array is kept.
* NRRD (``.nrrd``, ``.nhdr``) and other ITK formats (``.mha``, ``.mhd``) are read with SimpleITK.
* Any unreadable, truncated or corrupt file raises :class:`~her2mri.data.errors.DataError` naming the file.

Axis order: ``axis_order`` names the axes of the file's index order (i, j, k), which is the order nibabel
returns. BreastDCEDL arrays are stored ``"zyx"`` (axis 0 = slice), the default; a NIfTI/NRRD written by most
other tools is ``"xyz"``. ``axis_order="affine"`` trusts the header instead: the volume is brought to the
canonical orientation of :mod:`her2mri.data.geometry` from its affine (x to the patient's Left, y to
Posterior, z to Superior), the default of manifest cohorts and of cohorts written by ``her2mri-import``.
Arrays are always returned as (z, y, x).
"""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from her2mri.data.errors import DataError
from her2mri.data.records import CaseRecord

NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
ITK_SUFFIXES: tuple[str, ...] = (".nrrd", ".nhdr", ".mha", ".mhd")


AFFINE: str = "affine"


def check_axis_order(axis_order: str) -> str:
    """Return ``axis_order`` if it is a permutation of ``"zyx"`` or ``"affine"``, else raise ValueError."""
    if axis_order == AFFINE:
        return axis_order
    if not isinstance(axis_order, str) or sorted(axis_order) != ["x", "y", "z"]:
        raise ValueError(
            f"axis_order={axis_order!r} must be a permutation of 'zyx' (e.g. 'zyx' or 'xyz') or 'affine'."
        )
    return axis_order


def _to_zyx_perm(axis_order: str) -> tuple[int, int, int]:
    order = check_axis_order(axis_order)
    return (order.index("z"), order.index("y"), order.index("x"))


def _load_nifti(path: Path) -> object:
    """The nibabel image of ``path``; a ``.nii.gz`` is decompressed in one call instead of streamed.

    nibabel streams gzip files through ``gzip.GzipFile`` in small chunks; decompressing the whole file at
    once (``gzip.decompress``: same CRC and length checks, multi-member files included) and parsing the bytes
    is about 20 % faster, and decompression is most of the cost of reading a volume. NIfTI-2 and anything
    unexpected go through ``nibabel.load``.
    """
    import nibabel as nib

    if path.name.lower().endswith(".gz"):
        data = gzip.decompress(path.read_bytes())
        size = int.from_bytes(data[:4], "little") if len(data) >= 4 else 0
        if size in (348, 348 << 24):  # NIfTI-1 sizeof_hdr, either byte order
            return nib.Nifti1Image.from_bytes(data)
        if size in (540, 540 << 24):
            return nib.Nifti2Image.from_bytes(data)
    return nib.load(str(path))


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    img = _load_nifti(path)
    proxy = img.dataobj  # type: ignore[attr-defined]
    slope = getattr(proxy, "slope", 1.0)
    inter = getattr(proxy, "inter", 0.0)
    if hasattr(proxy, "get_unscaled") and slope in (1.0, None) and inter in (0.0, None):
        arr = np.asarray(proxy.get_unscaled())
    else:  # scaled data: let nibabel apply the scaling, at float32 at most
        arr = np.asarray(proxy, dtype=np.float32)
    zooms = tuple(float(z) for z in img.header.get_zooms())  # type: ignore[attr-defined]
    return arr, zooms, np.asarray(img.affine, dtype=np.float64)  # type: ignore[attr-defined]


def _itk_affine_ras(img: object) -> np.ndarray:
    """The voxel-to-RAS affine of a SimpleITK image (ITK's origin and direction are LPS)."""
    from her2mri.data.geometry import lps_to_ras

    dim = img.GetDimension()  # type: ignore[attr-defined]
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]  # type: ignore[attr-defined]
    aff = np.eye(4)
    aff[:3, :3] = direction * np.asarray(img.GetSpacing()[:3], dtype=np.float64)  # type: ignore[attr-defined]
    aff[:3, 3] = np.asarray(img.GetOrigin()[:3], dtype=np.float64)  # type: ignore[attr-defined]
    return lps_to_ras(aff)


def _read_itk(path: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)  # (k, j, i)
    arr = np.transpose(arr, tuple(range(arr.ndim))[::-1])  # -> (i, j, k), as nibabel
    affine = _itk_affine_ras(img) if img.GetDimension() >= 3 else np.eye(4)
    return arr, tuple(float(s) for s in img.GetSpacing()), affine


def _read_raw(path: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    name = path.name.lower()
    try:
        if name.endswith(NIFTI_SUFFIXES):
            arr, zooms, affine = _read_nifti(path)
        elif name.endswith(ITK_SUFFIXES):
            arr, zooms, affine = _read_itk(path)
        else:
            raise DataError(
                f"{path}: unsupported volume format (expected one of {NIFTI_SUFFIXES + ITK_SUFFIXES})"
            )
    except DataError:
        raise
    except Exception as exc:  # nibabel/SimpleITK/zlib raise many types for corrupt files
        raise DataError(f"{path}: cannot read volume ({type(exc).__name__}: {exc})") from exc
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise DataError(f"{path}: expected a 3-D volume, got an array of shape {arr.shape}")
    return arr, zooms, affine


def read_with_affine(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D volume in its file's index order (i, j, k) with its voxel-to-RAS affine.

    Raises:
        DataError: missing, unreadable, corrupt or non-3-D file.
    """
    arr, _, affine = _read_raw(Path(path))
    return arr, affine


def _to_zyx(arr: np.ndarray, affine: np.ndarray, axis_order: str) -> np.ndarray:
    """The (z, y, x) view of an (i, j, k) array: by ``axis_order``, or canonical from the affine."""
    if axis_order == AFFINE:
        from her2mri.data.geometry import to_canonical

        return to_canonical(arr, affine)[0]
    return np.transpose(arr, _to_zyx_perm(axis_order))


def compact_dtype(arr: np.ndarray) -> np.ndarray:
    """The same values in the smallest lossless type the pipeline handles fast.

    Integer arrays are returned as they are. A float array whose values are all integers in [0, 65535]
    (BreastDCEDL stores uint16 values as float64) becomes uint16: percentiles then use a histogram instead of
    ``np.partition`` and the array is 4x smaller than float64; the values, hence every statistic and the
    normalised output, are unchanged. Any other float array becomes float32.
    """
    if arr.dtype.kind in "ui":
        return arr
    if arr.size and arr.dtype.kind == "f":
        lo, hi = arr.min(), arr.max()
        if 0 <= lo and hi <= 65535:
            as_u16 = arr.astype(np.uint16)
            if np.array_equal(as_u16, arr):
                return as_u16
    return arr.astype(np.float32, copy=False)


def read_volume(
    path: str | Path,
    *,
    axis_order: str = "zyx",
    dtype: str | np.dtype | None = "float32",
    contiguous: bool = True,
) -> np.ndarray:
    """Read one 3-D volume as a (z, y, x) array.

    Args:
        path: NIfTI or NRRD/ITK file.
        axis_order: axes of the file's index order (``"zyx"`` for BreastDCEDL, ``"xyz"`` for most others), or
            ``"affine"``: the canonical orientation from the file's affine (see the module docstring).
        dtype: ``float32`` (default) or ``uint16``/another integer type when the values fit exactly; None
            keeps
            the stored values in their compact lossless type (see :func:`compact_dtype`: integers as stored,
            integer-valued floats in [0, 65535] as uint16, other floats as float32), the fastest for
            preprocessing.
        contiguous: True returns a C-contiguous array. False keeps the file's memory layout (NIfTI stores
            its first axis fastest, so a ``zyx`` volume is Fortran-ordered): no transposing copy, which costs
            about as much as decompressing the file. Whole-volume statistics do not depend on the layout.

    Returns:
        A (z, y, x) array of ``dtype``, C-contiguous unless ``contiguous=False``.

    Raises:
        DataError: missing, unreadable, corrupt or non-3-D file; non-finite values.
    """
    arr, _, affine = _read_raw(Path(path))
    zyx = _to_zyx(arr, affine, check_axis_order(axis_order))
    if axis_order != AFFINE:
        warn_if_axes_look_swapped(zyx.shape, path, axis_order)
    return _finish_volume(zyx, path, dtype, contiguous)


def warn_if_axes_look_swapped(shape: tuple[int, ...], path: str | Path, axis_order: str) -> bool:
    """Warn when a (z, y, x) shape looks like another axis order (non-square slices, z equal to y or x).

    MRI slices are (nearly always) square matrices: with ``y != x`` while ``z`` equals one of them, the file
    was most likely written in another index order (e.g. ``xyz``) and would be sliced along the wrong axis.

    Returns:
        Whether a warning was issued.
    """
    z, y, x = (int(v) for v in shape[-3:])
    if y != x and z in (y, x):
        warnings.warn(
            f"{path}: volume read with axis_order={axis_order!r} has shape (z={z}, y={y}, x={x}): its slices "
            "are not square and z equals an in-plane size, so the file is probably stored in another axis "
            "order (e.g. data.axis_order=xyz) and would be sliced along the wrong axis; set data.axis_order "
            "(or axis_order=affine to follow the header)",
            UserWarning,
            stacklevel=3,
        )
        return True
    return False


def _finish_volume(
    arr: np.ndarray, path: str | Path, dtype: str | np.dtype | None, contiguous: bool
) -> np.ndarray:
    """Layout, finiteness check and type of a (z, y, x) volume (see :func:`read_volume`)."""
    if contiguous:
        arr = np.ascontiguousarray(arr)
    out_dtype = None if dtype is None else np.dtype(dtype)
    if out_dtype == np.float64:
        raise ValueError("dtype='float64' is not allowed: volumes are kept as float32 or integers.")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{path}: volume contains NaN or infinite values")
    if out_dtype is None:
        return compact_dtype(arr)
    if out_dtype.kind in "ui" and arr.dtype.kind == "f":
        info = np.iinfo(out_dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise DataError(f"{path}: values [{arr.min()}, {arr.max()}] do not fit {out_dtype}")
    return arr.astype(out_dtype, copy=False)


def read_header_geometry(path: str | Path) -> tuple[tuple[int, int, int], tuple[float, ...], np.ndarray]:
    """``(shape, zooms, RAS affine)`` of a volume from its header only (file index order).

    Raises:
        DataError: unreadable header or fewer than three axes.
    """
    import nibabel as nib

    path = Path(path)
    try:
        if path.name.lower().endswith(NIFTI_SUFFIXES):
            img = nib.load(str(path))
            shape = tuple(int(n) for n in img.shape[:3])
            zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
            affine = np.asarray(img.affine, dtype=np.float64)
        else:
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            shape = tuple(int(n) for n in reader.GetSize()[:3])
            zooms = tuple(float(s) for s in reader.GetSpacing()[:3])
            affine = _itk_affine_ras(reader) if len(zooms) >= 3 else np.eye(4)
    except Exception as exc:
        raise DataError(f"{path}: cannot read header ({type(exc).__name__}: {exc})") from exc
    if len(zooms) < 3 or len(shape) < 3:
        raise DataError(f"{path}: header has {len(zooms)} spacing values, expected 3")
    return shape, zooms, affine  # type: ignore[return-value]


def read_header_spacing(path: str | Path, *, axis_order: str = "zyx") -> tuple[float, float, float]:
    """Voxel spacing from the file header, reordered to (z, y, x).

    BreastDCEDL headers are wrong (1 mm); use this only for sources without spacing metadata. With
    ``axis_order="affine"`` the spacing of the canonical (z, y, x) array, from the affine.
    """
    check_axis_order(axis_order)
    _, zooms, affine = read_header_geometry(path)
    if axis_order == AFFINE:
        from nibabel.orientations import io_orientation

        from her2mri.data.geometry import voxel_sizes

        ornt = io_orientation(affine)  # file axis i -> world axis ornt[i, 0] (0 = x, 1 = y, 2 = z)
        sizes = voxel_sizes(affine)
        by_world = {int(ornt[i, 0]): sizes[i] for i in range(3)}
        return (by_world[2], by_world[1], by_world[0])
    perm = _to_zyx_perm(axis_order)
    return (zooms[perm[0]], zooms[perm[1]], zooms[perm[2]])


def check_binary_mask(arr: np.ndarray, path: str | Path) -> None:
    """Raise unless every voxel of ``arr`` is 0 or 1 (a tumour mask, not a label map or a probability map).

    Raises:
        DataError: naming the file and up to five of the other values.
    """
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        values = np.unique(arr[bad])
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if values.size > 5 else "")
        raise DataError(
            f"{path}: mask has values other than 0 and 1 ({shown}; {int(bad.sum())} voxels): a binary tumour "
            "mask is expected (reduce a label map to the tumour label first, e.g. mask = (label == k))"
        )


def check_phase_values(phases: np.ndarray, paths: Sequence[str | Path], pid: str) -> None:
    """Raise when a phase volume is all zero or holds NaN/infinite values.

    Args:
        phases: ``(3, Z, Y, X)``.
        paths: the three phase files (for the message).
        pid: the case.

    Raises:
        DataError: naming the file, the phase and the case.
    """
    for c, name in enumerate(("pre", "early", "late")):
        vol = phases[c]
        if np.issubdtype(vol.dtype, np.floating) and not np.isfinite(vol).all():
            n = int((~np.isfinite(vol)).sum())
            raise DataError(f"{paths[c]}: {name} phase of case {pid} has {n} NaN or infinite voxels")
        if not vol.any():
            raise DataError(
                f"{paths[c]}: {name} phase of case {pid} is all zero (an empty or failed export; "
                "training on it would learn from a blank image)"
            )


def read_mask(path: str | Path, *, axis_order: str = "zyx", contiguous: bool = True) -> np.ndarray:
    """Read a tumour mask as a binary uint8 (z, y, x) array; every voxel must be 0 or 1.

    Args:
        path: NIfTI or NRRD/ITK file.
        axis_order: axes of the file's index order.
        contiguous: True returns a C-contiguous array; False keeps the file's memory layout (no copy).

    Raises:
        DataError: unreadable file, values other than 0 and 1, or a mask with no tumour voxel.
    """
    arr, _, affine = _read_raw(Path(path))
    check_binary_mask(arr, path)
    arr = _to_zyx(arr, affine, check_axis_order(axis_order))
    binary = arr > 0  # same memory layout as arr
    mask = np.ascontiguousarray(binary).view(np.uint8) if contiguous else binary.view(np.uint8)
    if not mask.any():
        raise DataError(f"{path}: mask is empty (no voxel > 0)")
    return mask


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an RGB image (PNG/JPEG) as uint8 (H, W, 3); grey images are repeated to 3 channels.

    Raises:
        DataError: missing or unreadable file, or an image that is neither grey nor RGB(A).
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("RGB", "RGBA", "L", "I;16", "I"):
                raise DataError(f"{path}: unsupported image mode {im.mode!r} (expected RGB or grey)")
            arr = np.asarray(im.convert("RGB") if im.mode in ("RGBA", "L") else im)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim == 2:
        if arr.dtype != np.uint8:
            raise DataError(f"{path}: 16-bit grey image; expected an 8-bit RGB slice")
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3], dtype=np.uint8)


def _empty_stack(vol: np.ndarray, n: int) -> np.ndarray:
    """Uninitialised ``(n, *vol.shape)`` array whose every ``[c]`` has the memory layout of ``vol``."""
    order = np.argsort(vol.strides, kind="stable")[::-1]  # slowest-varying axis first
    buf = np.empty((n, *(vol.shape[a] for a in order)), dtype=vol.dtype)
    return buf.transpose(0, *(1 + np.argsort(order)))


def load_case_arrays(
    record: CaseRecord, dtype: str | np.dtype | None = "float32", contiguous: bool = True
) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float, float]]:
    """Read the three phases and the mask of a volume-based record, checking shapes.

    Only the three selected phase files and the mask are read (never the other acquisitions). The phases go
    straight into one preallocated (3, Z, Y, X) array, so at most one extra volume is held while reading.
    The axis order comes from ``record.extra["axis_order"]`` (default ``"zyx"``). Without spacing metadata,
    the header spacing of the pre-contrast file is used.

    Args:
        record: a volume-based case record.
        dtype: type of the phase stack: ``float32`` (default), an integer type, or None for the compact
            lossless type of :func:`read_volume` (uint16 for BreastDCEDL data; float32 when the three phases
            do not share one type). The preprocessing pipeline uses None: the same output, faster.
        contiguous: True gives C-contiguous arrays; False keeps the files' memory layout (see
            :func:`read_volume`), which the preprocessing pipeline uses to skip a transposing copy per file.

    Returns:
        ``(phases, mask, spacing)``: (3, Z, Y, X) of ``dtype``, uint8 (Z, Y, X) or None, (z, y, x) in mm.

    Raises:
        DataError: naming the file: missing/corrupt file, phases of different shapes, mask/image mismatch,
            empty mask.
    """
    if record.phase_paths is None or len(record.phase_paths) != 3:
        raise DataError(f"case {record.pid}: record needs three phase files, got {record.phase_paths}")
    axis_order = str(record.extra.get("axis_order", "zyx"))
    if axis_order == AFFINE:
        return _load_case_affine(record, dtype, contiguous)
    phases: np.ndarray | None = None
    for c, p in enumerate(record.phase_paths):
        vol = read_volume(p, axis_order=axis_order, dtype=dtype, contiguous=contiguous)
        if phases is None:
            phases = _empty_stack(vol, 3)
        elif vol.shape != phases.shape[1:]:
            raise DataError(
                f"{p}: phase image has shape {vol.shape} but the pre-contrast phase "
                f"{record.phase_paths[0].name} has {phases.shape[1:]}"
            )
        elif vol.dtype != phases.dtype:  # compact types differ between phases: fall back to float32
            phases = phases.astype(np.float32, copy=False)
        phases[c] = vol
        del vol
    check_phase_values(phases, record.phase_paths, record.pid)  # type: ignore[arg-type]
    shape = phases.shape[1:]  # type: ignore[union-attr]
    mask: np.ndarray | None = None
    if record.mask_path is not None:
        mask = read_mask(record.mask_path, axis_order=axis_order, contiguous=contiguous)
        if mask.shape != shape:
            raise DataError(
                f"{record.mask_path}: mask has shape {mask.shape} but phase image "
                f"{record.phase_paths[0].name} has {shape}"
            )
    spacing = record.spacing
    if spacing is None:
        spacing = read_header_spacing(record.phase_paths[0], axis_order=axis_order)
    return phases, mask, spacing


def _load_case_affine(
    record: CaseRecord, dtype: str | np.dtype | None, contiguous: bool
) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float, float]]:
    """:func:`load_case_arrays` for ``axis_order="affine"``: canonical orientation, mask by world coordinates.

    The three phases must share one grid (shape and affine within 0.001 mm); the mask may be on another grid
    and is then resampled onto the pre-contrast grid (nearest neighbour), see
    :func:`her2mri.data.geometry.mask_on_grid`.
    """
    from her2mri.data.geometry import canonical_spacing, mask_on_grid, same_grid, to_canonical

    paths = record.phase_paths
    if paths is None:
        raise DataError(f"case {record.pid}: no phase files are given")
    phases: np.ndarray | None = None
    ref_shape: tuple[int, ...] = ()
    ref_affine = np.eye(4)
    canon_affine = np.eye(4)
    for c, p in enumerate(paths):
        raw, _, affine = _read_raw(Path(p))
        if phases is None:
            ref_shape, ref_affine = raw.shape, affine
        elif not same_grid(raw.shape, affine, ref_shape, ref_affine):
            raise DataError(
                f"{p}: phase image is on another grid than the pre-contrast phase {paths[0].name}: shape "
                f"{raw.shape} vs {ref_shape}, affines differ by up to "
                f"{np.abs(affine - ref_affine).max():.3g} mm"
            )
        zyx, canon_affine = to_canonical(raw, affine)
        vol = _finish_volume(zyx, p, dtype, contiguous)
        del raw, zyx
        if phases is None:
            phases = _empty_stack(vol, 3)
        elif vol.dtype != phases.dtype:
            phases = phases.astype(np.float32, copy=False)
        phases[c] = vol
        del vol
    check_phase_values(phases, paths, record.pid)  # type: ignore[arg-type]
    mask: np.ndarray | None = None
    if record.mask_path is not None:
        m_raw, _, m_affine = _read_raw(Path(record.mask_path))
        check_binary_mask(m_raw, record.mask_path)
        on_grid = mask_on_grid(
            m_raw, m_affine, ref_shape, ref_affine, path=record.mask_path, ref_name=paths[0].name
        )
        if not on_grid.any():
            raise DataError(f"{record.mask_path}: mask is empty (no voxel > 0)")
        mask = to_canonical(on_grid, ref_affine)[0]
        mask = np.ascontiguousarray(mask) if contiguous else mask
    spacing = record.spacing if record.spacing is not None else canonical_spacing(canon_affine)
    return phases, mask, spacing  # type: ignore[return-value]
