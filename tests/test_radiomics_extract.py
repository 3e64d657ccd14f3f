"""pyradiomics extraction: 2-D and 3-D, rings, cache, retest masks, real files, missing-extra error."""

from __future__ import annotations

import builtins
import importlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2mri.data.errors import DataError
from her2mri.data.manifest import read_manifest
from her2mri.radiomics.cases import RadiomicsCase, from_case_record
from her2mri.radiomics.extract import (
    RegionSpec,
    extract_case,
    extract_cohort,
    perturb_mask,
    require_pyradiomics,
)

FAST = {
    "setting": {"normalize": True, "normalizeScale": 100, "binCount": 16, "minimumROIDimensions": 2},
    "imageType": {"Original": {}},
    "featureClass": {"shape": None, "firstorder": None},
}


def test_clear_error_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if name == "radiomics" or name.startswith("radiomics."):
            raise ImportError("No module named 'radiomics'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    # her2mri.extras.require uses importlib.import_module, which returns an already imported module without
    # calling __import__ (radiomics is imported when another test module ran first)
    real_import_module = importlib.import_module

    def fake_import_module(name: str, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if name == "radiomics" or name.startswith("radiomics."):
            raise ImportError("No module named 'radiomics'")
        return real_import_module(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake_import_module)
    with pytest.raises(ImportError, match=r"pip install 'her2mri\[radiomics\]'"):
        require_pyradiomics()


def _write_volume(path: Path, arr: np.ndarray) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))  # stored (z, y, x), as BreastDCEDL
    return path


def _blob_case(tmp: Path, pid: str, seed: int, shape=(10, 40, 40), spacing=(2.0, 0.7, 0.7)) -> RadiomicsCase:
    rng = np.random.default_rng(seed)
    img = rng.normal(100, 10, shape).astype(np.float32)
    zz, yy, xx = np.indices(shape)
    c = np.array(shape) // 2
    r = 4 + seed % 3
    mask = (
        ((zz - c[0]) * spacing[0]) ** 2 + ((yy - c[1]) * spacing[1]) ** 2 + ((xx - c[2]) * spacing[2]) ** 2
    ) < (r * 1.0) ** 2
    img[mask] += 40 + 5 * seed
    return RadiomicsCase(
        pid=pid,
        images={"early": _write_volume(tmp / f"{pid}_img.nii.gz", img)},
        mask_path=_write_volume(tmp / f"{pid}_mask.nii.gz", mask.astype(np.uint8)),
        spacing=spacing,
        label=seed % 2,
    )


def test_3d_extraction_rings_and_cache(tmp_path: Path) -> None:
    pytest.importorskip("radiomics")
    cases = [_blob_case(tmp_path, f"p{i}", i) for i in range(3)]
    spec = RegionSpec(tumour=True, rings_mm=(3.0,))
    t0 = time.perf_counter()
    df = extract_cohort(cases, FAST, spec, cache_dir=tmp_path / "cache", progress=False)
    first = time.perf_counter() - t0
    assert list(df.index) == ["p0", "p1", "p2"]
    assert any(c.startswith("early__tumour__original_shape_") for c in df.columns)
    assert any(c.startswith("early__ring3mm__original_firstorder_") for c in df.columns)
    vol = df["early__tumour__original_shape_MeshVolume"]
    assert vol.is_monotonic_increasing  # radius grows with the seed
    # the tumour is brighter than its ring
    assert (
        df["early__tumour__original_firstorder_Mean"] > df["early__ring3mm__original_firstorder_Mean"]
    ).all()
    t0 = time.perf_counter()
    again = extract_cohort(cases, FAST, spec, cache_dir=tmp_path / "cache", progress=False)
    assert time.perf_counter() - t0 < first
    pd.testing.assert_frame_equal(df, again)
    assert len(list((tmp_path / "cache").rglob("output.pkl"))) == 1  # one joblib.Memory entry
    # another setting -> another cache entry; retest columns are prefixed
    rt = extract_cohort(
        cases, FAST, RegionSpec(), mask_variant="erode", cache_dir=tmp_path / "cache", progress=False
    )
    assert all(c.startswith("retest__early__tumour__") for c in rt.columns)
    assert len(list((tmp_path / "cache").rglob("output.pkl"))) == 2
    assert (rt["retest__early__tumour__original_shape_MeshVolume"] < vol.values).all()


def test_crop_keeps_original_features_exact(tmp_path: Path) -> None:
    pytest.importorskip("radiomics")
    from her2mri.radiomics.cases import read_case_arrays
    from her2mri.radiomics.extract import extract_regions
    from her2mri.radiomics.rings import ring_regions

    case = _blob_case(tmp_path, "p0", 0, shape=(14, 48, 48))
    images, mask, spacing = read_case_arrays(case)
    regs = ring_regions(mask, spacing, [2.0])
    params = {**FAST, "featureClass": {"shape": None, "firstorder": None, "glcm": None}}  # normalize: true
    full = extract_regions(images["early"], regs, spacing, params, crop_pad=None)
    cropped = extract_regions(images["early"], regs, spacing, params, crop_pad=2)
    assert full.keys() == cropped.keys() and len(full) > 40
    for k in full:
        assert cropped[k] == pytest.approx(full[k], rel=1e-6, abs=1e-9), k


