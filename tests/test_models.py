"""Model zoo: registry, uniform API, backward, save/load, weights files, Grad-CAM hooks (tiny, CPU)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from her2mri.models import Her2Model, create_model, list_models, load_weights, register_model

REQUIRED = {"thda_resnet34", "resnet34", "vit_small", "vit_base", "cvt_13"}
SIZE = 64
BATCH = 2
# tiny variants so the whole file runs in seconds on 2 CPU cores
TINY: dict[str, dict] = {
    "vit_small": {"img_size": SIZE, "depth": 2, "embed_dim": 32, "num_heads": 2},
    "vit_base": {"img_size": SIZE, "depth": 1, "embed_dim": 48, "num_heads": 3},
    "cvt_13": {"depth": [1, 2, 3], "embed_dim": [16, 32, 64], "num_heads": [1, 2, 2]},
}
# the seed backbones, the generic timm/THDA factories and the 3-D baselines are large (VGG19: 139 M params)
# or take volumes: tests/test_models_backbones_3d.py covers them with inputs of their own
LARGE_OR_3D = {"resnet50", "resnet101", "densenet121", "efficientnet_b0", "vgg19", "timm_classifier",
               "thda_resnet", "thda_resnet50", "resnet3d", "densenet3d"}  # fmt: skip
MODELS = [m for m in list_models() if m not in LARGE_OR_3D]

# tiny models run faster on one thread, and much faster when other jobs share the 2 cores
pytestmark = pytest.mark.usefixtures("one_thread_module")


def make(name: str, seed: int = 0, **kwargs) -> Her2Model:
    torch.manual_seed(seed)
    return create_model(name, **{**TINY.get(name, {}), **kwargs})


def make_input(model: Her2Model, seed: int = 1, batch: int = BATCH) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if model.num_views == 1:
        return torch.randn(batch, 3, SIZE, SIZE, generator=gen)
    return torch.randn(batch, model.num_views, 3, SIZE, SIZE, generator=gen)


def first_backbone_param(model: Her2Model) -> torch.Tensor:
    return next(p for n, p in model.named_parameters() if n.startswith("backbone."))


# -- registry ----------------------------------------------------------------------------------------------
def test_registry_lists_required_models():
    assert REQUIRED <= set(MODELS)
    assert MODELS == sorted(MODELS)
    assert list_models("vit_*") == ["vit_base", "vit_small"]


def test_unknown_name_lists_valid_names_and_suggests():
    with pytest.raises(ValueError) as err:
        create_model("thda_resnet43")
    msg = str(err.value)
    assert "'thda_resnet43'" in msg and "Did you mean 'thda_resnet34'" in msg
    for name in MODELS:
        assert name in msg


def test_none_kwargs_are_ignored():
    model = create_model("thda_resnet34", drop_rate=None, fusion=None, num_classes=None, weights_path=None)
    assert model.head_drop.p == 0.5 and model.fusion.mode == "attention" and model.num_classes == 2


def test_register_duplicate_name_fails():
    def resnet34(**kwargs):  # same name as a registered model
        return nn.Linear(1, 1)

    with pytest.raises(ValueError, match="already registered"):
        register_model(resnet34)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"drop_rate": 1.5}, "drop_rate"),
        ({"pretrained": "yes"}, "pretrained"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("resnet34", **kwargs)


def test_cvt_depth_constraint_is_checked():
    with pytest.raises(ValueError, match=r"depth\[i\] > i"):
        create_model("cvt_13", depth=[1, 1, 1], embed_dim=[16, 32, 64], num_heads=[1, 2, 2])


# -- uniform API -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_forward_api_input_checks_and_reset_classifier(name):
    model = make(name).eval()
    assert isinstance(model, Her2Model) and model.num_views in (1, 3) and model.num_classes == 2
    x = make_input(model)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        emb = model.forward_head(feats, pre_logits=True)
        again = model.forward_head(feats)
        maps = model.attention_maps(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (BATCH, 2)
    assert emb.shape == (BATCH, model.num_features)
    torch.testing.assert_close(again, logits)
    assert torch.isfinite(logits).all()
    assert isinstance(maps, dict) and (name.startswith("thda_") or maps == {})

    bad = x[:, 0] if model.num_views > 1 else x.unsqueeze(1).expand(-1, 3, -1, -1, -1)
    with pytest.raises(ValueError, match="x must have shape"):
        model(bad)

    model.reset_classifier(3)
    assert model.num_classes == 3
    with torch.no_grad():
        assert model(x).shape == (BATCH, 3)
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(0)


@pytest.mark.parametrize("name", MODELS)
def test_backward_reaches_every_parameter(name):
    model = make(name).train()
    x = make_input(model)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    assert first_backbone_param(model).grad.abs().sum() > 0


def test_thda_attention_maps_shapes():
    model = make("thda_resnet18").eval()
    maps = model.attention_maps(make_input(model))
    assert set(maps) == {"layer2", "layer3", "layer4"}
    for key, side in zip(("layer2", "layer3", "layer4"), (8, 4, 2), strict=True):
        assert maps[key].shape == (BATCH, 3, side, side)
        assert ((maps[key] > 0) & (maps[key] < 1)).all()


# -- save / load -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_save_load_and_weights_path_reproduce_outputs(name, tmp_path):
    src = make(name, seed=0).eval()
    x = make_input(src)
    path = tmp_path / f"{name}.pt"
    torch.save(src.state_dict(), path)
    dst = make(name, seed=1).eval()
    with torch.no_grad():
        expected = src(x)
        assert not torch.equal(dst(x), expected)  # different init, so the reload below is not a no-op
        dst.load_state_dict(torch.load(path, weights_only=True))
        assert torch.equal(dst(x), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact match must load silently
        loaded = make(name, seed=2, weights_path=str(path)).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


def test_weights_path_lightning_checkpoint(tmp_path):
    src = make("resnet34", seed=0).eval()
    ckpt = {
        "state_dict": {
            **{f"model.{k}": v for k, v in src.state_dict().items()},
            "criterion.weight": torch.ones(2),
        },
        "hyper_parameters": {"model_name": "resnet34", "model_kwargs": {"num_classes": 2}},
        "epoch": 3,
    }
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = make("resnet34", seed=1, weights_path=path).eval()
    x = make_input(src)
    with torch.no_grad():
        assert torch.equal(loaded(x), src(x))


class _Custom:
    """An arbitrary class: unpickling it means importing and running code."""


def test_checkpoint_with_paths_loads_but_other_objects_are_refused(tmp_path):
    """Paths are allow-listed plain data; any other Python object is refused, never unpickled (issue 13)."""
    src = make("resnet34", seed=0)
    path = tmp_path / "obj.ckpt"
    torch.save({"state_dict": src.state_dict(), "hyper_parameters": {"root": Path("/tmp")}}, path)
    dst = make("resnet34", seed=1)
    report = load_weights(dst, path)
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(dst.head.weight, src.head.weight)
    torch.save({"state_dict": src.state_dict(), "hyper_parameters": {"obj": _Custom()}}, path)
    with pytest.raises(ValueError, match="refused to load"):
        load_weights(dst, path)


def test_classifier_shape_mismatch_is_skipped_with_warning(tmp_path):
    src = make("resnet34", seed=0, num_classes=3)
    path = tmp_path / "three.pt"
    torch.save(src.state_dict(), path)
    with pytest.warns(UserWarning, match="classifier weights skipped"):
        dst = make("resnet34", seed=1, weights_path=path)
    assert dst.num_classes == 2
    assert torch.equal(dst.backbone.conv1.weight, src.backbone.conv1.weight)


def test_non_classifier_mismatch_raises(tmp_path):
    path = tmp_path / "one_channel.pt"
    torch.save(make("resnet34", in_chans=1).state_dict(), path)
    with pytest.raises(ValueError, match="shape mismatch for backbone.conv1.weight"):
        make("resnet34", weights_path=path)


def test_weights_of_another_model_raise(tmp_path):
    path = tmp_path / "vit.pt"
    torch.save(make("vit_small").state_dict(), path)
    with pytest.raises(ValueError, match="no key outside the classifier matches"):
        make("resnet34", weights_path=path)


def test_missing_weights_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights_path="):
        make("resnet34", weights_path=tmp_path / "absent.pt")


def test_bare_timm_resnet_loads_into_resnet34(tmp_path):
    import timm

    torch.manual_seed(0)
    bare = timm.create_model("resnet34", num_classes=2)
    path = tmp_path / "timm_resnet34.pt"
    torch.save(bare.state_dict(), path)
    model = make("resnet34", seed=1, weights_path=path).eval()
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), bare.eval()(x))  # fc became head


def test_weights_path_wins_over_pretrained_without_hub_access(tmp_path):
    src = make("resnet34", seed=0)
    path = tmp_path / "sd.pt"
    torch.save(src.state_dict(), path)
    online = {"pretrained": True}  # would hit the (offline) hub without weights_path
    with pytest.warns(UserWarning, match="not downloaded"):
        model = make("resnet34", seed=1, weights_path=path, **online)
    assert torch.equal(model.head.weight, src.head.weight)


# -- Grad-CAM ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_gradcam_targets_give_maps_with_gradients(name):
    model = make(name).eval()
    targets = model.gradcam_target_layers()
    owned = {id(m) for m in model.modules()}
    assert targets and all(id(t) in owned for t in targets)
    reshape = model.gradcam_reshape_transform() or (lambda t: t)
    seen: list[torch.Tensor] = []

    def keep(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        output.retain_grad()
        seen.append(output)

    handle = targets[-1].register_forward_hook(keep)
    model(make_input(model))[:, 1].sum().backward()
    handle.remove()
    act, grad = reshape(seen[0]), reshape(seen[0].grad)
    assert act.ndim == 4 and act.shape[0] == BATCH * model.num_views and act.shape == grad.shape
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["thda_resnet18", "vit_small"])
def test_pytorch_grad_cam_runs_without_branching(name):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = make(name).eval()
    x = make_input(model)
    with GradCAM(model, model.gradcam_target_layers(), model.gradcam_reshape_transform()) as cam:
        maps = cam(x.flatten(1, -3), targets=[ClassifierOutputTarget(1)] * BATCH)
    assert maps.shape == (BATCH * model.num_views, SIZE, SIZE)
    assert maps.reshape(BATCH, model.num_views, SIZE, SIZE).shape[1] == model.num_views


def test_bare_timm_vit_loads_into_vit_small(tmp_path):
    import timm

    torch.manual_seed(0)
    bare = timm.create_model("vit_small_patch16_224", num_classes=2, **TINY["vit_small"]).eval()
    path = tmp_path / "timm_vit.safetensors"
    from safetensors.torch import save_file

    save_file(bare.state_dict(), str(path))
    model = make("vit_small", seed=1, weights_path=path).eval()
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), bare(x))


def test_bare_transformers_cvt_loads_into_cvt_13(tmp_path):
    from transformers import CvtConfig, CvtForImageClassification

    torch.manual_seed(0)
    bare = CvtForImageClassification(CvtConfig(num_labels=2, **TINY["cvt_13"])).eval()
    path = tmp_path / "hf_cvt.pt"
    torch.save(bare.state_dict(), path)
    model = make("cvt_13", seed=1, weights_path=path).eval()
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), bare(pixel_values=x).logits)
