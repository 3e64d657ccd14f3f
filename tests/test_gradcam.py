"""Grad-CAM on tiny random models (64 px): one map per head for THDA-ResNet, one for ResNet / ViT; PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from her2mri.models import create_model
from her2mri.viz import gradcam_maps, load_model, save_gradcam_gallery, to_display_rgb
from her2mri.viz.overlay import IMAGENET_MEAN, IMAGENET_STD

SIZE = 64
MODELS = {
    "resnet34": ({}, 1),
    "vit_small": ({"img_size": SIZE, "depth": 1, "embed_dim": 32, "num_heads": 2}, 1),
    "thda_resnet18": ({}, 3),
}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: create_model(name, pretrained=False, **kw) for name, (kw, _) in MODELS.items()}


def batch(views: int, b: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    shape = (b, 3, SIZE, SIZE) if views == 1 else (b, views, 3, SIZE, SIZE)
    mask = torch.zeros(b, 1, SIZE, SIZE)
    mask[:, :, 20:40, 24:44] = 1.0
    return {
        "image": torch.randn(*shape, generator=g),
        "mask": mask,
        "label": torch.tensor([0, 1] * (b // 2) + [1] * (b % 2)),
        "pid": [f"p{i}" for i in range(b)],
        "slice_idx": torch.arange(b) + 10,
    }


@pytest.mark.parametrize("name", list(MODELS))
def test_maps_shape_range_and_probs(models, name):
    model, views = models[name], MODELS[name][1]
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    x = batch(views)["image"]
    res = gradcam_maps(model, x)
    maps = res["maps"]
    assert maps.shape == (2, views, SIZE, SIZE)
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    assert model.training and [p.requires_grad for p in model.parameters()] == flags  # state restored
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=-1)[:, 1].numpy()
    np.testing.assert_allclose(res["probs"], expected, rtol=1e-4, atol=1e-6)
    if views == 3:
        assert res["fusion_weights"].shape == (2, 3)
        np.testing.assert_allclose(res["fusion_weights"].sum(axis=1), 1.0, rtol=1e-5)
    else:
        assert res["fusion_weights"] is None


def test_thda_one_map_per_head_in_view_order(models):
    """Sample 0 has three identical views (identical maps); sample 1 different views (different maps)."""
    x = batch(3, b=2, seed=1)["image"]
    x[0, 1] = x[0, 0]
    x[0, 2] = x[0, 0]
    maps = gradcam_maps(models["thda_resnet18"], x)["maps"]
    np.testing.assert_allclose(maps[0, 1], maps[0, 0], atol=1e-5)
    np.testing.assert_allclose(maps[0, 2], maps[0, 0], atol=1e-5)
    assert not np.allclose(maps[1, 0], maps[1, 1], atol=1e-3)
    assert maps[1].max() > 0  # a real map, not all zeros


def test_bad_inputs(models):
    with pytest.raises(ValueError, match=r"\(B, V, 3, H, W\)"):
        gradcam_maps(models["thda_resnet18"], torch.randn(2, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="target_class"):
        gradcam_maps(models["resnet34"], torch.randn(1, 3, SIZE, SIZE), target_class=2)
    with pytest.raises(ValueError, match="contour_views"):
        save_gradcam_gallery(models["resnet34"], batch(1), "unused", contour_views="some")
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_model("nope.ckpt")
    with pytest.raises(ValueError, match="source"):
        load_model(torch.nn.Linear(2, 2))


def test_denormalisation_inverts_imagenet_norm():
    rgb = torch.rand(3, 8, 8)
    norm = (rgb - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    np.testing.assert_allclose(to_display_rgb(norm), rgb.permute(1, 2, 0).numpy(), atol=1e-6)
    np.testing.assert_allclose(
        to_display_rgb(rgb, imagenet_norm=False), rgb.permute(1, 2, 0).numpy(), atol=1e-7
    )


@pytest.mark.parametrize("name", ["resnet34", "thda_resnet18"])
def test_gallery_pngs_and_index(models, name, tmp_path):
    views = MODELS[name][1]
    b = batch(views, b=3)
    b["pid"] = ["p0", "p0", "p1"]  # two slices of p0: one per patient by default
    paths = save_gradcam_gallery(models[name], b, tmp_path / "gradcam", n=8, contour_views="all")
    assert [p.name for p in paths] == ["000_p0_s10.png", "001_p1_s12.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    index = json.loads((tmp_path / "gradcam" / "index.json").read_text())
    assert [e["pid"] for e in index] == ["p0", "p1"] and all(e["views"] == views for e in index)
    assert all(0.0 <= e["prob"] <= 1.0 for e in index)
    assert (index[0]["fusion_weights"] is None) == (views == 1)


def test_gallery_from_checkpoint(tmp_path):
    import lightning as L

    from her2mri.training.module import HER2Classifier

    spec = {
        "name": "vit_small",
        "pretrained": False,
        "img_size": SIZE,
        "depth": 1,
        "embed_dim": 32,
        "num_heads": 2,
    }
    module = HER2Classifier(spec, class_weights=None)
    ckpt = tmp_path / "m.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        ckpt,
    )
    paths = save_gradcam_gallery(ckpt, batch(1, b=1), tmp_path / "g", n=1)
    assert len(paths) == 1 and paths[0].is_file()
    loaded = load_model(ckpt)
    for a, b in zip(loaded.state_dict().values(), module.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
