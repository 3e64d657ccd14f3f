"""Composition of the experiment, sweep and launcher configs (no training)."""

from __future__ import annotations

import pytest
from _helpers import compose_config

from her2mri.cli._config import config_dir

CONF = config_dir()
PAPER = ["paper_thda", "paper_vit", "paper_cvt", "norm_ablation", "aggregation_ablation"]
SWEEPS = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))
STRATEGIES = sorted(p.stem for p in (CONF / "preprocess").glob("*.yaml") if p.stem != "base")


def _compose(overrides: list[str], name: str = "train"):
    return compose_config(name, overrides, return_hydra_config=True)


def _params(cfg) -> dict[str, str]:
    return {str(k): str(v) for k, v in (cfg.hydra.sweeper.get("params") or {}).items()}


@pytest.mark.parametrize("experiment", PAPER)
def test_paper_experiments_follow_the_paper_protocol(experiment):
    cfg = _compose([f"experiment={experiment}"])
    assert "paper" in cfg.tags
    assert cfg.data.source == "breastdcedl" and cfg.data.split_mode == "official"
    assert list(cfg.data.datasets) == ["spy1", "spy2"]
    assert cfg.preprocess.normalization == "clip_channel_q98" and cfg.preprocess.n4 is False
    assert cfg.preprocess.n_slices == 4 and cfg.preprocess.image_size == 224
    assert cfg.module.aggregation == "median" and cfg.module.loss == "ce"
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.devices == 1
    expected = {"paper_vit": "vit_base", "paper_cvt": "cvt_13"}.get(experiment, "thda_resnet34")
    assert cfg.model.name == expected and cfg.model.pretrained is True


def test_command_line_choices_win_over_the_experiment():
    cfg = _compose(["experiment=paper_thda", "trainer=cpu", "preprocess=zscore", "model.pretrained=false"])
    assert cfg.trainer.accelerator == "cpu" and cfg.preprocess.normalization == "zscore"
    assert cfg.preprocess.n_slices == 4  # the experiment's preprocessing fields stay
    assert cfg.model.pretrained is False


def test_ablations_sweep_every_strategy_n4_and_aggregation():
    params = _params(_compose(["experiment=norm_ablation"]))
    assert sorted(params["preprocess"].split(",")) == STRATEGIES
    assert params["preprocess.n4"] == "false,true"
    params = _params(_compose(["experiment=aggregation_ablation"]))
    assert params == {"module.aggregation": "median,mean,max"}


def test_sweep_configs():
    assert {"seeds", "folds", "norms", "optuna_thda"} <= set(SWEEPS)
    cfg = _compose(["sweep=seeds"])
    assert _params(cfg) == {"seed": "0,1,2,3,4"}
    cfg = _compose(["sweep=norms"])
    assert sorted(_params(cfg)["preprocess"].split(",")) == STRATEGIES
    cfg = _compose(["experiment=paper_thda", "sweep=folds"])
    assert cfg.data.split_mode == "kfold" and _params(cfg) == {"data.fold": "0,1,2,3,4"}
    assert cfg.data.split_file.endswith("splits/breastdcedl_k5_seed0.json")
    assert cfg.hydra.callbacks.kfold_split._target_.endswith("KFoldSplitCallback")
    # an experiment's sweep and a sweep config are crossed
    crossed = _params(_compose(["experiment=aggregation_ablation", "sweep=seeds"]))
    assert crossed == {"module.aggregation": "median,mean,max", "seed": "0,1,2,3,4"}


def test_optuna_sweep_config():
    cfg = _compose(["experiment=paper_thda", "sweep=optuna_thda", "paths.log_dir=/runs"])
    sw = cfg.hydra.sweeper
    assert sw._target_.endswith("OptunaSweeper") and sw.sampler._target_ == "optuna.samplers.TPESampler"
    assert sw.direction == "maximize" and sw.study_name == "thda"
    assert sw.storage == "sqlite:////runs/optuna_thda.db"
    assert cfg.optimized_metric == "val/auroc_patient_best"
    assert "module.optimizer.lr" in sw.params and str(sw.params["module.optimizer.lr"]).startswith("tag(log")


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("basic", "BasicLauncher"),
        ("joblib", "JoblibLauncher"),
        ("submitit_local", "LocalLauncher"),
        ("submitit_slurm", "SlurmLauncher"),
    ],
)
def test_launchers_compose(launcher, target):
    cfg = _compose(["sweep=seeds", f"hydra/launcher={launcher}"])
    assert cfg.hydra.launcher._target_.endswith(target)


def test_default_callbacks_reseed_every_epoch_and_eval_has_ensemble_keys():
    cfg = _compose([])
    assert cfg.callbacks.epoch_seed._target_ == "her2mri.runs.resume.EpochSeed"
    assert cfg.get("sweep") is None
    ev = _compose(["ckpt_path=x.ckpt"], name="eval")
    assert ev.ensemble is False and list(ev.ckpt_paths) == []


def test_tracking_csv_always_wandb_offline_by_default():
    cfg = _compose([])
    assert cfg.logger.csv._target_.endswith("CSVLogger")
    cfg = _compose(["logger=wandb"])
    assert cfg.logger.wandb.offline is True and "csv" in cfg.logger
