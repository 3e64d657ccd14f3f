"""The ``preprocess`` group is a Hydra structured config (PreprocessSchema) with tiny preset YAMLs on top."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from _helpers import compose_config
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from her2mri.cli._config import package_config_dir
from her2mri.data.preprocess_config import PreprocessConfig, PreprocessSchema

#: composed ``preprocess`` nodes and PreprocessConfigs recorded with the YAML mirror (preprocess/base.yaml),
#: before the structured schema replaced it (tools: compose_config("train", overrides) for each case)
RECORDED = json.loads((Path(__file__).parent / "data" / "preprocess_before_schema.json").read_text())


def _config(node: dict) -> PreprocessConfig:
    d = dict(node)
    if d["views"] == "auto":  # resolved against the model by data.build.preprocess_from_cfg; fixed here
        d["views"] = "single"
    return PreprocessConfig.from_dict(d)


def test_recording_covers_every_experiment_and_preset() -> None:
    conf = package_config_dir()
    experiments = {f"experiment={p.stem}" for p in (conf / "experiment").glob("*.yaml")}
    presets = {f"preprocess={p.stem}" for p in (conf / "preprocess").glob("*.yaml")}
    assert experiments and experiments <= set(RECORDED)
    assert presets and presets <= set(RECORDED)


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_composition_gives_the_recorded_preprocess_config(case: str) -> None:
    rec = RECORDED[case]
    cfg = compose_config("train", rec["overrides"])
    assert OmegaConf.get_type(cfg.preprocess) is PreprocessSchema
    node = OmegaConf.to_container(cfg.preprocess, resolve=True)
    assert node == rec["node"]
    assert _config(node).to_dict() == rec["config"]
    assert _config(node).key() == _config(rec["node"]).key()


def test_no_yaml_mirror_of_the_fields() -> None:
    assert not (package_config_dir() / "preprocess" / "base.yaml").exists()
    for preset in (package_config_dir() / "preprocess").glob("*.yaml"):
        data = OmegaConf.load(preset)
        assert set(data) == {"defaults", "normalization"}, preset  # tiny: the schema plus one field


def test_schema_has_every_field_and_default_of_preprocess_config() -> None:
    schema = {f.name: f for f in dataclasses.fields(PreprocessSchema)}
    fields = {f.name: f for f in dataclasses.fields(PreprocessConfig)}
    assert list(schema) == list(fields)
    defaults = OmegaConf.to_container(OmegaConf.structured(PreprocessSchema))
    expected = {**PreprocessConfig().to_dict(), "views": "auto"}
    assert defaults == expected


def test_typo_key_fails_at_compose_time() -> None:
    with pytest.raises(ConfigCompositionException, match=r"preprocess\.chanels"):
        compose_config("train", ["preprocess.chanels=x"])
    with pytest.raises(ConfigCompositionException, match=r"preprocess\.n_slices=abc"):
        compose_config("train", ["preprocess.n_slices=abc"])  # a value of the wrong type too


def test_validation_stays_in_preprocess_config() -> None:
    cfg = compose_config("train", ["preprocess.channels=kinetic"])  # a str: the schema accepts it
    with pytest.raises(ValueError, match="channels='kinetic'"):
        _config(OmegaConf.to_container(cfg.preprocess))  # needs a joint normalisation: the dataclass says so


def test_eval_overrides_every_field_and_nothing_else() -> None:
    """her2mri-eval: every field, null = the checkpoint's value; a typo fails at compose time."""
    from her2mri.data.preprocess_config import PreprocessOverrides

    cfg = compose_config("eval", ["ckpt_path=x.ckpt"])
    assert OmegaConf.get_type(cfg.preprocess) is PreprocessOverrides
    node = OmegaConf.to_container(cfg.preprocess)
    assert list(node) == [f.name for f in dataclasses.fields(PreprocessConfig)]
    assert set(node.values()) == {None}  # the checkpoint's preprocessing, unchanged
    cfg = compose_config("eval", ["ckpt_path=x.ckpt", "preprocess.n_slices=2", "preprocess.channels=kinetic"])
    given = {k: v for k, v in OmegaConf.to_container(cfg.preprocess).items() if v is not None}
    assert given == {"n_slices": 2, "channels": "kinetic"}
    with pytest.raises(ConfigCompositionException, match=r"preprocess\.chanels"):
        compose_config("eval", ["ckpt_path=x.ckpt", "preprocess.chanels=x"])
