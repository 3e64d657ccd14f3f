"""Issue 15: seed backbones through the registry, THDA on timm ResNet-family backbones, 3-D baselines,
the offline pretrained error, and the learning-rate finder."""

from __future__ import annotations

import json

import pytest
import torch
from _helpers import compose_config, synthetic_overrides

from her2mri.models import create_model, list_models
from her2mri.models.timm_backbones import SEED_BACKBONES

pytestmark = pytest.mark.usefixtures("one_thread")


def test_seed_backbones_are_registered():
    assert set(SEED_BACKBONES) <= set(list_models())
    assert {"timm_classifier", "thda_resnet", "thda_resnet50", "resnet3d", "densenet3d"} <= set(list_models())


@pytest.mark.parametrize("name", ["resnet50", "densenet121", "efficientnet_b0"])
def test_seed_backbone_forward_and_api(name):
    model = create_model(name, num_classes=2, drop_rate=0.1)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 2)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.num_features)
    assert len(model.gradcam_target_layers()) == 1
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(2, 3, 3, 32, 32))


@pytest.mark.slow
def test_vgg19_forward():  # 139 M parameters: slow to build on a CPU
    assert create_model("vgg19", num_classes=2)(torch.randn(1, 3, 32, 32)).shape == (1, 2)


def test_timm_passthrough_and_thda_on_any_resnet_family_backbone():
    assert create_model("timm_classifier", variant="resnet18")(torch.randn(2, 3, 32, 32)).shape == (2, 2)
    with pytest.raises(ValueError, match="variant='no_such_net'"):
        create_model("timm_classifier", variant="no_such_net")
    thda = create_model("thda_resnet", backbone="resnet26d")
    assert thda.head_features == 512 + 1024 + 2048
    assert thda(torch.randn(2, 3, 3, 32, 32)).shape == (2, 2)
    one = create_model("thda_resnet18", in_chans=1)  # views=phases with phase_channels=1
    assert one(torch.randn(2, 3, 1, 32, 32)).shape == (2, 2)


@pytest.mark.parametrize(
    ("name", "shape"), [("efficientnet_b0", (2, 3, 32, 32)), ("resnet3d", (2, 3, 8, 32, 32))]
)
def test_new_models_follow_the_model_api(name, shape, tmp_path):
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.randn(*shape)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    model.eval()
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    again = create_model(name, weights_path=str(path)).eval()
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    model.reset_classifier(3)
    with torch.no_grad():
        assert model(x).shape == (2, 3)


def test_3d_baselines_forward():
    m = create_model("resnet3d")
    assert m.spatial_dims == 3 and m(torch.randn(2, 3, 8, 32, 32)).shape == (2, 2)
    d = create_model("densenet3d", init_features=8)
    assert d.eval()(torch.randn(1, 3, 32, 32, 32)).shape == (1, 2)
    with pytest.raises(ValueError, match="at least 32"):
        d(torch.randn(1, 3, 16, 32, 32))
    with pytest.raises(ValueError, match="no ImageNet weights"):
        create_model("resnet3d", pretrained=True)


def test_offline_pretrained_without_weights_path_fails_at_once(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", "/nonexistent-her2mri-test")  # nothing cached
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", "/nonexistent-her2mri-test/hub")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"model\.weights_path"):
        create_model("resnet34", pretrained=True)
    assert time.perf_counter() - t0 < 15


def test_3d_baseline_trains_on_the_synthetic_cohort(synthetic_cohort, tmp_path):
    from her2mri.runs.train import train

    cfg = compose_config(
        "train",
        ["experiment=baseline_3d", *synthetic_overrides(synthetic_cohort, tmp_path),
         "preprocess.volume_depth=8", "preprocess.image_size=32", "preprocess.crop_size=32",
         "trainer.max_epochs=2", "trainer.accelerator=cpu", "data.batch_size=4", "stats_n_boot=0",
         f"paths.output_dir={tmp_path / 'run'}"],
    )  # fmt: skip
    metrics = train(cfg)
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "ok" and payload["config"]["model"]["name"] == "resnet3d"
    assert metrics["test/n_patients"] == metrics["test/n_slices"]  # one volume per patient
    assert (tmp_path / "run" / "predictions" / "test_patients.csv").is_file()
    ckpt = torch.load(payload["ckpt_path"], map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["data_spec"]["preprocess"]["views"] == "volume"


def test_lr_find_sets_the_learning_rate(synthetic_cohort, tmp_path):
    from her2mri.runs.train import train

    cfg = compose_config(
        "train",
        [*synthetic_overrides(synthetic_cohort, tmp_path), "model=resnet34", "preprocess.image_size=32",
         "preprocess.crop_size=32", "preprocess.n_slices=2", "data.batch_size=4", "trainer.max_epochs=1",
         "trainer.limit_train_batches=1", "trainer.accelerator=cpu", "tune.lr_find=true",
         "tune.num_training=12", "tune.max_lr=1e-2",
         "stats_n_boot=0", f"paths.output_dir={tmp_path / 'run'}"],
    )  # fmt: skip
    metrics = train(cfg)
    lr = metrics["tune/lr_find"]
    assert 1e-6 <= lr <= 1e-1
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["metrics"]["tune/lr_find"] == lr