def test_perturb_mask_is_spacing_exact() -> None:
    m = np.zeros((5, 21, 21), bool)
    m[2, 5:16, 5:16] = True
    d = perturb_mask(m, (2.0, 0.5, 0.5), "dilate", 1.0)
    assert d[2, 3, 10] and not d[2, 2, 10] and not d[1].any()  # 1 mm = 2 px in-plane, < 1 slice
    e = perturb_mask(m, (2.0, 0.5, 0.5), "erode", 1.0)
    assert e.sum() < m.sum() and e[2, 10, 10]
    thin = np.zeros((3, 7, 7), bool)
    thin[1, 3, :] = True
    with pytest.warns(UserWarning, match="dilated"):
        fallback = perturb_mask(thin, (1, 1, 1), "erode", 1.0)
    np.testing.assert_array_equal(fallback, perturb_mask(thin, (1, 1, 1), "dilate", 1.0))


def test_true_2d_extraction_from_png(tmp_path: Path) -> None:
    pytest.importorskip("radiomics")
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(20, 60, (64, 80)).astype(np.uint8)
    mask = np.zeros((64, 80), np.uint8)
    mask[20:40, 25:55] = 255
    img[mask > 0] += 100
    Image.fromarray(img).save(tmp_path / "us.png")
    Image.fromarray(mask).save(tmp_path / "us_mask.png")
    pd.DataFrame(
        [
            {
                "case_id": "u1",
                "image": "us.png",
                "mask": "us_mask.png",
                "spacing_y": 0.1,
                "spacing_x": 0.1,
                "label": 1,
                "age": 50,
            }
        ]
    ).to_csv(tmp_path / "m.csv", index=False)
    (record,) = read_manifest(tmp_path / "m.csv", image_columns=("image",))
    case = from_case_record(record)
    assert case.is_2d and case.clinical == {"age": 50}
    feats = extract_case(case, FAST, RegionSpec(rings_mm=(1.0,)))
    names = list(feats)
    assert any("original_shape2D_" in n for n in names)
    assert not any("original_shape_" in n for n in names)  # no 3-D shape of a one-slice volume
    # 2-D area and perimeter in mm (20 x 30 px of 0.1 mm)
    assert feats["image__tumour__original_shape2D_PixelSurface"] == pytest.approx(6.0, rel=1e-6)
    assert feats["image__tumour__original_shape2D_Perimeter"] == pytest.approx(10.0, rel=0.05)


def test_feature_cache_counts_extractions_and_misses_on_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """joblib.Memory: a second call extracts nothing; another setting or a rewritten case file misses."""
    pytest.importorskip("radiomics")
    import her2mri.radiomics.extract as ex

    calls: list[str] = []

    def counting_worker(case, params, regions, mask_variant, perturb_mm, crop_pad):  # noqa: ANN001, ANN202
        calls.append(case.pid)
        return {"early__tumour__f": float(len(calls)), "crop": float(crop_pad or 0)}

    monkeypatch.setattr(ex, "_worker", counting_worker)
    cases = [_blob_case(tmp_path, f"p{i}", i) for i in range(2)]
    cache = tmp_path / "cache"
    first = ex.extract_cohort(cases, FAST, RegionSpec(), cache_dir=cache, progress=False)
    again = ex.extract_cohort(cases, FAST, RegionSpec(), cache_dir=cache, progress=False, n_jobs=1)
    assert calls == ["p0", "p1"]
    pd.testing.assert_frame_equal(first, again)
    ex.extract_cohort(cases, FAST, RegionSpec(), cache_dir=cache, progress=False, crop_pad=4)  # a parameter
    assert len(calls) == 4
    ex.extract_cohort(
        cases,
        {**FAST, "setting": {**FAST["setting"], "binCount": 8}},
        RegionSpec(),
        cache_dir=cache,
        progress=False,
    )
    assert len(calls) == 6
    time.sleep(0.01)
    cases[1].mask_path.write_bytes(cases[1].mask_path.read_bytes())  # the mask file was rewritten: new mtime
    ex.extract_cohort(cases, FAST, RegionSpec(), cache_dir=cache, progress=False)
    assert len(calls) == 8
    assert sorted(p.name for p in cache.iterdir()) == [".gitignore", "joblib"]  # joblib.Memory's own files


def test_empty_ring_is_a_data_error(tmp_path: Path) -> None:
    pytest.importorskip("radiomics")
    case = _blob_case(tmp_path, "p0", 0)
    with pytest.raises(DataError, match="breast_mask"):
        extract_case(case, FAST, RegionSpec(rings_mm=(3.0,), clip="breast_mask"))


