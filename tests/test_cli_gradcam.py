"""her2mri-gradcam on a tiny trained run, and its errors for bad run directories."""

from __future__ import annotations

import json

import torch
from _helpers import compose_config, synthetic_overrides
from omegaconf import OmegaConf
from PIL import Image

from her2mri.cli.gradcam import main
from her2mri.runs.train import train


def test_errors_name_the_missing_file(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "config.yaml: missing" in capsys.readouterr().err
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("data: {}\n")
    assert main([str(tmp_path)]) == 2
    assert "metrics.json: missing" in capsys.readouterr().err
    (tmp_path / "metrics.json").write_text(json.dumps({"ckpt_path": str(tmp_path / "nope.ckpt")}))
    assert main([str(tmp_path)]) == 2
    assert "nope.ckpt: checkpoint not found" in capsys.readouterr().err


def test_gallery_from_a_trained_thda_run(synthetic_cohort, tmp_path):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    overrides = [
        *synthetic_overrides(synthetic_cohort, tmp_path, num_workers=False), f"paths.output_dir={run}",
        "data.num_workers=0",
        "preprocess.image_size=32", "preprocess.crop_size=32", "preprocess.n_slices=2", "model=thda_resnet34",
        "data.batch_size=4", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
        "trainer.accelerator=cpu",
        "data.val_fraction=0.3", "logger=csv",
    ]  # fmt: skip
    cfg = compose_config("train", overrides)
    train(cfg)
    (run / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    assert main([str(run), "--n", "2"]) == 0
    pngs = sorted((run / "gradcam").glob("*.png"))
    assert len(pngs) == 2
    index = json.loads((run / "gradcam" / "index.json").read_text())
    assert [item["file"] for item in index] == [p.name for p in pngs]
    assert all(item["views"] == 3 and len(item["fusion_weights"]) == 3 for item in index)
    with Image.open(pngs[0]) as im:
        assert im.size[0] > 32 and im.size[1] > 32
