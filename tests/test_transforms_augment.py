"""dce_augmentation (MONAI random dict transforms): identical geometry for every phase, view and the mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from her2mri.data.augment import dce_augmentation
from her2mri.data.errors import apply_transform


def _planted(h=48, views=3):
    img = torch.zeros(views, 3, h, h)
    img[..., 10:22, 28:40] = torch.tensor([0.4, 0.7, 1.0]).view(3, 1, 1)  # bright square, phases differ
    mask = torch.zeros(1, h, h)
    mask[:, 10:22, 28:40] = 1
    return img, mask


def test_hflip_moves_square_identically():
    img, mask = _planted()
    aug = dce_augmentation(prob_hflip=1.0, prob_affine=0.0).set_random_state(seed=0)
    out = aug({"image": img, "mask": mask, "pid": "p"})
    assert type(out["image"]) is torch.Tensor and type(out["mask"]) is torch.Tensor  # no MONAI metadata
    assert torch.equal(out["image"], torch.flip(img, [-1])) and torch.equal(
        out["mask"], torch.flip(mask, [-1])
    )
    assert out["pid"] == "p" and set(out) == {"image", "mask", "pid"}


def test_affine_identical_for_every_channel_view_and_mask():
    img, mask = _planted()
    aug = dce_augmentation(prob_hflip=1.0, rotate_deg=10, scale_range=(0.9, 1.1), prob_affine=1.0)
    out = aug.set_random_state(seed=3)({"image": img, "mask": mask})
    flipped = torch.flip(img, [-1])
    assert not torch.allclose(out["image"], flipped)  # the affine moved it beyond the flip
    support = out["image"] > 0.5 * torch.tensor([0.4, 0.7, 1.0]).view(3, 1, 1)
    for v in range(3):
        for c in range(3):
            assert torch.equal(support[v, c], support[0, 0])  # same geometry everywhere
    np.testing.assert_allclose(out["image"][:, 1] / 0.7, out["image"][:, 0] / 0.4, atol=1e-5)  # ratios kept
    m = out["mask"][0].bool()
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}  # nearest for the mask
    iou = (m & support[0, 0]).sum() / (m | support[0, 0]).sum()
    assert iou > 0.85
    cols = torch.nonzero(m)[:, 1].float().mean()
    assert abs(float(cols) - (47 - 33.5)) < 4.0  # mirrored around the image centre, then small rotation


def test_reproducible_per_seed():
    img, _ = _planted(views=1)
    img = img[0]
    kw = {
        "prob_hflip": 0.5,
        "prob_affine": 1.0,
        "gamma_range": (0.8, 1.2),
        "brightness": 0.1,
        "prob_intensity": 1.0,
    }
    a = dce_augmentation(**kw).set_random_state(seed=7)
    b = dce_augmentation(**kw).set_random_state(seed=7)
    seq_a = [a({"image": img})["image"] for _ in range(3)]
    seq_b = [b({"image": img})["image"] for _ in range(3)]
    for x, y in zip(seq_a, seq_b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(seq_a[0], seq_a[1])  # a new draw per call
    c = dce_augmentation(**kw).set_random_state(seed=8)
    assert not all(torch.equal(x, c({"image": img})["image"]) for x in seq_a)


def test_intensity_jitter_joint_and_per_phase():
    ramp = torch.linspace(0.0, 1.0, 64).view(8, 8)
    x = ramp.expand(3, 8, 8).clone()
    joint = dce_augmentation(prob_hflip=0, prob_affine=0, gamma_range=(0.5, 2.0), prob_intensity=1.0)
    out = joint.set_random_state(seed=1)({"image": x})["image"]
    assert torch.allclose(out[0], out[1]) and torch.allclose(out[1], out[2]) and not torch.allclose(out, x)
    per = dce_augmentation(
        prob_hflip=0, prob_affine=0, gamma_range=(0.5, 2.0), prob_intensity=1.0, intensity_mode="per_phase"
    )
    d = per.set_random_state(seed=1)({"image": x, "mask": torch.ones(1, 8, 8)})
    assert not torch.allclose(d["image"][0], d["image"][1])
    assert d["image"].min() >= 0 and d["image"].max() <= 1
    assert torch.equal(d["mask"], torch.ones(1, 8, 8))  # no jitter on masks
    shift = dce_augmentation(prob_hflip=0, prob_affine=0, brightness=0.5, prob_intensity=1.0)
    moved = shift.set_random_state(seed=2)({"image": x})["image"]
    delta = (moved - x)[:, 3:5].flatten()  # mid-range values: not clipped
    assert float(delta.abs().max()) > 0 and torch.allclose(delta, delta[0].expand_as(delta), atol=1e-6)
    assert moved.min() >= 0 and moved.max() <= 1


def test_gamma_is_x_to_the_gamma_for_phases_spanning_0_1():
    aug = dce_augmentation(prob_hflip=0, prob_affine=0, gamma_range=(2.0, 2.0), prob_intensity=1.0,
                           intensity_mode="per_phase", channel_dim=-4).set_random_state(0)  # fmt: skip
    x = torch.rand(3, 1, 8, 8)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = 0.0, 1.0
    assert torch.allclose(aug({"image": x})["image"], x**2, atol=1e-5)


@pytest.mark.parametrize("views", [None, 3])
def test_joint_gamma_is_one_function_for_all_phases(views):
    """Joint jitter maps equal values of different phases to equal values (enhancement ratios kept).

    The phases span different ranges (pre [0, 0.5], early/late [0, 1]): a gamma over each phase's own range
    would send the same 0.25 of pre and early to different values.
    """
    x = torch.linspace(0.0, 1.0, 64).view(8, 8).expand(3, 8, 8).clone()
    x[0] *= 0.5
    if views:
        x = x.expand(views, 3, 8, 8).clone()
    aug = dce_augmentation(prob_hflip=0, prob_affine=0, gamma_range=(2.0, 2.0), prob_intensity=1.0)
    out = aug.set_random_state(seed=0)({"image": x})["image"]
    assert torch.allclose(out, x**2, atol=1e-5)  # the merged sample spans [0, 1]: x ** gamma for every phase


def test_probabilities_zero_leave_the_sample_unchanged():
    img, mask = _planted()
    aug = dce_augmentation(prob_hflip=0, prob_affine=0, gamma_range=(0.5, 2.0), prob_intensity=0.0)
    out = aug.set_random_state(seed=0)({"image": img, "mask": mask})
    assert torch.equal(out["image"], img) and torch.equal(out["mask"], mask)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"prob_hflip": 1.5}, "1.5"),
        ({"rotate_deg": -5}, "-5"),
        ({"scale_range": (1.2, 0.9)}, "1.2"),
        ({"gamma_range": (0.0, 1.0)}, "gamma_range"),
        ({"brightness": 2}, "brightness=2"),
        ({"intensity_mode": "perphase"}, "Did you mean 'per_phase'"),
        ({"channel_dim": -2}, "channel_dim"),
    ],
)
def test_bad_arguments(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        dce_augmentation(**kwargs)


def test_bad_image_shape_names_it():
    with pytest.raises(ValueError, match=r"shape \(2, 8, 8\)"):
        apply_transform(dce_augmentation(), {"image": torch.zeros(2, 8, 8)})
