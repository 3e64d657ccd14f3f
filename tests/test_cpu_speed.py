"""CPU speed settings: ``channels_last="auto"`` (NHWC weights on the CPU) and inference mode in evaluation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _helpers import compose_config

from her2mri.training.module import HER2Classifier


def _pair(name: str = "resnet34") -> tuple[HER2Classifier, HER2Classifier]:
    torch.manual_seed(0)
    ref = HER2Classifier({"name": name, "pretrained": False}, class_weights=None)
    auto = HER2Classifier({"name": name, "pretrained": False}, class_weights=None, channels_last="auto")
    auto.model.load_state_dict(ref.model.state_dict())
    return ref.eval(), auto.eval()


def _conv_weights(module: HER2Classifier) -> list[torch.Tensor]:
    return [p for p in module.model.parameters() if p.ndim == 4 and p.shape[-1] > 1]  # 1x1: both layouts


def test_auto_channels_last_on_cpu_gives_the_same_outputs_and_trains():
    ref, auto = _pair()
    x = torch.randn(2, 3, 32, 32)
    assert not any(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(auto))
    # the first pass converts the weights, here under inference mode: they must stay ordinary tensors
    p_auto, p_ref = auto.predict_proba(x), ref.predict_proba(x)
    assert p_auto.is_inference() and p_ref.is_inference()
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(auto))
    assert not any(w.is_inference() for w in auto.parameters())
    torch.testing.assert_close(p_auto, p_ref, atol=1e-5, rtol=0)
    # a training step from the converted weights: same loss and gradients up to float rounding
    y = torch.tensor([0, 1])
    grads = []
    for m in (ref, auto):
        m.train()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.model.parameters() if p.grad is not None]))
    # relative to the largest gradient (batch-norm over 2 samples amplifies the rounding of single elements)
    assert float((grads[1] - grads[0]).abs().max() / grads[0].abs().max()) < 1e-3
    assert auto.hparams.channels_last == "auto"


def test_bad_channels_last_value_is_a_clear_error():
    with pytest.raises(ValueError, match="channels_last='yes'"):
        HER2Classifier({"name": "resnet34", "pretrained": False}, channels_last="yes")


def test_configs_default_to_the_measured_cpu_settings():
    cfg = compose_config("train", [])
    assert cfg.trainer.inference_mode is True
    assert cfg.module.channels_last in (True, False, "auto")
