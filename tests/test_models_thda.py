"""THDA-ResNet specifics: weight sharing, attention options, fusion, backbone weights (tiny, CPU)."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from her2mri.models import create_model
from her2mri.models.thda import THDAResNet

SIZE = 64

# tiny models run faster on one thread, and much faster when other jobs share the 2 cores
pytestmark = pytest.mark.usefixtures("one_thread_module")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def thda(seed: int = 0, name: str = "thda_resnet18", **kwargs) -> THDAResNet:
    """THDA-ResNet18 by default: the same architecture at half the cost; ResNet34 where it matters."""
    torch.manual_seed(seed)
    return create_model(name, **kwargs)


def views(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_one_backbone_shared_by_the_three_heads():
    model = thda(name="thda_resnet34")
    backbones = [m for m in model.modules() if isinstance(m, timm.models.FeatureListNet)]
    assert len(backbones) == 1 and backbones[0] is model.backbone
    reference = timm.create_model("resnet34", features_only=True, out_indices=(2, 3, 4))
    assert n_params(model.backbone) == n_params(reference)  # one copy, not three
    assert len(model.attention) == 1  # attention shared by default too
    parts = model.backbone, model.attention, model.fusion, model.head
    assert n_params(model) == sum(n_params(p) for p in parts)


def test_default_parameter_count_is_close_to_the_paper():
    model = thda(name="thda_resnet34")
    total = n_params(model)
    assert n_params(model.backbone) == 21_284_672
    assert 21.25e6 < total < 21.45e6  # paper: about 21.3 M
    assert total == 21_331_686  # documented in the THDAResNet docstring and docs/models.md


def test_each_head_sees_only_its_view():
    model = thda().eval()
    x = views()
    y = x.clone()
    y[:, 0] = torch.randn_like(y[:, 0])
    y[:, 2] = torch.randn_like(y[:, 2])
    with torch.no_grad():
        fx, fy = model.forward_features(x), model.forward_features(y)
    assert fx.shape == (2, 3, 896)  # 128 + 256 + 512 channels of layer2/3/4
    torch.testing.assert_close(fx[:, 1], fy[:, 1])
    assert not torch.allclose(fx[:, 0], fy[:, 0])


def test_gradient_from_view_two_alone_updates_shared_backbone():
    model = thda().eval()
    before = model.backbone.conv1.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    feats = model.forward_features(views())
    feats[:, 1].sum().backward()  # only the second head contributes
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.fusion.score.weight.grad is None  # the fusion was not part of this loss
    opt.step()
    assert not torch.equal(model.backbone.conv1.weight, before)


def test_views_share_weights_identical_views_give_identical_heads():
    model = thda().eval()
    x = views()
    x[:, 1] = x[:, 0]
    x[:, 2] = x[:, 0]
    with torch.no_grad():
        feats = model.forward_features(x)
        weights = model.fusion_weights(x)
    torch.testing.assert_close(feats[:, 1], feats[:, 0])
    torch.testing.assert_close(feats[:, 2], feats[:, 0])
    torch.testing.assert_close(weights, torch.full_like(weights, 1 / 3))


def test_unshared_attention_has_one_set_per_head():
    shared, separate = thda(), thda(share_attention=False)
    assert len(separate.attention) == 3
    assert n_params(separate) - n_params(shared) == 2 * n_params(shared.attention)
    separate.eval()
    maps = separate.attention_maps(views())
    assert maps["layer4"].shape == (2, 3, 2, 2)
    loss = separate(views()).sum()
    loss.backward()
    assert all(p.grad is not None for p in separate.attention.parameters())


@pytest.mark.parametrize(("fusion", "factor"), [("attention", 1), ("concat", 3), ("mean", 1)])
def test_fusion_modes(fusion, factor):
    model = thda(fusion=fusion).eval()
    assert model.num_features == 896 * factor
    x = views()
    with torch.no_grad():
        assert model(x).shape == (2, 2)
        weights = model.fusion_weights(x)
    if fusion == "concat":
        assert weights is None
    else:
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))


def test_fusion_mlp_score_and_bad_mode():
    model = thda(fusion_hidden=16)
    assert isinstance(model.fusion.score, nn.Sequential)
    with pytest.raises(ValueError, match="Did you mean 'attention'"):
        thda(fusion="attn")


def test_single_scale_layer4_variant():
    model = thda(out_indices=(4,)).eval()
    assert model.num_features == 512
    maps = model.attention_maps(views())
    assert list(maps) == ["layer4"]


def test_attention_switches_and_single_kernel():
    no_spatial = thda(use_spatial_attention=False).eval()
    assert no_spatial.attention_maps(views()) == {}
    cbam = thda(spatial_kernels=(7,))
    assert isinstance(cbam.attention[0]["layer2"].spatial.fuse, nn.Identity)
    with pytest.raises(ValueError, match="kernel_sizes"):
        thda(spatial_kernels=(4,))


def test_channel_stacked_input_equals_five_d_input():
    model = thda().eval()
    x = views()
    with torch.no_grad():
        torch.testing.assert_close(model(x.flatten(1, 2)), model(x))


@pytest.mark.parametrize("naming", ["timm", "torchvision"])
def test_plain_resnet34_state_dict_loads_into_shared_backbone(naming, tmp_path):
    torch.manual_seed(0)
    if naming == "timm":
        plain = timm.create_model("resnet34")
    else:
        import torchvision

        plain = torchvision.models.resnet34(weights=None)
    path = tmp_path / f"{naming}_resnet34.pth"
    torch.save(plain.state_dict(), path)
    with pytest.warns(UserWarning, match="not in the file") as record:
        model = thda(seed=1, name="thda_resnet34", weights_path=path)
    message = str(record[0].message)
    assert "backbone." not in message.split("left at their initial values")[1]  # only attention/fusion/head
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, plain.state_dict()[key]), key


def test_all_views_go_through_the_backbone_in_one_call():
    # the views are reshaped to (B * 3, C, H, W) and run through the one backbone together
    model = thda().eval()
    calls: list[tuple[int, ...]] = []
    handle = model.backbone.conv1.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    with torch.no_grad():
        model(views(batch=2))
    handle.remove()
    assert calls == [(6, 3, SIZE, SIZE)]


def test_side_attention_pools_the_backbone_stages_unchanged():
    model = thda().eval()
    x = views()
    with torch.no_grad():
        stages = model.backbone(x.flatten(0, 1))  # timm's own forward of the shared backbone
        expected = torch.cat(
            [
                model.attention[0][n](f)[0].mean(dim=(2, 3))
                for n, f in zip(model.stage_names, stages, strict=True)
            ],
            dim=1,
        )
        torch.testing.assert_close(model.forward_features(x), expected.unflatten(0, (2, 3)))


def test_inline_attention_feeds_the_next_stage():
    side = thda(attention_placement="side").eval()
    inline = thda(attention_placement="inline").eval()
    inline.load_state_dict(side.state_dict())  # same parameters, only the wiring differs
    assert n_params(inline) == n_params(side)
    x = views()
    with torch.no_grad():
        fs, fi = side.forward_features(x), inline.forward_features(x)
        # the first attended stage is identical; later stages see the attended map in inline mode
        c2 = side.backbone.feature_info.channels()[0]
        torch.testing.assert_close(fi[..., :c2], fs[..., :c2])
        assert not torch.allclose(fi[..., c2:], fs[..., c2:])
        maps = inline.attention_maps(x)
    assert [tuple(m.shape) for m in maps.values()] == [(2, 3, SIZE // s, SIZE // s) for s in (8, 16, 32)]
    # with both attentions switched off, inline and side are the same network
    off = {"use_channel_attention": False, "use_spatial_attention": False}
    a, b = thda(**off).eval(), thda(attention_placement="inline", **off).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
    with pytest.raises(ValueError, match="attention_placement='middle'"):
        thda(attention_placement="middle")
