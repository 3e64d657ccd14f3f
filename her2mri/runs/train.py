"""``train(cfg)``, the body of ``her2mri-train``, and the runtime and stage results that every task shares.

Runtime: :func:`task_wrapper` wraps ``train``, ``evaluate`` and ``evaluate_ensemble``: it closes the loggers
and writes a ``metrics.json`` with ``"status": "failed"`` when the task raises, so one failing job of a
multirun does not poison the next; :func:`setup_runtime` routes Lightning's logs and sets seeds, matmul
precision and threads; :func:`metric_value` picks ``optimized_metric`` for sweepers.

:func:`train` takes a composed Hydra config (``her2mri/conf/train.yaml``), builds datamodule, module, trainer,
callbacks and loggers from it, fits, scores the best checkpoint on val and test, and writes ``metrics.json``
and ``predictions/`` into ``cfg.paths.output_dir``. Wrapped by :func:`task_wrapper`.

The results of one stage (``val``, ``test``, ``all``), shared by ``train``, ``evaluate`` and
``evaluate_ensemble``: :func:`collect_stage` writes the stage's predictions and returns the module's metrics
plus the per-site metrics; :func:`clinical_stats` adds the patient-level statistics with CIs
(:func:`her2mri.stats.patient_metrics.patient_metrics_with_ci`); :func:`format_summary` prints the short
summary at the end of a run.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from her2mri.data.build import build_datamodule, model_input_spec, preprocess_from_cfg, sites_of
from her2mri.extras import EXTRA_OF, require
from her2mri.io_utils import clean_stale_temps
from her2mri.runs.outputs import write_metrics_json, write_predictions
from her2mri.runs.sites import site_metrics
from her2mri.stats.thresholds import youden_or_nan
from her2mri.training.checkpoint_io import resolve_resume_checkpoint
from her2mri.training.metrics import binary_metrics, prefixed

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- wrapper
def task_wrapper(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Run a task; on failure write ``metrics.json`` (``status: failed``) and re-raise; close loggers."""

    @functools.wraps(fn)
    def wrapped(cfg: DictConfig, *args: Any, **kwargs: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            return fn(cfg, *args, **kwargs)
        except Exception as exc:
            log.error("%s failed: %s: %s", fn.__name__, type(exc).__name__, exc)
            out = _output_dir(cfg, create=False)
            if out is not None:
                try:
                    write_metrics_json(
                        out / "metrics.json",
                        {},
                        plain_cfg(cfg),
                        status="failed",
                        error=f"{type(exc).__name__}: {exc}",
                        wall_time_s=round(time.perf_counter() - t0, 2),
                    )
                except Exception:  # noqa: BLE001 - never mask the original error
                    log.exception("could not write metrics.json of the failed run")
            raise
        finally:
            _close_loggers()
            log.info("%s: %.1f s", fn.__name__, time.perf_counter() - t0)

    return wrapped


def _close_loggers() -> None:
    """Finish an open wandb run (a no-op when wandb was never imported)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def metric_value(metrics: Mapping[str, Any], name: str | None) -> float | None:
    """The value of ``name`` in ``metrics`` (for Hydra sweepers); None when ``name`` is None.

    Raises:
        KeyError: ``name`` is not among the metrics (the message lists them).
    """
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric={name!r} is not among the run metrics: {sorted(metrics)}")
    value = metrics[name]
    return None if value is None else float(value)


# ---------------------------------------------------------------------- config helpers
def plain_cfg(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data, resolved when it can be (else unresolved), for ``metrics.json``."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - an unresolvable config must not hide the real error
        return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]


def _output_dir(cfg: DictConfig, create: bool = True) -> Path | None:
    try:
        out = Path(str(cfg.paths.output_dir)).resolve()
    except Exception:  # noqa: BLE001
        return None
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return out


def require_output_dir(cfg: DictConfig) -> Path:
    """``cfg.paths.output_dir`` (created).

    Raises:
        ValueError: the config has no ``paths.output_dir``.
    """
    out = _output_dir(cfg)
    if out is None:
        raise ValueError("paths.output_dir is not set (run through the CLI, or set it when composing).")
    return out


def instantiate_group(node: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config group (``logger``, ``callbacks``).

    Raises:
        MissingExtraError: an entry needs an optional dependency that is not installed (e.g. ``logger=wandb``
            without the ``tracking`` extra); the message names the extra.
    """
    from hydra.utils import instantiate

    objs: list[Any] = []
    if not node:
        return objs
    for name, sub in node.items():
        if isinstance(sub, DictConfig) and "_target_" in sub:
            try:
                objs.append(instantiate(sub, _convert_="partial"))
            except Exception as err:
                missing = _missing_module(err)
                if missing is None:
                    raise
                require(missing, f"{name} ({sub._target_})")  # raises MissingExtraError naming the extra
                raise
    return objs


def _missing_module(err: BaseException) -> str | None:
    """The optional module whose absence caused ``err`` (walking its causes), or None."""
    seen: BaseException | None = err
    while seen is not None:
        names = [getattr(seen, "name", None)] if isinstance(seen, ModuleNotFoundError) else []
        names += [m for m in EXTRA_OF if f"`{m}`" in str(seen) or f"'{m}'" in str(seen)]
        for name in names:
            if name and name.split(".")[0] in EXTRA_OF:
                return name.split(".")[0]
        seen = seen.__cause__ or seen.__context__
    return None


# ---------------------------------------------------------------------- runtime
class _DropAdverts(logging.Filter):
    """Drops Lightning's start-up advertisement for its cloud logger (not information about the run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def route_lightning_logs() -> None:
    """Send Lightning's log records through the root (Hydra) handlers only, once.

    Lightning attaches console handlers to ``lightning``, ``lightning.pytorch`` and ``lightning.fabric``
    when it is imported before logging is configured; under Hydra every message then appears twice on the
    console (once bare, once formatted). When the root logger has handlers, Lightning's console handlers
    are removed and its records propagate: once on the console, once in the run's log file.
    """
    # emitted by Lightning's own code under torch >= 2.10; users cannot act on it
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
        if not any(isinstance(f, _DropAdverts) for f in logger.filters):
            logger.addFilter(_DropAdverts())
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in rank_zero.filters):
        rank_zero.addFilter(_DropAdverts())


def setup_runtime(cfg: DictConfig) -> None:
    """Log routing, seeds (``seed_everything(seed, workers=True)``), matmul precision and CPU threads."""
    import lightning as L

    route_lightning_logs()
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)
    precision = cfg.get("matmul_precision")
    if precision:
        torch.set_float32_matmul_precision(str(precision))
    threads = cfg.get("num_threads")
    if threads:
        torch.set_num_threads(int(threads))


# ---------------------------------------------------------------------- builders
def cache_dir_of(cfg: DictConfig) -> str | None:
    """``cfg.paths.cache_dir`` as a string, or None when the config has none."""
    try:
        value = cfg.paths.cache_dir
    except Exception:  # noqa: BLE001 - configs composed without paths
        return None
    return None if value is None else str(value)


def build_trainer(trainer_cfg: DictConfig, **kwargs: Any) -> Any:
    """Instantiate ``cfg.trainer`` with :class:`AtomicCheckpointIO` (atomic saves, safe loads) as plugin."""
    from hydra.utils import instantiate

    from her2mri.training.checkpoint_io import AtomicCheckpointIO

    plugins = list(kwargs.pop("plugins", None) or [])
    if not any(isinstance(p, AtomicCheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return instantiate(trainer_cfg, plugins=plugins, _convert_="partial", **kwargs)


# ---------------------------------------------------------------------- stage results
SUMMARY_KEYS: tuple[str, ...] = ("auroc_patient", "balanced_accuracy_patient", "auroc_slice")


def collect_stage(
    module: Any, stage: str, out_dir: Path, sites: Mapping[str, str | None] | None, write: bool = True
) -> dict[str, float]:
    """The stage's metrics plus per-site metrics; writes the predictions when ``write`` (DDP rank 0)."""
    if stage not in module.stage_metrics:
        return {}
    slices, patients = module.predictions[stage]
    if write:
        write_predictions(out_dir, stage, slices, patients, sites)
    metrics = dict(module.stage_metrics[stage])
    metrics.update(site_metrics(patients, sites, stage, float(module.hparams.threshold)))
    return metrics


def clinical_stats(module: Any, stage: str, cfg: DictConfig) -> dict[str, float]:
    """Patient-level statistics with CIs (DeLong and bootstrap AUC CIs, Wilson CIs, calibration, HL).

    Keys are ``{stage}/stats/{name}`` (see :func:`her2mri.stats.patient_metrics.patient_metrics_with_ci`).
    On the test split of a training run the threshold is the Youden threshold of the validation patients,
    otherwise the module's fixed ``threshold``. Undefined statistics (e.g. the AUC with one class) are left
    out.
    """
    n_boot = int(cfg.get("stats_n_boot", 2000))
    if n_boot <= 0 or stage not in module.predictions:
        return {}
    from her2mri.stats.patient_metrics import patient_metrics_with_ci

    _, patients = module.predictions[stage]
    kwargs: dict[str, Any] = {"threshold": float(module.hparams.threshold)}
    if stage != "val" and "val" in module.predictions:
        _, val = module.predictions["val"]
        kwargs = {"val_labels": val.labels, "val_probs": val.probs, "threshold": "youden"}
    try:
        stats = patient_metrics_with_ci(
            patients.labels, patients.probs, n_boot=n_boot, seed=int(cfg.get("seed") or 0), **kwargs
        )
    except ValueError as err:
        log.warning("no clinical statistics for %s: %s", stage, err)
        return {}
    return {f"{stage}/stats/{k}": float(v) for k, v in stats.items() if v is not None}


def valthr_metrics(module: Any, test_stage: str, threshold: float) -> dict[str, float]:
    """Test patient metrics at a threshold chosen on the validation patients (Youden)."""
    if not math.isfinite(threshold) or test_stage not in module.predictions:
        return {}
    _, patients = module.predictions[test_stage]
    m = binary_metrics(patients.probs, patients.labels, threshold)
    m.pop("auroc")
    out = prefixed(m, test_stage, "patient", "_valthr")
    out[f"{test_stage}/threshold_valthr"] = threshold
    return out


def _locked_metrics(module: Any, test_stage: str, locked: Mapping[str, Any] | None) -> dict[str, float]:
    """``val/threshold_locked`` and the test patient metrics at it (``{test}/..._patient_locked``)."""
    if not locked or locked.get("value") is None:
        return {}
    value = float(locked["value"])
    out = {"val/threshold_locked": value}
    if test_stage in module.predictions:
        _, patients = module.predictions[test_stage]
        ok = patients.labels >= 0
        m = binary_metrics(patients.probs[ok], patients.labels[ok], value)
        m.pop("auroc")
        out.update(prefixed(m, test_stage, "patient", "_locked"))
    return out


def format_summary(title: str, metrics: Mapping[str, Any], stages: tuple[str, ...], out_dir: Path) -> str:
    """A short human-readable summary of the patient-level results."""
    lines = [f"== {title} ==", f"run dir: {out_dir}"]
    for stage in stages:
        n = metrics.get(f"{stage}/n_patients")
        if n is None:
            continue
        parts = []
        for key in SUMMARY_KEYS:
            v = metrics.get(f"{stage}/{key}")
            parts.append(f"{key}={v:.3f}" if isinstance(v, float) and math.isfinite(v) else f"{key}=n/a")
        lines.append(f"{stage:>5}: {int(n)} patients  " + "  ".join(parts))
    return "\n".join(lines)


def _model_spec(model_cfg: DictConfig) -> dict[str, Any]:
    spec = OmegaConf.to_container(model_cfg, resolve=True)
    if not isinstance(spec, dict):
        raise ValueError(f"model config must be a mapping with a 'name' key, got {spec!r}.")
    return spec


def _data_settings(data_cfg: DictConfig) -> dict[str, Any]:
    """Data settings of the training run, stored in the checkpoint (provenance)."""
    skip = {
        "_target_",
        "num_workers",
        "pin_memory",
        "persistent_workers",
        "progress",
        "num_preprocess_workers",
    }
    plain = OmegaConf.to_container(data_cfg, resolve=True)
    return {k: v for k, v in plain.items() if k not in skip} if isinstance(plain, dict) else {}


# ---------------------------------------------------------------------- train
@task_wrapper
def train(cfg: DictConfig, extra_callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train (optional), then evaluate the best checkpoint on val and test; write metrics and predictions.

    Args:
        cfg: composed ``train`` config.
        extra_callbacks: Lightning callbacks added to those of ``cfg.callbacks`` (e.g. the pruning callback
            of ``her2mri-tune``, which holds an Optuna trial and so cannot come from the config).

    Returns:
        The metrics dict (``stage/name -> float``) also written to ``metrics.json``.
    """
    from hydra.utils import instantiate

    t0 = time.perf_counter()
    out_dir = require_output_dir(cfg)
    setup_runtime(cfg)

    spec = _model_spec(cfg.model)
    optimizer_cfg = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg.module, [k for k in ("optimizer", "scheduler") if k in cfg.module]),
        resolve=True,
    )
    module = instantiate(cfg.module, model=spec, _convert_="partial")
    # set after instantiate: passed through instantiate, the `_target_` nodes would become objects
    module.hparams.optimizer_config = optimizer_cfg
    inputs = model_input_spec(module)
    pre = preprocess_from_cfg(
        OmegaConf.to_container(cfg.preprocess, resolve=True),
        inputs["num_views"],
        spec["name"],
        inputs["spatial_dims"],
        inputs["in_chans"],
    )
    log.info("model %s (%d parameters), views=%s", spec["name"], _n_params(module), pre.views)

    ckpt_dir = out_dir / "checkpoints"
    clean_stale_temps(ckpt_dir)
    do_train = bool(cfg.get("train", True))
    resume = resolve_resume_checkpoint(cfg.get("ckpt_path"), ckpt_dir)
    if not do_train and resume is None:
        raise ValueError(
            f"train=false needs a checkpoint to score: ckpt_path={cfg.get('ckpt_path')!r} gives none "
            "(set ckpt_path=<file>, or use her2mri-eval)"
        )
    datamodule = build_datamodule(cfg.data, pre.to_dict(), cache_dir=cache_dir_of(cfg))
    if pre.stats_scope == "cohort" and hasattr(datamodule, "fit_cohort_stats"):
        # training-split statistics, computed once here so that the checkpoint stores them
        pre = datamodule.fit_cohort_stats()
        log.info("cohort statistics (train split) per phase (lo, hi): %s", pre.cohort_stats)
    module.hparams.data_spec = {"preprocess": pre.to_dict(), "data": _data_settings(cfg.data)}
    # store again, so that hparams_initial (what loggers write to csv/hparams.yaml) holds data_spec too
    module.save_hyperparameters(dict(module.hparams))
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_group(cfg.get("callbacks")) + list(extra_callbacks)
    if not loggers:
        from lightning.pytorch.callbacks import LearningRateMonitor

        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = build_trainer(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    metrics: dict[str, Any] = {}
    tune = cfg.get("tune") or {}
    if do_train and tune.get("lr_find", False):
        metrics["tune/lr_find"] = run_lr_find(trainer, module, datamodule, tune)
    if do_train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        for key in ("val/auroc_patient_best", "train/loss_epoch", "train/auroc_slice"):
            if key in trainer.callback_metrics:
                metrics[key] = float(trainer.callback_metrics[key])
        ckpt = _best_checkpoint(trainer)
    else:
        ckpt = resume
        log.info("train=false: scoring %s", ckpt)
    rank0 = bool(getattr(trainer, "is_global_zero", True))  # every DDP rank holds the gathered predictions
    stages: list[str] = []
    if cfg.get("validate", True):
        trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
        metrics.update(collect_stage(module, "val", out_dir, sites_of(datamodule), write=rank0))
        stages.append("val")
    if cfg.get("test", True):
        trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
        metrics.update(collect_stage(module, "test", out_dir, sites_of(datamodule), write=rank0))
        stages.append("test")
    if "val" in module.predictions:
        _, val_patients = module.predictions["val"]
        metrics.update(valthr_metrics(module, "test", youden_or_nan(val_patients.labels, val_patients.probs)))
    locked = module.hparams.get("locked_threshold")
    metrics.update(_locked_metrics(module, "test", locked))
    for stage in stages:
        metrics.update(clinical_stats(module, stage, cfg))
    if "val/auroc_patient_best" not in metrics:
        # train=false, or no validation epoch: the scored checkpoint's own val AUC (NaN when undefined)
        metrics["val/auroc_patient_best"] = float(metrics.get("val/auroc_patient", math.nan))
    metric_value(metrics, cfg.get("optimized_metric"))  # a wrong name fails the run before "ok" is written

    wall = round(time.perf_counter() - t0, 2)
    if rank0:
        card = _write_model_card(module, datamodule, trainer, ckpt, metrics, cfg)
        write_metrics_json(
            out_dir / "metrics.json",
            metrics,
            plain_cfg(cfg),
            status="ok",
            ckpt_path=ckpt,
            wall_time_s=wall,
            locked_threshold=locked,
            model_card=card,
        )
        title = f"her2mri-train: {spec['name']} ({wall:.0f} s)"
        print(format_summary(title, metrics, tuple(stages), out_dir), flush=True)  # noqa: T201 - final summary
    return metrics


def _write_model_card(
    module: Any, datamodule: Any, trainer: Any, ckpt: str | None, metrics: Mapping[str, Any], cfg: DictConfig
) -> str | None:
    """Write ``model_card.json`` and ``MODEL_CARD.md`` beside the checkpoints; returns the JSON path."""
    from her2mri.runs.model_card import build_model_card, cohort_summary, write_model_card

    if not ckpt:
        return None
    files: list[tuple[str, str]] = [(ckpt, "best")]
    cb = getattr(trainer, "checkpoint_callback", None)
    last = getattr(cb, "last_model_path", "") if cb is not None else ""
    if last and Path(last).is_file() and Path(last).resolve() != Path(ckpt).resolve():
        files.append((last, "last"))
    card = build_model_card(
        model_spec=module.hparams.model,
        data_spec=module.hparams.get("data_spec") or {},
        locked_threshold=module.hparams.get("locked_threshold"),
        metrics=metrics,
        cohort=cohort_summary(datamodule),
        checkpoints=files,
        seed=cfg.get("seed"),
        aggregation=str(module.hparams.aggregation),
    )
    json_path, _ = write_model_card(Path(ckpt).parent, card)
    log.info("model card %s written to %s", card["id"], json_path.parent)
    return str(json_path)


def run_lr_find(trainer: Any, module: Any, datamodule: Any, tune: Mapping[str, Any]) -> float:
    """Lightning's learning-rate finder; its suggestion becomes the optimizer's ``lr`` for the fit.

    The model weights are restored after the search (Lightning does it), so the fit starts from the same
    initial weights. The suggestion is logged, stored in ``module.hparams.optimizer_config`` and returned.

    Args:
        trainer: the run's trainer.
        module: the ``HER2Classifier``.
        datamodule: the run's datamodule.
        tune: the ``tune`` config node (``min_lr``, ``max_lr``, ``num_training``).

    Raises:
        ValueError: the finder gave no suggestion (too few batches, or a loss that never decreased).
    """
    import functools

    from lightning.pytorch.tuner import Tuner

    num_training = int(tune.get("num_training", 50))
    fit_loop = trainer.fit_loop
    max_epochs = fit_loop.max_epochs
    # the finder runs num_training steps whatever the epoch length: lift max_epochs for the search only
    fit_loop.max_epochs = max(int(max_epochs or 0), num_training)
    try:
        finder = Tuner(trainer).lr_find(
            module,
            datamodule=datamodule,
            min_lr=float(tune.get("min_lr", 1e-6)),
            max_lr=float(tune.get("max_lr", 1e-1)),
            num_training=num_training,
            early_stop_threshold=tune.get("early_stop_threshold", 4.0),
            update_attr=False,
        )
    finally:
        fit_loop.max_epochs = max_epochs
    lr = None
    if finder is not None:
        n = len(finder.results.get("lr", []))
        # Lightning skips the first 10 points; short searches (tiny data, debugging) skip a fifth instead
        lr = finder.suggestion(skip_begin=min(10, n // 5), skip_end=1 if n > 5 else 0)
    if lr is None or not math.isfinite(float(lr)) or lr <= 0:
        raise ValueError(
            "tune.lr_find=true gave no learning-rate suggestion (too few training batches or a loss that "
            "never "
            "decreased); raise tune.num_training or set module.optimizer.lr yourself"
        )
    lr = float(lr)
    factory = getattr(module, "_optimizer_factory", None)
    if factory is not None:
        module._optimizer_factory = functools.partial(factory, lr=lr)
    else:
        module.hparams.lr = lr
    opt_cfg = module.hparams.get("optimizer_config") or {}
    if isinstance(opt_cfg, dict) and isinstance(opt_cfg.get("optimizer"), dict):
        opt_cfg["optimizer"]["lr"] = lr
    log.info("tune.lr_find: suggested lr %.3g", lr)
    return lr


def _best_checkpoint(trainer: Any) -> str | None:
    cb = getattr(trainer, "checkpoint_callback", None)
    path = getattr(cb, "best_model_path", "") if cb is not None else ""
    if path and Path(path).is_file():
        return str(path)
    last = getattr(cb, "last_model_path", "") if cb is not None else ""
    return str(last) if last and Path(last).is_file() else None


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
