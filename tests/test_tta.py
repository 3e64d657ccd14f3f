"""Test-time augmentation (issue 15 item 7): transforms, mean probability, her2mri-eval option."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from her2mri.training.tta import TTA_MODES, check_tta, tta_probabilities, tta_transforms


class _Positional(nn.Module):
    """Logits from a position-weighted sum: not invariant to flips or rotations."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.w = torch.linspace(-1, 1, size * size).reshape(size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.w).flatten(1).sum(1) / 10
        return torch.stack([-s, s], dim=1)


def test_transforms_are_the_documented_symmetries():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert [len(tta_transforms(m)) for m in TTA_MODES] == [1, 3, 8]
    flips = [t(x) for t in tta_transforms("flip")]
    assert (
        torch.equal(flips[0], x) and torch.equal(flips[1], x.flip(-1)) and torch.equal(flips[2], x.flip(-2))
    )
    d8 = [t(x) for t in tta_transforms("flip_rot")]
    assert len({tuple(v.flatten().tolist()) for v in d8}) == 8  # eight distinct images of an asymmetric one
    assert torch.equal(d8[0], x)
    with pytest.raises(ValueError, match="tta='rot'"):
        check_tta("rot")


@pytest.mark.parametrize("mode", TTA_MODES)
def test_mean_probability_equals_the_manual_average(mode):
    torch.manual_seed(0)
    model = _Positional(8)

    def forward(t: torch.Tensor) -> torch.Tensor:  # any (B, ..., H, W) input: sum the leading channels
        return model(t.reshape(t.shape[0], -1, 8, 8).sum(1))

    for shape in ((2, 3, 8, 8), (2, 3, 3, 8, 8)):  # single view and three views
        x = torch.randn(*shape)
        p = tta_probabilities(forward, x, mode)
        manual = torch.stack([torch.softmax(forward(t(x)), -1)[:, 1] for t in tta_transforms(mode)])
        assert p.shape == (len(tta_transforms(mode)), 2)
        assert torch.allclose(p, manual)
        if mode != "none":
            assert not torch.allclose(p[0], p[1])  # the transforms change what the model sees


def test_flip_rot_needs_square_images():
    with pytest.raises(ValueError, match="square"):
        tta_probabilities(lambda t: torch.zeros(t.shape[0], 2), torch.zeros(1, 3, 4, 6), "flip_rot")


def test_eval_config_has_tta():
    from _helpers import compose_config

    assert compose_config("eval", ["ckpt_path=x"]).tta == "none"
    assert compose_config("eval", ["ckpt_path=x", "tta=flip_rot"]).tta == "flip_rot"
