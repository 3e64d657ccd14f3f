"""Fault tolerance of multiruns, and a simulated crash to test resuming.

In a Hydra multirun, a job that raises stops the sweep: the basic sweeper re-raises the job's error once its
batch is done, and the Optuna sweeper aborts the study. :func:`run_task` runs a task so that, **in a multirun
only**, an exception is logged (the task's ``task_wrapper`` has already written ``metrics.json`` with
``status: failed`` and the error) and the job returns a *failure value* instead of raising:

- ``-inf`` when the sweeper maximises (``hydra.sweeper.direction: maximize``, e.g. ``sweep=optuna_thda``),
  ``+inf`` when it minimises: the trial is recorded with the worst possible value and the study goes on;
- NaN for sweepers without a direction (the basic grid sweeper ignores return values).

A single run (``hydra.mode`` RUN) still raises, so its exit status is non-zero. ``her2mri-summarize`` lists
failed jobs.

:class:`CrashAtEpoch` is a test tool: it ends the process (``SIGKILL``, or an exception) at the start of a
given epoch, after the checkpoints of the previous one are written, as a pre-empted cluster job or a power
cut would.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from collections.abc import Callable
from typing import Any

import lightning as L
from omegaconf import DictConfig

from her2mri.options import check_choice

log = logging.getLogger(__name__)

CRASH_MODES: tuple[str, ...] = ("kill", "raise")


class SimulatedCrash(RuntimeError):
    """Raised by :class:`CrashAfterEpoch` in ``raise`` mode."""


def hydra_mode_and_direction() -> tuple[str | None, str | None]:
    """``(mode, direction)`` of the current Hydra job: ``("RUN"|"MULTIRUN", "maximize"|"minimize"|None)``.

    Both are None outside a Hydra app (e.g. a config made with the compose API).
    """
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None, None
        hc = HydraConfig.get()
        mode = getattr(hc.mode, "name", None) if hc.mode is not None else None
        direction = hc.sweeper.get("direction") if "sweeper" in hc else None
    except Exception:  # noqa: BLE001 - no Hydra context: treat as a plain call
        return None, None
    if isinstance(direction, (list, tuple)) or (direction is not None and not isinstance(direction, str)):
        direction = str(direction[0]) if hasattr(direction, "__getitem__") and len(direction) else None
    if direction is not None:
        direction = str(direction).split(".")[-1].lower()  # enum names such as Direction.maximize
    return mode, direction


def failure_value(direction: str | None) -> float:
    """The value a failed job returns: ``-inf`` (maximize), ``+inf`` (minimize) or NaN (no direction).

    Raises:
        ValueError: ``direction`` is not None, ``maximize`` or ``minimize``.
    """
    if direction is None:
        return float("nan")
    if direction == "maximize":
        return -math.inf
    if direction == "minimize":
        return math.inf
    raise ValueError(f"direction={direction!r} must be 'maximize', 'minimize' or None")


def run_task(
    task: Callable[[DictConfig], dict[str, Any]],
    cfg: DictConfig,
    metric: Callable[[dict[str, Any]], float | None] | None = None,
    multirun: bool | None = None,
) -> float | None:
    """Run ``task(cfg)``; in a multirun, turn an exception into the failure value of the sweeper.

    Args:
        task: :func:`her2mri.runs.train.train`, :func:`her2mri.runs.evaluate.evaluate` or
            ``evaluate_ensemble`` (they write ``metrics.json`` with ``status: failed`` themselves before
            re-raising).
        cfg: the composed config.
        metric: picks the value returned to the sweeper from the task's metrics (None: return None).
        multirun: force the mode (None: ask Hydra).

    Returns:
        The picked metric; the failure value (see :func:`failure_value`) when a multirun job failed.

    Raises:
        Exception: whatever ``task`` raised, outside a multirun.
    """
    mode, direction = hydra_mode_and_direction()
    if multirun is None:
        multirun = mode == "MULTIRUN"
    try:
        metrics = task(cfg)
        value = metric(metrics) if metric is not None else None
        if value is not None and math.isnan(value) and direction is not None:
            # an undefined metric (e.g. an AUC on a one-class split) would abort an Optuna study
            log.warning("optimized metric is NaN: returning %s to the sweeper", failure_value(direction))
            return failure_value(direction)
        return value
    except Exception as exc:
        if not multirun:
            raise
        value = failure_value(direction)
        log.error(
            "job failed (%s: %s); the multirun goes on and this job returns %s. metrics.json has "
            "status 'failed' and the error.",
            type(exc).__name__,
            exc,
            value,
            exc_info=True,
        )
        return value


class CrashAtEpoch(L.Callback):
    r"""End the process at the first training batch of epoch ``epoch`` (0-based, >= 1).

    The checkpoints of epoch ``epoch - 1`` (``last.ckpt``, the best so far) are on disk by then, as for a job
    pre-empted or killed in the middle of training. Use it to test resuming::

        her2mri-train +callbacks.crash._target_=her2mri.runs.faults.CrashAtEpoch \
            +callbacks.crash.epoch=1
        her2mri-train ckpt_path=last hydra.run.dir=<the same run dir>

    Args:
        epoch: the epoch in which the process dies (>= 1).
        mode: ``kill`` (``SIGKILL`` of the own process: nothing after it runs, as in a real kill) or ``raise``
            (:class:`SimulatedCrash`, usable in-process, e.g. in tests).
    """

    def __init__(self, epoch: int = 1, mode: str = "kill") -> None:
        super().__init__()
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"epoch={epoch!r} must be an integer >= 1")
        check_choice("mode", mode, CRASH_MODES)
        self.epoch, self.mode = epoch, mode

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Crash when epoch ``epoch`` starts training."""
        if trainer.current_epoch < self.epoch:
            return
        if self.mode == "kill":
            log.warning("CrashAtEpoch: SIGKILL in epoch %d", trainer.current_epoch)
            os.kill(os.getpid(), signal.SIGKILL)
        raise SimulatedCrash(f"simulated crash in epoch {trainer.current_epoch}")