def test_real_breast1_nrrd(real_data_dir: Path) -> None:
    pytest.importorskip("radiomics")
    d = real_data_dir / "pyradiomics_breast1" / "data"
    case = RadiomicsCase(
        pid="breast1",
        images={"t1": d / "breast1_image.nrrd"},
        mask_path=d / "breast1_label.nrrd",
        spacing=None,  # from the NRRD header
        axis_order="xyz",
    )
    feats = extract_case(case, FAST, RegionSpec(rings_mm=(3.0,)))
    assert feats["t1__tumour__original_shape_VoxelVolume"] == pytest.approx(
        143 * 0.664 * 0.664 * 2.1, rel=0.01
    )
    assert feats["t1__ring3mm__original_shape_VoxelVolume"] > 0


def test_real_ispy2_mask_with_synthetic_image(real_data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("radiomics")
    base = real_data_dir / "breastdcedl_ispy2" / "ISPY2"
    meta = pd.read_csv(base / "metadata_spy2_vis1_for_modeling.csv").set_index("pid")
    pid = "ACRIN-6698-102212"
    mask_path = next((base / "data_sample" / "masks").glob(f"{pid}*.nii.gz"))
    import nibabel as nib

    shape = nib.load(str(mask_path)).shape
    img = np.random.default_rng(0).normal(100, 10, shape).astype(np.float32)
    row = meta.loc[pid]
    spacing = (float(row["slice_thick"]), float(row["xy_spacing"]), float(row["xy_spacing"]))
    case = RadiomicsCase(
        pid=pid,
        images={"early": _write_volume(tmp_path / "img.nii", img)},
        mask_path=mask_path,
        spacing=spacing,
    )
    first_order = {**FAST, "featureClass": {"firstorder": None}}  # 3-D shape of 42k scattered voxels is slow
    feats = extract_case(case, first_order, RegionSpec())
    # pyradiomics TotalEnergy = Energy x voxel volume: the CSV spacing (not the 1 mm header) was used
    ratio = (
        feats["early__tumour__original_firstorder_TotalEnergy"]
        / feats["early__tumour__original_firstorder_Energy"]
    )
    assert ratio == pytest.approx(float(np.prod(spacing)), rel=1e-6)
    assert spacing != (1.0, 1.0, 1.0)


def test_derived_wash_images_are_phase_subtractions(synthetic_cohort, tmp_path: Path) -> None:
    from her2mri.data.io import read_volume
    from her2mri.data.readers import load_breastdcedl
    from her2mri.radiomics.cases import from_case_record, read_case_arrays

    root, csv_path = synthetic_cohort
    record = load_breastdcedl(root, csv_path)[0]
    case = from_case_record(record, ("early", "wash_in", "wash_out"))
    pre, early, late = (read_volume(p) for p in record.phase_paths)
    images, mask, _ = read_case_arrays(case)
    assert list(images) == ["early", "wash_in", "wash_out"]
    np.testing.assert_array_equal(images["wash_in"], early - pre)
    np.testing.assert_array_equal(images["wash_out"], late - early)
    assert images["wash_out"].dtype == np.float32
    # every phase file behind a derived image is a source file (cache key)
    assert set(case.source_files()) == {*map(Path, record.phase_paths), Path(record.mask_path)}
    with pytest.raises(ValueError, match="'washout'.*wash_out"):
        from_case_record(record, ("washout",))
    pytest.importorskip("radiomics")  # the checks above ran; the features need the extra
    df = extract_cohort([case], FAST, RegionSpec(), cache_dir=tmp_path / "c", progress=False)
    mean = df.loc[record.pid, "wash_out__tumour__original_firstorder_Mean"]
    # pyradiomics z-scores the whole image (x normalizeScale) before computing the features
    wo = images["wash_out"].astype(np.float64)
    expected = ((wo - wo.mean()) / wo.std() * 100)[mask].mean()
    assert mean == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("backend", ["loky", "dask"])
def test_parallel_backends_give_the_same_table(tmp_path: Path, backend: str) -> None:
    """Extraction over cases through joblib's backends (local processes, a Dask cluster): one table."""
    pytest.importorskip("radiomics")
    if backend == "dask":
        pytest.importorskip("distributed", reason='dask backend: pip install "her2mri[distributed]"')
    cases = [_blob_case(tmp_path, f"p{i}", i, shape=(8, 32, 32)) for i in range(3)]
    ref = extract_cohort(cases, FAST, RegionSpec(), progress=False)
    got = extract_cohort(cases, FAST, RegionSpec(), n_jobs=2, backend=backend, progress=False)
    pd.testing.assert_frame_equal(ref, got)
    with pytest.raises(ValueError, match="backend"):
        extract_cohort(cases, FAST, RegionSpec(), backend="threading", progress=False)
