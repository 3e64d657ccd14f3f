"""Units of her2mri.runs: per-site metrics, ensemble means, failure values, reseeding, resolvers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from her2mri.runs.evaluate import ensemble_metrics, mean_patient_probs, mean_slice_probs
from her2mri.runs.faults import CrashAtEpoch, SimulatedCrash, failure_value, run_task
from her2mri.runs.resolvers import job_device, register_resolvers
from her2mri.runs.resume import epoch_seed, reseed_all
from her2mri.runs.sites import site_key, site_metrics
from her2mri.training.aggregation import PatientPredictions, aggregate_patients, collect_slices
from her2mri.training.metrics import binary_metrics


def _patients(pids, labels, probs) -> PatientPredictions:
    return PatientPredictions(
        tuple(pids),
        np.asarray(labels, dtype=np.int64),
        np.asarray(probs, dtype=np.float64),
        np.ones(len(pids), dtype=np.int64),
    )


def test_site_metrics_match_metrics_per_subset():
    rng = np.random.default_rng(0)
    n = 30
    pids = [f"p{i:02d}" for i in range(n)]
    labels = np.r_[np.zeros(15, dtype=int), np.ones(15, dtype=int)]
    probs = rng.random(n)
    sites = {p: ("Site A" if i % 3 else "B/2") for i, p in enumerate(pids)}
    out = site_metrics(_patients(pids, labels, probs), sites, "all", threshold=0.4)
    for name, key in (("Site A", "Site_A"), ("B/2", "B_2")):
        sel = np.asarray([sites[p] == name for p in pids])
        ref = binary_metrics(probs[sel], labels[sel], 0.4)
        assert out[f"all/site_{key}/auroc_patient"] == pytest.approx(ref["auroc"])
        assert out[f"all/site_{key}/sensitivity_patient"] == pytest.approx(ref["sensitivity"])
        assert out[f"all/site_{key}/n_patients"] == sel.sum()
    assert site_metrics(_patients(pids, labels, probs), None, "all") == {}
    assert site_metrics(_patients(pids, labels, probs), {p: None for p in pids}, "all") == {}
    assert site_key(None) == "unknown" and site_key(" x y ") == "x_y"


def test_site_metrics_one_class_site_is_nan():
    p = _patients(["a", "b", "c"], [0, 0, 1], [0.2, 0.3, 0.9])
    out = site_metrics(p, {"a": "X", "b": "X", "c": "Y"}, "test")
    assert math.isnan(out["test/site_X/auroc_patient"]) and math.isnan(out["test/site_Y/auroc_patient"])
    assert out["test/site_X/specificity_patient"] == 1.0


def test_mean_patient_and_slice_probs():
    rng = np.random.default_rng(1)
    pids = ["a", "a", "b", "b", "c", "c"]
    sidx = [0, 1, 0, 1, 0, 1]
    labels = [0, 0, 1, 1, 0, 0]
    members_s = [collect_slices(pids, sidx, labels, rng.random(6)) for _ in range(3)]
    members_p = [aggregate_patients(s, "median") for s in members_s]
    ens = mean_patient_probs(members_p)
    np.testing.assert_allclose(ens.probs, np.mean([m.probs for m in members_p], axis=0))
    assert ens.pids == ("a", "b", "c")
    ens_s = mean_slice_probs(members_s)
    np.testing.assert_allclose(ens_s.probs, np.mean([m.probs for m in members_s], axis=0))
    other = collect_slices(pids, [0, 2, 0, 1, 0, 1], labels, rng.random(6))
    assert mean_slice_probs([members_s[0], other]) is None
    m = ensemble_metrics(ens, ens_s, "test", 0.5)
    assert m["test/auroc_patient"] == pytest.approx(binary_metrics(ens.probs, ens.labels)["auroc"])
    assert m["test/n_patients"] == 3 and m["test/n_slices"] == 6
    with pytest.raises(ValueError, match="member 1 scored other patients"):
        mean_patient_probs([members_p[0], _patients(["a", "b"], [0, 1], [0.1, 0.2])])
    with pytest.raises(ValueError, match="at least one member"):
        mean_patient_probs([])


def test_failure_values_and_run_task():
    assert failure_value("maximize") == -math.inf and failure_value("minimize") == math.inf
    assert math.isnan(failure_value(None))
    with pytest.raises(ValueError, match="direction='up'"):
        failure_value("up")

    def boom(cfg):
        raise RuntimeError("bad job")

    cfg = OmegaConf.create({})
    with pytest.raises(RuntimeError, match="bad job"):
        run_task(boom, cfg, multirun=False)
    assert math.isnan(run_task(boom, cfg, multirun=True))
    assert run_task(lambda c: {"m": 0.7}, cfg, metric=lambda m: m["m"], multirun=True) == 0.7


def test_epoch_seed_and_reseed_all():
    assert epoch_seed(3, 0) == 3 and epoch_seed(3, 1) != epoch_seed(3, 2)
    with pytest.raises(ValueError, match="epoch=-1"):
        epoch_seed(0, -1)

    class DS(torch.utils.data.Dataset):
        def __init__(self):
            self.seeds = []

        def __len__(self):
            return 8

        def __getitem__(self, i):
            return i

        def reseed(self, seed):
            self.seeds.append(seed)

    ds = DS()
    loader = DataLoader(ds, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    reseed_all(11, loader)
    first = next(iter(loader)).tolist()
    drop_a = torch.rand(3)
    next(iter(loader))  # the generator moves on
    reseed_all(11, loader)
    assert next(iter(loader)).tolist() == first
    assert torch.equal(torch.rand(3), drop_a)
    assert ds.seeds == [11, 11]


def test_crash_callback_arguments():
    with pytest.raises(ValueError, match="epoch=0"):
        CrashAtEpoch(epoch=0)
    with pytest.raises(ValueError, match="mode='boom'"):
        CrashAtEpoch(epoch=1, mode="boom")

    class T:
        current_epoch = 1

    CrashAtEpoch(epoch=2, mode="raise").on_train_batch_start(T(), None, None, 0)  # not yet: no crash
    with pytest.raises(SimulatedCrash, match="epoch 1"):
        CrashAtEpoch(epoch=1, mode="raise").on_train_batch_start(T(), None, None, 0)


def test_job_device_resolver():
    register_resolvers()
    register_resolvers()  # idempotent
    assert job_device(4) == 0  # no multirun job outside Hydra
    assert OmegaConf.create({"d": "${job_device:2}"}).d == 0
    with pytest.raises(ValueError, match="n_devices=0"):
        job_device(0)
