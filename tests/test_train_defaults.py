"""Item 1 of issue 14: the main job's demo settings never leak into a run on a real cohort."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from _helpers import compose_config
from omegaconf import OmegaConf

from her2mri.cli._config import config_dir
from her2mri.cli.train import normalize_null_choices

DEMO_FILE = config_dir() / "demo" / "synthetic.yaml"
REAL_DATA = {
    "breastdcedl": ["data=breastdcedl", "data.root=/data/x", "data.metadata_csv=/data/x/meta.csv"],
    "manifest": ["data=manifest", "data.manifest_csv=/data/m.csv"],
    "rgb_slices": ["data=rgb_slices", "data.index_csv=/data/i.csv"],
}


def _leaves(node: object, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def _demo_values() -> dict[str, object]:
    return {k: v for k, v in _leaves(yaml.safe_load(DEMO_FILE.read_text())).items() if k != "tags"}


def test_bare_train_is_the_main_job():
    cfg = compose_config("train", [])
    for key, value in _demo_values().items():
        assert OmegaConf.select(cfg, key) == value, key
    assert cfg.model.name == "thda_resnet34" and "main_job" in cfg.tags
    assert cfg.data.synthetic.n == 100


@pytest.mark.parametrize("source", sorted(REAL_DATA))
def test_real_data_options_get_no_demo_value(source):
    cfg = compose_config("train", REAL_DATA[source])
    plain = compose_config("train", ["~demo"])  # the plain group defaults, for the keys outside data/
    demo = _demo_values()
    assert demo, "demo/synthetic.yaml holds no settings"
    leaked = []
    for key, value in demo.items():
        got = OmegaConf.select(cfg, key)
        base = OmegaConf.select(plain, key)
        if got == value and got != base:
            leaked.append(key)
    assert not leaked, f"data={source} inherited demo values: {leaked}"
    # the values the issue named: 32-px crops, 3 slices, 10 epochs, 1 thread, intensity jitter
    assert cfg.preprocess.crop_size == 128 and cfg.preprocess.image_size == 224
    assert cfg.preprocess.n_slices == 4 and cfg.trainer.max_epochs == 50
    assert cfg.num_threads is None and cfg.data.augment_kwargs is None
    assert "main_job" not in cfg.tags


def test_experiment_null_is_rewritten_for_hydra():
    assert normalize_null_choices(["experiment=null", "data=manifest", "demo=null"]) == [
        "data=manifest",
        "~demo",
    ]
    assert normalize_null_choices(["experiment=paper_thda", "x=null"]) == ["experiment=paper_thda", "x=null"]


def test_cli_accepts_experiment_null(tmp_path):
    env_cmd = [sys.executable, "-m", "her2mri.cli.train", "experiment=null", "data=manifest",
               "data.manifest_csv=/data/m.csv", "--cfg", "job"]  # fmt: skip
    res = subprocess.run(env_cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    cfg = yaml.safe_load(res.stdout)
    assert cfg["preprocess"]["image_size"] == 224 and cfg["num_threads"] is None
