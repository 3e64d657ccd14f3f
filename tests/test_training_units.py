"""Unit tests of the training building blocks: losses, aggregation, metrics, scheduler, outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from her2mri.runs.outputs import read_patient_predictions, write_metrics_json, write_predictions
from her2mri.stats.thresholds import youden_threshold
from her2mri.training.aggregation import aggregate_patients, collect_slices
from her2mri.training.losses import FocalLoss, balanced_class_weights, build_loss
from her2mri.training.metrics import binary_metrics
from her2mri.training.schedulers import cosine_with_warmup


def _toy_slices(seed: int = 0, n_pat: int = 12):
    rng = np.random.default_rng(seed)
    pids, sidx, labels, probs = [], [], [], []
    for i in range(n_pat):
        lab = i % 2
        for s in range(rng.integers(1, 6)):
            pids.append(f"P{i:03d}")
            sidx.append(int(s * 3 + 1))
            labels.append(lab)
            probs.append(float(rng.random()))
    return pids, np.array(sidx), np.array(labels), np.array(probs)


@pytest.mark.parametrize("method", ["median", "mean", "max"])
def test_aggregation_independent_of_row_order_and_batching(method):
    pids, sidx, labels, probs = _toy_slices()
    ref = aggregate_patients(collect_slices(pids, sidx, labels, probs), method)
    rng = np.random.default_rng(1)
    for _ in range(3):
        perm = rng.permutation(len(pids))
        # emulate batches of size 3 arriving in shuffled order, plus DDP padding duplicates
        batches = [perm[i : i + 3] for i in range(0, len(perm), 3)]
        order = np.concatenate(batches[::-1] + [perm[:2]])
        got = aggregate_patients(
            collect_slices([pids[i] for i in order], sidx[order], labels[order], probs[order]), method
        )
        assert got.pids == ref.pids
        np.testing.assert_array_equal(got.probs, ref.probs)
        np.testing.assert_array_equal(got.n_slices, ref.n_slices)
        np.testing.assert_array_equal(got.labels, ref.labels)


def test_aggregation_values_and_errors():
    s = collect_slices(["b", "a", "a", "a"], [0, 2, 0, 1], [1, 0, 0, 0], [0.9, 0.1, 0.5, 0.3])
    assert s.pids == ("a", "a", "a", "b")
    assert s.slice_idx.tolist() == [0, 1, 2, 0]
    assert aggregate_patients(s, "median").probs.tolist() == [0.3, 0.9]
    assert aggregate_patients(s, "max").probs.tolist() == [0.5, 0.9]
    assert aggregate_patients(s, "mean").probs[0] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="aggregation method='mode'"):
        aggregate_patients(s, "mode")
    with pytest.raises(ValueError, match="patient 'a'"):
        aggregate_patients(collect_slices(["a", "a"], [0, 1], [0, 1], [0.1, 0.2]))
    with pytest.raises(ValueError, match="one length"):
        collect_slices(["a"], [0, 1], [0], [0.1])


def test_metrics_known_values_and_nan_when_undefined():
    m = binary_metrics(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert m["auroc"] == pytest.approx(0.75)
    assert m["sensitivity"] == 0.5 and m["specificity"] == 1.0
    assert m["balanced_accuracy"] == 0.75 and m["accuracy"] == 0.75
    one = binary_metrics(np.array([0.2, 0.7]), np.array([0, 0]))
    assert math.isnan(one["auroc"]) and math.isnan(one["sensitivity"]) and one["specificity"] == 0.5
    with pytest.raises(ValueError, match="threshold=1.5"):
        binary_metrics(np.array([0.2]), np.array([0]), threshold=1.5)
    thr = youden_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.6, 0.7]))
    assert 0.2 < thr <= 0.6
    assert binary_metrics(np.array([0.1, 0.2, 0.6, 0.7]), np.array([0, 0, 1, 1]), thr)["accuracy"] == 1.0
    # the one rule (>=): a probability equal to the threshold is positive
    at = binary_metrics(np.array([0.3, 0.5]), np.array([0, 1]), 0.5)
    assert at["sensitivity"] == 1.0 and at["specificity"] == 1.0


def test_losses():
    logits = torch.randn(8, 2)
    target = torch.tensor([0, 1, 0, 0, 1, 0, 0, 0])
    w = balanced_class_weights(target.tolist())
    assert w == pytest.approx([8 / (2 * 6), 8 / (2 * 2)])
    ce = build_loss("ce", class_weights=w, label_smoothing=0.1)
    ref = F.cross_entropy(logits, target, weight=torch.tensor(w), label_smoothing=0.1)
    assert float(ce(logits, target)) == pytest.approx(float(ref), rel=1e-6)
    # focal with gamma 0 equals (weighted) cross-entropy
    f0 = FocalLoss(gamma=0.0, weight=torch.tensor(w))
    assert float(f0(logits, target)) == pytest.approx(
        float(F.cross_entropy(logits, target, weight=torch.tensor(w)))
    )
    f2 = build_loss("focal", focal_gamma=2.0)
    assert float(f2(logits, target)) < float(F.cross_entropy(logits, target))
    with pytest.raises(ValueError, match="loss name='hinge'"):
        build_loss("hinge")
    with pytest.raises(ValueError, match="class_weights"):
        build_loss("ce", class_weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="outside"):
        balanced_class_weights([0, 2])


def test_cosine_with_warmup_shape():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = cosine_with_warmup(opt, total_steps=20, warmup_steps=4, min_lr_ratio=0.0)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2) and lrs[3] == pytest.approx(0.8) and lrs[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    assert lrs[-1] < 0.05
    with pytest.raises(ValueError, match="total_steps=0"):
        cosine_with_warmup(opt, total_steps=0)


@pytest.mark.parametrize(("total", "warm", "floor"), [(20, 4, 0.0), (37, 0, 0.01), (50, 5, 0.1)])
def test_cosine_with_warmup_is_torch_and_follows_the_closed_form(total, warm, floor):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.3)
    sched = cosine_with_warmup(opt, total_steps=total, warmup_steps=warm, min_lr_ratio=floor)
    assert type(sched).__module__ == "torch.optim.lr_scheduler"
    for step in range(total):
        if step < warm:
            factor = (step + 1) / (warm + 1)
        else:
            factor = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
        assert opt.param_groups[0]["lr"] == pytest.approx(0.3 * factor, rel=1e-9, abs=1e-12), step
        opt.step()
        sched.step()


def test_ce_loss_is_torch_with_unsaved_weights():
    loss = build_loss("ce", class_weights=[0.5, 2.0], label_smoothing=0.1)
    assert isinstance(loss, torch.nn.CrossEntropyLoss) and "weight" not in loss.state_dict()
    logits, target = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 0, 1])
    expected = torch.nn.functional.cross_entropy(
        logits, target, weight=torch.tensor([0.5, 2.0]), label_smoothing=0.1
    )
    assert torch.equal(loss(logits, target), expected)
    assert balanced_class_weights([0, 0, 0, 1, 1, 1, 1, 1]) == pytest.approx([8 / 6, 8 / 10])
    assert balanced_class_weights([1, 1]) == [1.0, 0.5]  # n / (k * n_c) with k = 2; an absent class gets 1


def test_outputs_round_trip(tmp_path):
    pids, sidx, labels, probs = _toy_slices(n_pat=6)
    slices = collect_slices(pids, sidx, labels, probs)
    patients = aggregate_patients(slices)
    p_path, s_path = write_predictions(tmp_path, "val", slices, patients, sites={"P000": "A"})
    back = read_patient_predictions(p_path)
    np.testing.assert_array_equal(back.probs, patients.probs)
    assert p_path.read_text().splitlines()[0] == "pid,label,prob,n_slices,site"
    assert s_path.read_text().splitlines()[0] == "pid,slice_idx,label,prob"
    mpath = write_metrics_json(
        tmp_path / "metrics.json", {"val/auroc_patient": float("nan"), "x": 1.0}, {"a": 1}
    )
    payload = json.loads(mpath.read_text())
    assert payload["status"] == "ok" and payload["metrics"]["val/auroc_patient"] is None


def test_ensure_synthetic_cohort_reuses_and_rebuilds(tmp_path):
    from her2mri.data.build import ensure_synthetic_cohort

    root = tmp_path / "syn"
    ensure_synthetic_cohort(root, n=4, seed=0, shape=[8, 32, 32], difficulty=1.0)
    csv = root / "metadata.csv"
    first = csv.stat().st_mtime_ns
    ensure_synthetic_cohort(root, n=4, seed=0, shape=[8, 32, 32], difficulty=1.0)
    assert csv.stat().st_mtime_ns == first  # reused
    ensure_synthetic_cohort(root, n=4, seed=0, shape=[8, 32, 32], difficulty=0.5)
    assert '"difficulty": 0.5' in (root / ".her2mri_complete").read_text()
    assert csv.is_file()
