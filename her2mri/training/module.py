"""``HER2Classifier``: the LightningModule that trains and evaluates every her2mri image model.

The model is stored as a *spec* (``{"name": ..., **kwargs}`` for :func:`her2mri.models.create_model`) in the
hyper-parameters, never as an ``nn.Module``, so ``HER2Classifier.load_from_checkpoint(path)`` rebuilds it in a
notebook without Hydra. Optimizer and scheduler arrive from Hydra as ``_partial_`` callables; without them the
module builds AdamW + cosine with linear warm-up from its own hyper-parameters.

Validation and test predictions are kept per slice (on the device, no host sync per step) in torchmetrics
aggregation states (:class:`~her2mri.training.gathering.EvalOutputs`: ``CatMetric`` for ids, slice indices,
labels and probabilities, ``MeanMetric`` for the loss), gathered from all DDP ranks by torchmetrics at the
end of the epoch, de-duplicated on ``(pid, slice_idx)``, aggregated per patient (median by default) and scored
there; see :mod:`her2mri.training.aggregation`.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MaxMetric
from torchmetrics.classification import BinaryAUROC

from her2mri.options import check_choice
from her2mri.training.aggregation import (
    AGGREGATIONS,
    PatientPredictions,
    SlicePredictions,
    aggregate_patients,
    collect_slices,
)
from her2mri.training.checkpoint_io import classifier_hparams, load_weights, move_to, read_classifier
from her2mri.training.gathering import EvalOutputs
from her2mri.training.losses import LOSSES, balanced_class_weights, build_loss
from her2mri.training.metrics import binary_metrics, prefixed
from her2mri.training.schedulers import cosine_with_warmup
from her2mri.training.threshold import RULES as THRESHOLD_RULES
from her2mri.training.tta import tta_probabilities

DEFAULT_SCHEDULES: tuple[str, ...] = ("cosine_warmup", "constant")
COMPILE_MODES: tuple[str | None, ...] = (
    None,
    "default",
    "reduce-overhead",
    "max-autotune",
    "max-autotune-no-cudagraphs",
)


def model_spec_from(model: Mapping[str, Any] | str) -> dict[str, Any]:
    """Normalise a model spec to a plain dict ``{"name": str, **kwargs}``.

    Args:
        model: a registered model name, or a mapping with a ``name`` key plus constructor kwargs
            (an OmegaConf node works too).

    Returns:
        A new plain dict (nested containers converted).

    Raises:
        ValueError: no usable ``name``.
    """
    if isinstance(model, str):
        return {"name": model}
    if not isinstance(model, Mapping):
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(model, DictConfig):
                model = OmegaConf.to_container(model, resolve=True)  # type: ignore[assignment]
        except ImportError:  # pragma: no cover - omegaconf is a dependency
            pass
    if not isinstance(model, Mapping) or not isinstance(model.get("name"), str):
        raise ValueError(f"model={model!r} must be a model name or a mapping with a 'name' key.")
    spec = {str(k): v for k, v in model.items() if k != "_target_"}
    return spec


class HER2Classifier(L.LightningModule):
    """HER2 status classifier over any her2mri model, with slice- and patient-level metrics.

    Args:
        model: model spec: a registered name or ``{"name": ..., **kwargs}`` for ``create_model``
            (``None`` kwargs are ignored by ``create_model``).
        loss: ``ce`` (cross-entropy, the paper's loss) or ``focal``.
        class_weights: per-class loss weights, ``"balanced"`` (``n / (2 n_c)`` from the training labels of
            the datamodule, resolved at the start of fit and stored as numbers in the checkpoint) or None.
        label_smoothing: label smoothing in [0, 1).
        focal_gamma: focusing parameter of the focal loss.
        optimizer: partial optimizer, called as ``optimizer(params=...)``; None -> AdamW(lr, weight_decay).
        scheduler: partial scheduler, called as ``scheduler(optimizer=..., total_steps=...)`` (``total_steps``
            only when it accepts it); stepped every optimizer step. None -> ``default_schedule``.
        lr: learning rate of the default AdamW (used only when ``optimizer`` is None).
        weight_decay: weight decay of the default AdamW.
        default_schedule: ``cosine_warmup`` (default) or ``constant``, used when ``scheduler`` is None.
        warmup_fraction: warm-up fraction of the default cosine schedule.
        aggregation: slice -> patient score: ``median`` (default, the paper's best), ``mean`` or ``max``.
        threshold: probability threshold for accuracy, sensitivity, specificity (see
            :mod:`her2mri.training.metrics` for the rule).
        threshold_rule: how the locked threshold is chosen on the validation patients at every validation
            of a fit: ``youden`` (default) or ``sensitivity`` (:mod:`her2mri.training.threshold`).
        target_sensitivity: the validation sensitivity rule ``sensitivity`` must reach, in (0, 1].
        locked_threshold: the locked threshold (:class:`~her2mri.training.threshold.LockedThreshold` as a
            dict); set during fitting and saved with each checkpoint (the value of that checkpoint's weights).
        data_spec: preprocessing and data settings used in training
            (``{"preprocess": {...}, "data": {...}}``), stored so that evaluation reproduces them.
        optimizer_config: the optimizer/scheduler config as plain data, stored for the record only.
        channels_last: keep the model's 4-D weights and 4-D inputs in ``torch.channels_last`` memory format
            (faster convolutions with tensor cores under bf16/fp16 autocast on a GPU; same results up to
            float rounding). ``"auto"``: channels-last while the model runs on the CPU (oneDNN convolutions
            are faster in NHWC there, see docs/performance.md), the default layout on any other device and
            for models with 3-D convolutions; the weights are converted when the fit/eval starts (``setup``)
            or on the first forward pass on another kind of device.
        compile: run the forward pass through ``torch.compile`` (compiled on the first call). The
            uncompiled model stays ``self.model``, so checkpoints and Grad-CAM hooks are unchanged.
        compile_mode: ``torch.compile`` mode (``None`` = default, ``"reduce-overhead"``,
            ``"max-autotune"``, ``"max-autotune-no-cudagraphs"``); used only with ``compile=True``.

    Example:
        >>> clf = HER2Classifier({"name": "resnet34", "pretrained": False})  # doctest: +SKIP
        >>> clf = HER2Classifier.load_from_checkpoint("runs/x/checkpoints/best.ckpt")  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Mapping[str, Any] | str = "thda_resnet34",
        loss: str = "ce",
        class_weights: Sequence[float] | str | None = "balanced",
        label_smoothing: float = 0.0,
        focal_gamma: float = 2.0,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        lr: float = 3e-4,
        weight_decay: float = 0.05,
        default_schedule: str = "cosine_warmup",
        warmup_fraction: float = 0.05,
        aggregation: str = "median",
        threshold: float = 0.5,
        threshold_rule: str = "youden",
        target_sensitivity: float = 0.9,
        locked_threshold: Mapping[str, Any] | None = None,
        data_spec: Mapping[str, Any] | None = None,
        optimizer_config: Mapping[str, Any] | None = None,
        channels_last: bool | str = False,
        compile: bool = False,  # noqa: A002 - the Hydra key users type
        compile_mode: str | None = None,
    ) -> None:
        super().__init__()
        spec = model_spec_from(model)
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r} is not valid. Valid values: {', '.join(LOSSES)}.")
        if aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation={aggregation!r} is not valid. Valid values: {', '.join(AGGREGATIONS)}."
            )
        if default_schedule not in DEFAULT_SCHEDULES:
            raise ValueError(
                f"default_schedule={default_schedule!r} is not valid. "
                f"Valid values: {', '.join(DEFAULT_SCHEDULES)}."
            )
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold={threshold!r} must be in [0, 1].")
        check_choice("threshold_rule", threshold_rule, THRESHOLD_RULES)
        if not 0.0 < float(target_sensitivity) <= 1.0:
            raise ValueError(f"target_sensitivity={target_sensitivity!r} must be in (0, 1].")
        if compile_mode not in COMPILE_MODES:
            raise ValueError(
                f"compile_mode={compile_mode!r} is not valid. "
                f"Valid values: {', '.join(repr(m) for m in COMPILE_MODES)}."
            )
        if not (isinstance(channels_last, bool) or channels_last == "auto"):
            raise ValueError(f"channels_last={channels_last!r} must be true, false or 'auto'.")
        if isinstance(class_weights, str) and class_weights != "balanced":
            raise ValueError(
                f"class_weights={class_weights!r} must be 'balanced', a list of numbers or None."
            )
        if class_weights is not None and not isinstance(class_weights, str):
            class_weights = [float(w) for w in class_weights]
        self.save_hyperparameters(
            {
                "model": spec,
                "loss": loss,
                "class_weights": class_weights,
                "label_smoothing": float(label_smoothing),
                "focal_gamma": float(focal_gamma),
                "lr": float(lr),
                "weight_decay": float(weight_decay),
                "default_schedule": default_schedule,
                "warmup_fraction": float(warmup_fraction),
                "aggregation": aggregation,
                "threshold": float(threshold),
                "threshold_rule": threshold_rule,
                "target_sensitivity": float(target_sensitivity),
                "locked_threshold": _plain(locked_threshold) if locked_threshold is not None else None,
                "data_spec": _plain(data_spec) if data_spec is not None else None,
                "optimizer_config": _plain(optimizer_config) if optimizer_config is not None else None,
                "channels_last": channels_last,
                "compile": bool(compile),
                "compile_mode": compile_mode,
            }
        )
        self._optimizer_factory = optimizer
        self._scheduler_factory = scheduler

        from her2mri.models import create_model  # local import: keeps `import her2mri.training` light

        name = spec["name"]
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        self.model: nn.Module = create_model(name, **kwargs)
        #: the memory format the weights are in now (``"auto"`` switches it on the first forward pass)
        self._weights_channels_last = False
        if channels_last is True:
            self.model = self.model.to(memory_format=torch.channels_last)
            self._weights_channels_last = True
        #: the ``torch.compile`` wrapper, built on the first forward; kept out of the module tree
        #: (a plain attribute) so that the state dict keys stay those of ``self.model``
        self._compiled: Callable[[Tensor], Tensor] | None = None
        self._build_loss()

        self.train_auroc = BinaryAUROC()
        self.val_auroc_best = MaxMetric()
        self.val_auroc_best.persistent(True)  # survives a resume from checkpoint
        #: slice predictions and loss of the validation and test steps (torchmetrics states, gathered over
        #: DDP ranks at the epoch end; non-persistent, so not in the checkpoint)
        self.eval_outputs = nn.ModuleDict({"val": EvalOutputs(), "test": EvalOutputs()})
        #: last aggregated predictions per stage name: (slices, patients)
        self.predictions: dict[str, tuple[SlicePredictions, PatientPredictions]] = {}
        #: last computed epoch-end metrics per stage name
        self.stage_metrics: dict[str, dict[str, float]] = {}
        #: name used in metric keys for ``trainer.test`` (eval may set it to e.g. ``"all"``)
        self.test_stage_name = "test"
        #: her2mri metadata saved as ``checkpoint["her2mri"]`` (e.g. a locked ``threshold``, a model card id)
        self.her2mri_metadata: dict[str, Any] = {}
        #: test-time augmentation of val/test steps (:mod:`her2mri.training.tta`); set by her2mri-eval
        self.tta = "none"

    # ------------------------------------------------------------------ model
    @property
    def num_views(self) -> int:
        """Number of views the model expects (1: ``(B, 3, H, W)``, 3: ``(B, 3, 3, H, W)``)."""
        return int(getattr(self.model, "num_views", 1))

    def _use_channels_last(self, x: Tensor) -> bool:
        """Whether this forward pass runs channels-last; converts the weights when ``"auto"`` switches."""
        setting = self.hparams.get("channels_last", False)
        if setting != "auto":
            return bool(setting)
        self._set_weights_format(x.device.type == "cpu")
        return self._weights_channels_last

    def _set_weights_format(self, channels_last: bool) -> None:
        """Convert the weights to channels-last or back (in place: optimizers keep the same parameters)."""
        if channels_last == self._weights_channels_last:
            return
        if channels_last and any(p.ndim == 5 for p in self.model.parameters()):
            return  # 3-D convolutions: channels_last is a 4-D layout, "auto" leaves such models as they are
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        with torch.inference_mode(False), torch.no_grad():  # never inference tensors as weights
            self.model.to(memory_format=fmt)
        self._weights_channels_last = channels_last

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` of the model (compiled and/or channels-last when configured)."""
        if self._use_channels_last(x):
            if x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
        if self.hparams.get("compile", False):
            if self._compiled is None:
                object.__setattr__(
                    self, "_compiled", torch.compile(self.model, mode=self.hparams.get("compile_mode"))
                )
            return self._compiled(x)  # type: ignore[misc]
        return self.model(x)

    @torch.inference_mode()
    def predict_proba(self, x: Tensor) -> Tensor:
        """Positive-class probabilities ``(B,)`` of a batch of images (eval mode is the caller's choice).

        Runs under ``torch.inference_mode`` (no autograd bookkeeping); the result cannot enter a graph.
        """
        return torch.softmax(self(x).float(), dim=-1)[:, 1]

    def _build_loss(self) -> None:
        cw = self.hparams.class_weights
        weights = None if (cw is None or isinstance(cw, str)) else cw
        self.loss_fn = build_loss(
            self.hparams.loss,
            class_weights=weights,
            label_smoothing=self.hparams.label_smoothing,
            focal_gamma=self.hparams.focal_gamma,
        )

    def set_class_weights(self, weights: Sequence[float] | None) -> None:
        """Fix the loss class weights (stored in hparams, hence in the checkpoint)."""
        self.hparams.class_weights = None if weights is None else [float(w) for w in weights]
        self._build_loss()
        self.loss_fn.to(self.device)

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Any,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        weights_only: bool | None = True,
        **kwargs: Any,
    ) -> HER2Classifier:
        """Load a checkpoint or ``her2mri-export`` folder safely (see :func:`load_classifier`).

        Unlike Lightning's method, nothing is unpickled (``weights_only=False`` is refused) and the stored
        model spec loses ``pretrained``/``weights_path``. ``kwargs`` replace stored hyper-parameters.

        Raises:
            ValueError: ``weights_only=False`` or ``hparams_file`` (not supported).
        """
        if weights_only is False:
            raise ValueError("weights_only=False: her2mri never unpickles checkpoints (they could run code)")
        if hparams_file is not None:
            raise ValueError(f"hparams_file={hparams_file!r} is not supported: the checkpoint holds them")
        return load_classifier(
            checkpoint_path,
            map_location="cpu" if map_location is None else map_location,
            strict=True if strict is None else bool(strict),
            **kwargs,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store :attr:`her2mri_metadata` as ``checkpoint["her2mri"]`` (when not empty)."""
        if self.her2mri_metadata:
            checkpoint["her2mri"] = _plain(dict(self.her2mri_metadata))

    def setup(self, stage: str) -> None:
        """Check the classes of val/test at once; resolve ``class_weights="balanced"`` at fit time.

        With ``channels_last="auto"`` the weights take their memory format here, from the trainer's device,
        before a strategy wraps the model (DDP).
        """
        if self.hparams.get("channels_last") == "auto" and self._trainer is not None:
            self._set_weights_format(self.trainer.strategy.root_device.type == "cpu")
        self._check_classes(stage)
        if stage != "fit" or self.hparams.class_weights != "balanced":
            return
        labels = _train_labels(self.trainer.datamodule if self._trainer is not None else None)
        if labels is None:
            warnings.warn(
                "class_weights='balanced' but the datamodule exposes no training labels "
                "(train_labels()); training with unweighted loss.",
                stacklevel=2,
            )
            self.set_class_weights(None)
        else:
            self.set_class_weights(balanced_class_weights(labels, num_classes=2))

    def _check_classes(self, stage: str) -> None:
        """Warn at once when a split scored in ``stage`` holds one class (its AUC will be NaN)."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        describe = getattr(datamodule, "describe", None)
        if not callable(describe):
            return
        splits = {"fit": ("val",), "validate": ("val",), "test": ("test",)}.get(stage, ())
        try:
            counts = describe()
        except Exception:  # noqa: BLE001 - a datamodule without these splits: nothing to check
            return
        for split in splits:
            c = counts.get(split) or {}
            pos, neg = int(c.get("pos", 0)), int(c.get("neg", 0))
            if c.get("patients") and (pos == 0 or neg == 0):
                warnings.warn(
                    f"the {split} split holds one class only ({pos} HER2+, {neg} HER2-, "
                    f"{c.get('unknown', 0)} unknown patients): {split}/auroc_patient is undefined (NaN)"
                    + (
                        ", val/auroc_patient_best stays NaN and sweepers get their failure value; "
                        "use a larger cohort or split_mode=kfold"
                        if split == "val"
                        else ""
                    ),
                    UserWarning,
                    stacklevel=2,
                )

    # ------------------------------------------------------------------ steps
    def _logits_and_loss(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        image = batch["image"]
        label = batch["label"].long()
        logits = self(image)
        loss = self.loss_fn(logits.float(), label)
        return logits, label, loss

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step; metrics stay on the device (no host sync)."""
        logits, label, loss = self._logits_and_loss(batch)
        prob = torch.softmax(logits.detach().float(), dim=-1)[:, 1]
        self.train_auroc.update(prob, label)
        bs = label.shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs)
        self.log("train/auroc_slice", self.train_auroc, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def _eval_step(self, batch: Mapping[str, Any], stage: str) -> None:
        label = batch["label"].long()
        logits = self(batch["image"])
        if self.tta != "none":
            prob = tta_probabilities(self, batch["image"], self.tta).mean(0)
        else:
            prob = torch.softmax(logits.float(), dim=-1)[:, 1]
        outputs = self._outputs(stage)
        labelled = label >= 0  # label -1: unknown (external cohorts scored without labels)
        n_labelled = int(labelled.sum())  # one host sync per eval batch (never in training steps)
        if n_labelled:
            # slice-weighted mean over the epoch (MeanMetric, reduced over DDP ranks in _finish_stage)
            outputs.update_loss(self.loss_fn(logits[labelled].float(), label[labelled]), n_labelled)
        pids = [str(p) for p in batch["pid"]]
        sidx = batch.get("slice_idx")
        if sidx is None:
            sidx = torch.zeros_like(label)
        sidx = torch.as_tensor(sidx, device=label.device).long().reshape(-1)
        outputs.update(pids, sidx, label, prob)

    def _outputs(self, stage: str) -> EvalOutputs:
        """The :class:`EvalOutputs` of a stage: ``val``, or ``test`` for any test stage name."""
        return self.eval_outputs["val" if stage == "val" else "test"]  # type: ignore[return-value]

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Score one validation batch (kept per slice until the end of the epoch)."""
        self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Score one test batch (kept per slice until the end of the epoch)."""
        self._eval_step(batch, self.test_stage_name)

    def predict_step(
        self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """Per-slice probabilities: ``{"pid", "slice_idx", "prob"}`` (and ``label`` when present)."""
        prob = torch.softmax(self(batch["image"]).float(), dim=-1)[:, 1]
        out: dict[str, Any] = {"pid": list(batch["pid"]), "prob": prob.cpu()}
        if "slice_idx" in batch:
            out["slice_idx"] = torch.as_tensor(batch["slice_idx"]).cpu()
        if "label" in batch:
            out["label"] = torch.as_tensor(batch["label"]).cpu()
        return out

    # ------------------------------------------------------------------ epoch ends
    def on_validation_epoch_start(self) -> None:
        """Clear the validation outputs."""
        self._outputs("val").reset()

    def on_test_epoch_start(self) -> None:
        """Clear the test outputs."""
        self._outputs(self.test_stage_name).reset()

    def on_validation_epoch_end(self) -> None:
        """Aggregate per patient, log ``val/*`` and the running best ``val/auroc_patient_best``."""
        metrics = self._finish_stage("val")
        if metrics is None or self.trainer.sanity_checking:
            return
        if self.trainer.state.fn == "fit":  # not when a loaded checkpoint is re-scored
            self._lock_threshold()
        auc = metrics.get("val/auroc_patient", float("nan"))
        if math.isfinite(auc):
            self.val_auroc_best.update(torch.tensor(auc, device=self.device))
        if self.val_auroc_best.update_called:
            best = self.val_auroc_best.compute()
        else:  # no finite AUC yet (e.g. one class in val): NaN, so sweepers always find the key
            best = torch.tensor(float("nan"), device=self.device)
        self.log("val/auroc_patient_best", best, sync_dist=False)

    def _lock_threshold(self) -> None:
        """Choose the locked threshold on this validation's patients; saved with the next checkpoint."""
        from her2mri.training.threshold import choose_threshold

        _, patients = self.predictions["val"]
        locked = choose_threshold(
            patients.probs, patients.labels, self.hparams.threshold_rule, self.hparams.target_sensitivity
        )
        self.hparams["locked_threshold"] = locked.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the locked threshold (``trainer.validate(ckpt_path=...)`` keeps hparams), ``her2mri``."""
        stored = (checkpoint.get("hyper_parameters") or {}).get("locked_threshold")
        self.hparams["locked_threshold"] = stored
        meta = checkpoint.get("her2mri")
        if isinstance(meta, Mapping):
            self.her2mri_metadata = dict(meta)

    def on_test_epoch_end(self) -> None:
        """Aggregate per patient and log the test metrics."""
        self._finish_stage(self.test_stage_name)

    def _finish_stage(self, stage: str) -> dict[str, float] | None:
        outputs = self._outputs(stage)
        # torchmetrics gathers every rank's states (each rank calls this); one process: the steps' values
        pids, sidx, labels, probs, loss = outputs.compute()
        outputs.reset()
        if loss is not None:  # the slice-weighted mean of the batch losses over every DDP rank
            self.log(f"{stage}/loss", loss, sync_dist=False)
        slices = collect_slices(pids, sidx, labels, probs)
        if len(slices) == 0:
            return None
        patients = aggregate_patients(slices, self.hparams.aggregation)
        thr = self.hparams.threshold
        s_ok, p_ok = slices.labels >= 0, patients.labels >= 0
        metrics = prefixed(binary_metrics(slices.probs[s_ok], slices.labels[s_ok], thr), stage, "slice")
        metrics.update(
            prefixed(binary_metrics(patients.probs[p_ok], patients.labels[p_ok], thr), stage, "patient")
        )
        metrics[f"{stage}/n_patients"] = float(len(patients))
        metrics[f"{stage}/n_slices"] = float(len(slices))
        # every rank holds the same gathered data, hence the same values: no further sync
        self.log_dict(metrics, sync_dist=False, prog_bar=False)
        self.predictions[stage] = (slices, patients)
        self.stage_metrics[stage] = metrics
        return metrics

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        """Optimizer (Hydra partial or default AdamW) and a per-step scheduler."""
        params = [p for p in self.parameters() if p.requires_grad]
        if self._optimizer_factory is not None:
            optimizer = self._optimizer_factory(params=params)
        else:
            optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = self._total_steps()
        if self._scheduler_factory is not None:
            factory = self._scheduler_factory
            kwargs: dict[str, Any] = {"optimizer": optimizer}
            if _accepts(factory, "total_steps"):
                kwargs["total_steps"] = total
            scheduler = factory(**kwargs)
        elif self.hparams.default_schedule == "cosine_warmup":
            scheduler = cosine_with_warmup(
                optimizer, total_steps=total, warmup_fraction=self.hparams.warmup_fraction
            )
        else:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _total_steps(self) -> int:
        try:
            total = self.trainer.estimated_stepping_batches
        except Exception:  # noqa: BLE001 - no trainer attached or no length known
            return 1000
        if total is None or not math.isfinite(float(total)) or total < 1:
            return 1000
        return int(total)


def _plain(obj: Any) -> Any:
    """Convert OmegaConf containers and tuples to plain dicts/lists (for hparams and JSON)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    params = sig.parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _train_labels(datamodule: Any) -> list[int] | None:
    """Training labels from a datamodule exposing ``train_labels()`` (or ``train_labels`` list), else None."""
    if datamodule is None:
        return None
    labels = getattr(datamodule, "train_labels", None)
    if callable(labels):
        labels = labels()
    if labels is None:
        return None
    labels = [int(v) for v in labels]
    return labels or None


def load_classifier(
    path: str | Path, map_location: Any = "cpu", strict: bool = True, **overrides: Any
) -> HER2Classifier:
    """Load a ready ``HER2Classifier`` (eval mode) from a ``.ckpt`` or a ``her2mri-export`` folder, safely.

    Nothing in the file is executed (``weights_only=True``, safetensors; read by
    :func:`her2mri.training.checkpoint_io.read_classifier`), and the stored model spec is stripped of
    ``pretrained``/``weights_path``, so no other file and no model hub is touched.

    Args:
        path: a Lightning checkpoint written by ``her2mri-train`` or a folder written by ``her2mri-export``.
        map_location: device for the weights (``"cpu"`` by default; ``None`` keeps the stored devices).
        strict: require the stored weights to match the model's keys exactly.
        **overrides: hyper-parameters that replace stored ones (e.g. ``compile=False``).

    Returns:
        The module in eval mode. ``module.hparams.data_spec`` is the training preprocessing (None when the
        checkpoint has none) and ``module.her2mri_metadata`` the checkpoint's ``her2mri`` block
        (e.g. ``threshold``), ``{}`` when absent.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: not a safe, readable her2mri checkpoint or export (the message names the file).
    """
    hparams, state, metadata, source = read_classifier(path, map_location=map_location)
    known = set(inspect.signature(HER2Classifier.__init__).parameters) - {"self"}
    module = HER2Classifier(**classifier_hparams(hparams, source, known, **overrides))
    load_weights(module, state, source, strict)
    module.her2mri_metadata = metadata
    move_to(module, map_location)
    module.eval()
    return module
