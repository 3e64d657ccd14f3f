"""Score one checkpoint on one split of a cohort: the shared core of ``evaluate``, ensembles and calibration.

:func:`load_for_eval` rebuilds the module from the checkpoint and the datamodule with the checkpoint's
preprocessing (a non-null ``preprocess.<field>`` of the eval config overrides that field) and the checkpoint's
``EVAL_DATA_KEYS`` data settings (``use_checkpoint_data_settings``). :func:`score_split` runs Lightning's
validate/test loop on ``val``, ``test`` or ``all`` (every case of the cohort); the module gathers the slice
predictions of every DDP rank before aggregating them per patient, so the result does not depend on the number
of processes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from her2mri.data.build import build_datamodule, model_input_spec, preprocess_from_cfg
from her2mri.data.errors import DataError
from her2mri.data.preprocess_config import PreprocessConfig
from her2mri.options import check_choice
from her2mri.training.aggregation import PatientPredictions, SlicePredictions

#: data settings that change the image values and are therefore taken from the checkpoint by evaluate()
EVAL_DATA_KEYS: tuple[str, ...] = ("imagenet_norm",)

SPLITS: tuple[str, ...] = ("val", "test", "all")


@dataclass
class EvalSetup:
    """A checkpoint ready to be scored.

    Attributes:
        ckpt_path: the checkpoint file.
        module: the loaded ``HER2Classifier`` (on the CPU; the trainer moves it).
        datamodule: the datamodule built with the checkpoint's preprocessing.
        model_name: ``module.hparams.model["name"]``.
        threshold: the decision threshold applied (also set as ``module.hparams.threshold``).
        threshold_source: where it came from (:func:`her2mri.training.threshold.resolve_threshold`).
    """

    ckpt_path: str
    module: Any
    datamodule: Any
    model_name: str
    threshold: float = 0.5
    threshold_source: str = "fallback_0.5"


def check_split(split: str) -> str:
    """``split`` if it is ``val``, ``test`` or ``all``.

    Raises:
        ValueError: another value.
    """
    return check_choice("split", split, SPLITS)


def load_for_eval(cfg: DictConfig, ckpt_path: str | Path) -> EvalSetup:
    """Load a checkpoint and build the datamodule that reproduces its training preprocessing.

    Args:
        cfg: composed ``eval`` config (``data``, optional ``preprocess``, ``use_checkpoint_data_settings``).
        ckpt_path: a ``her2mri-train`` checkpoint.

    Returns:
        The :class:`EvalSetup`.

    Raises:
        FileNotFoundError: ``ckpt_path`` does not exist.
    """
    from her2mri.training.module import load_classifier
    from her2mri.training.threshold import resolve_threshold
    from her2mri.training.tta import check_tta

    ckpt_path = str(ckpt_path)
    if not Path(ckpt_path).exists():
        raise FileNotFoundError(f"ckpt_path={ckpt_path!r} does not exist.")
    module = load_classifier(ckpt_path, map_location="cpu")
    given = cfg.get("threshold")
    threshold, source = resolve_threshold(
        module.hparams.get("locked_threshold"), None if given is None else float(given)
    )
    module.hparams.threshold = threshold
    module.tta = check_tta(str(cfg.get("tta") or "none"))
    spec = module.hparams.model
    data_spec = module.hparams.get("data_spec") or {}
    overrides = OmegaConf.to_container(cfg.preprocess, resolve=True) if cfg.get("preprocess") else {}
    pre = checkpoint_preprocess(module, ckpt_path, overrides)  # type: ignore[arg-type]
    data_cfg = cfg.data.copy()
    if cfg.get("use_checkpoint_data_settings", True):
        with open_dict(data_cfg):
            for key, value in (data_spec.get("data") or {}).items():
                if key in EVAL_DATA_KEYS:
                    data_cfg[key] = value
    datamodule = build_datamodule(data_cfg, pre.to_dict())
    return EvalSetup(ckpt_path, module, datamodule, str(spec["name"]), threshold, source)


def checkpoint_preprocess(
    module: Any, ckpt_path: str | Path, overrides: Mapping[str, Any] | None = None
) -> PreprocessConfig:
    """The preprocessing a checkpoint was trained with (``data_spec``), resolved against its model.

    Shared by :func:`load_for_eval` (``her2mri-eval``) and :func:`her2mri.runs.predict.score_checkpoint`
    (``her2mri-predict``), so both score a checkpoint exactly as it was trained.

    Args:
        module: the loaded ``HER2Classifier``.
        ckpt_path: its path (named in messages).
        overrides: ``PreprocessConfig`` fields that replace the stored ones (None values are ignored).

    Raises:
        DataError: the checkpoint stores no preprocessing and no override states it.
        ValueError: cohort statistics missing for ``stats_scope='cohort'``, or an image size the model
            cannot take.
    """
    spec = module.hparams.model
    data_spec = module.hparams.get("data_spec") or {}
    pre_dict = dict(data_spec.get("preprocess") or {})
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not pre_dict:
        if not given:
            raise DataError(
                f"{ckpt_path}: the checkpoint stores no preprocessing (data_spec; not written by "
                "her2mri-train?), and scoring it with the default preprocessing would silently differ from "
                "training. State it: e.g. preprocess.image_size=... preprocess.n_slices=... "
                "preprocess.normalization=..."
            )
        warnings.warn(
            f"{ckpt_path}: the checkpoint stores no preprocessing (data_spec); using the given "
            f"preprocess.{{{', '.join(sorted(given))}}} and defaults for every other field",
            UserWarning,
            stacklevel=3,
        )
    pre_dict.update(given)
    inputs = model_input_spec(module)
    pre = preprocess_from_cfg(
        pre_dict, inputs["num_views"], spec["name"], inputs["spatial_dims"], inputs["in_chans"]
    )
    if pre.stats_scope == "cohort" and pre.cohort_stats is None:
        raise ValueError(
            f"{ckpt_path}: preprocess.stats_scope='cohort' but the checkpoint holds no cohort statistics; "
            "the statistics must come from the training split (retrain with stats_scope=cohort, or evaluate "
            "with preprocess.stats_scope=volume)"
        )
    fixed_size = getattr(module.model, "img_size", None)
    if fixed_size is not None and int(fixed_size) != int(pre.image_size):
        raise ValueError(
            f"preprocess.image_size={pre.image_size} but model {spec['name']!r} of {ckpt_path} takes "
            f"{fixed_size} px images (its position embeddings are fixed): use preprocess.image_size="
            f"{fixed_size} or leave it null"
        )
    return pre


def score_split(
    trainer: Any, setup: EvalSetup, split: str
) -> tuple[SlicePredictions, PatientPredictions, dict[str, float]]:
    """Run the evaluation loop of ``split`` and return the aggregated predictions and the module's metrics.

    Args:
        trainer: a Lightning ``Trainer``.
        setup: from :func:`load_for_eval`.
        split: ``val``, ``test`` or ``all``.

    Returns:
        ``(slices, patients, metrics)``; the metric keys start with ``split``.

    Raises:
        ValueError: bad ``split``, a datamodule without ``all_dataloader`` for ``all``, or no prediction
            made (empty split).
    """
    check_split(split)
    module, datamodule = setup.module, setup.datamodule
    if split == "val":
        trainer.validate(module, datamodule=datamodule, verbose=False)
    else:
        module.test_stage_name = split
        if split == "all":
            if not hasattr(datamodule, "all_dataloader"):
                raise ValueError(
                    f"split='all' needs a datamodule with all_dataloader(); got {type(datamodule)}."
                )
            trainer.test(module, dataloaders=datamodule.all_dataloader(), verbose=False)
        else:
            trainer.test(module, datamodule=datamodule, verbose=False)
    if split not in module.predictions:
        hint = (
            "; to score every patient of a cohort without a split column (e.g. an external manifest), use "
            "split=all"
            if split != "all"
            else ""
        )
        raise ValueError(f"split={split!r} of the cohort gave no prediction (no patient in it){hint}")
    slices, patients = module.predictions[split]
    return slices, patients, dict(module.stage_metrics.get(split, {}))
