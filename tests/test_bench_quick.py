"""Fast preprocessing paths (exact bracketed percentiles, compact reads) and pieces of tools/bench.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from her2mri.data import normalize
from her2mri.data.io import load_case_arrays, read_volume
from her2mri.data.pipeline import preprocess_case
from her2mri.data.prepare import preprocess_record
from her2mri.data.preprocess_config import PreprocessConfig
from her2mri.data.readers import load_breastdcedl

ROOT = Path(__file__).resolve().parents[1]
Q = [0.0, 0.5, 2.0, 50.0, 95.0, 98.0, 99.0, 100.0]


def _bench():
    spec = importlib.util.spec_from_file_location("her2mri_bench", ROOT / "tools" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["her2mri_bench"] = mod
    spec.loader.exec_module(mod)
    return mod


def _large_arrays():
    rng = np.random.default_rng(0)
    n = normalize._BRACKET_MIN_SIZE + 1234
    return [
        rng.gamma(2.0, 200.0, n).astype(np.uint16),
        np.asfortranarray(rng.gamma(2.0, 200.0, (20, 120, 120)).astype(np.uint16)),  # NIfTI-like layout
        np.sort(rng.integers(0, 40, n)).astype(np.int16)[::-1].copy(),  # heavy ties, sorted
        rng.integers(-(2**40), 2**40, n),  # wide int64 range
        rng.normal(0.0, 5.0, n).astype(np.float32),
        np.repeat(np.arange(500, dtype=np.float32), n // 500 + 1),
        np.zeros(n, dtype=np.uint16),
    ]


@pytest.mark.parametrize("i", range(7))
def test_bracketed_percentiles_are_exact(i):
    a = _large_arrays()[i]
    assert a.size >= normalize._BRACKET_MIN_SIZE
    np.testing.assert_array_equal(normalize.exact_percentiles(a, Q), np.percentile(a.astype(np.float64), Q))


def test_missed_bracket_falls_back_and_stays_exact():
    # every voxel the (seeded) sample picks is 0, so its brackets hold nothing near the upper percentiles
    n = normalize._BRACKET_MIN_SIZE * 2
    picked = np.random.default_rng(0).integers(0, n, size=normalize._BRACKET_SAMPLE)
    for dtype in (np.uint16, np.float32):
        a = np.random.default_rng(4).integers(1, 3000, n).astype(dtype)
        a[picked] = 0
        k = int(0.98 * (n - 1))
        assert normalize._bracket_select(a, [k, k + 1]) is None
        want = np.percentile(a.astype(np.float64), Q)
        np.testing.assert_array_equal(normalize.exact_percentiles(a, Q), want)


def test_compact_read_keeps_values_and_layout(tmp_path):
    vol = np.random.default_rng(1).integers(0, 4000, (6, 20, 24)).astype(np.float64)  # as the real release
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    compact = read_volume(path, dtype=None, contiguous=False)
    assert compact.dtype == np.uint16 and not compact.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(compact, vol)
    default = read_volume(path)
    assert default.dtype == np.float32 and default.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(default, vol)
    frac = vol + 0.5
    nib.save(nib.Nifti1Image(frac, np.eye(4)), str(path))
    assert read_volume(path, dtype=None).dtype == np.float32  # not integer-valued: float32, never float64


@pytest.mark.parametrize(
    "cfg",
    [
        PreprocessConfig(image_size=32),
        PreprocessConfig(image_size=32, views="adjacent", stats_mask="tumour_bbox"),
        PreprocessConfig(image_size=32, normalization="clip_global_q99", stats_mask="foreground"),
        PreprocessConfig(image_size=32, normalization="zscore", slice_selection="largest"),
    ],
)
def test_fast_pipeline_gives_the_float32_pipeline_result(synthetic_cohort, cfg):
    rec = load_breastdcedl(*synthetic_cohort)[0]
    fast = preprocess_record(rec, cfg)  # uint16, Fortran-ordered volumes
    phases, mask, spacing = load_case_arrays(rec)  # float32, C-contiguous
    assert phases.dtype == np.float32 and phases.flags["C_CONTIGUOUS"]
    ref = preprocess_case(phases, mask, spacing, cfg, case_id=rec.pid)
    np.testing.assert_array_equal(fast["images"], ref.images)
    np.testing.assert_array_equal(fast["masks"], ref.masks)
    np.testing.assert_array_equal(fast["slice_idx"], ref.slice_idx)


def test_bench_prep_section_and_table(tmp_path):
    bench = _bench()
    p = {"prep_patients": 3, "prep_shape": (12, 40, 40), "prep_repeats": 1, "unique": 2}
    out = bench.section_prep(tmp_path, p)
    assert out["patients"] == 3 and out["bare_read_s"] > 0
    assert 0 < out["ratio_preprocess_vs_bare"] < 100 and out["traced_peak_mb"] > 0
    # the third patient is a hard link of the first under a new pid
    root = tmp_path / "cohort-12x40x40-3"
    a = root / "mask" / "BENCH-00000_spy2_vis1_mask.nii.gz"
    b = root / "mask" / "BENCH-00002_spy2_vis1_mask.nii.gz"
    assert a.read_bytes() == b.read_bytes()
    rows = bench.table({"prep": out})
    verdict = [r for r in rows if "preprocessing / bare" in r[0]][0]
    assert verdict[3] == ("met" if out["ratio_preprocess_vs_bare"] <= 1.5 else "NOT MET")


def test_host_sync_counter_counts_and_restores():
    bench = _bench()
    orig = torch.Tensor.item
    t = torch.tensor([1.5])
    with bench.HostSyncCounter() as sync:
        t.item()  # inactive: not counted
        sync.active = True
        t.item()
        float(t)
        bool(t > 0)
    assert sync.count == 3
    assert torch.Tensor.item is orig


def test_gpu_section_skips_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the GPU section runs for real in tools/bench.py")
    assert _bench().section_gpu({}) == {"skipped": "no CUDA device"}


def _bench_cpu():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        return importlib.import_module("bench_cpu")
    finally:
        sys.path.remove(str(ROOT / "tools"))


def test_cpu_options_start_from_the_module_defaults():
    from omegaconf import OmegaConf

    bc = _bench_cpu()
    cfg = OmegaConf.load(ROOT / "her2mri" / "conf" / "module" / "default.yaml")
    assert bc.module_defaults() == {"channels_last": cfg.channels_last, "compile": bool(cfg.compile)}
    # "default" is her2mri's configured default; the NCHW layout is its own option, compared against it
    assert bc.TRAIN_OPTIONS["default"] == {} and bc.TRAIN_OPTIONS["channels_first"] == {
        "channels_last": False
    }


def test_cpu_train_isolated_halves_the_batch_when_killed(monkeypatch, tmp_path):
    import json
    import subprocess

    bc = _bench_cpu()
    calls = []

    def fake_run(cmd, **kw):
        batch, out = int(cmd[-4]), Path(cmd[-1])
        calls.append(batch)
        if batch > 4:  # as the out-of-memory killer would: SIGKILL, no output
            return subprocess.CompletedProcess(cmd, -9, "", "")
        out.write_text(json.dumps({"batch": batch, "ratio_her2mri_vs_plain": 1.0}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(bc.subprocess, "run", fake_run)
    res = bc.train_isolated("thda_resnet34", "default", 224, 16, (1, 3), tmp_path)
    assert calls == [16, 8, 4] and res["batch"] == 4
    assert "batch 16 did not complete" in res["note"] and "killed" in res["note"]
    # an error that is not about memory is reported at once, without halving the batch
    calls.clear()
    monkeypatch.setattr(
        bc.subprocess,
        "run",
        lambda cmd, **kw: calls.append(1) or subprocess.CompletedProcess(cmd, 1, "", "OSError"),
    )
    res = bc.train_isolated("thda_resnet34", "default", 224, 16, (1, 3), tmp_path)
    assert calls == [1] and res["batch"] == 16 and "OSError" in res["error"]
    # every batch down to 2 killed: an error result, not an exception
    monkeypatch.setattr(bc.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, -9, "", "x"))
    assert "error" in bc.train_isolated("thda_resnet34", "default", 224, 16, (1, 3), tmp_path)


def test_bench_radiomics_growth_is_computed_per_stage():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        br = importlib.import_module("bench_radiomics")
    finally:
        sys.path.remove(str(ROOT / "tools"))

    def rec(n, ex, sel):
        return {
            "experiment": "uran", "n": n, "status": "ok", "wall_s": 3 * (ex + sel), "cpu_s": ex + sel,
            "extraction_s_per_case": 3 * ex / n, "stage_cpu_s": {"extraction": ex, "signature:uran": sel},
            "loadavg": (2.0, 3.5),
        }  # fmt: skip

    records = [rec(30, 9.0, 20.0), rec(120, 36.0, 100.0), {"experiment": "hu2025", "n": 120, "status": "x"}]
    (line,) = br.growth_lines(records)
    assert "30 -> 120 patients (linear: 4x)" in line
    assert "extraction 4.00x (1.00 of linear)" in line and "uran 5.00x (1.25 of linear)" in line
    assert "total 4.69x" in line
    row = br.table_row(records[0])
    assert row.startswith("| uran | 30 | 2.0-3.5 | 87 | 29 | 0.30 (0.90) |") and "uran 69 %" in row
