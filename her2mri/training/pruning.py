"""``OptunaPruning``: report a per-epoch validation metric to an Optuna trial and stop pruned trials early.

Used by ``her2mri-tune`` (:mod:`her2mri.runs.tune`). After each validation epoch the callback reports
``monitor`` (default ``val/auroc_patient``, the patient AUC of that epoch) to the trial with the epoch as the
step; when the study's pruner says the trial should stop (median or successive halving, compared with the
other trials at the same epoch), it sets ``trainer.should_stop`` and records the epoch in ``pruned_epoch``.
The run then ends like a normal early stop: the best checkpoint is still scored on val and test, so a pruned
trial has its ``metrics.json`` too, and the driver records the trial as PRUNED.

Trials run on one device: the callback reports from the process that owns the trial and does not support
DDP (run many trials in parallel instead, see docs/experiments.md).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L

log = logging.getLogger(__name__)


class OptunaPruning(L.Callback):
    """Report ``monitor`` after each validation epoch; stop the fit when the trial should be pruned.

    Args:
        trial: the ``optuna.trial.Trial`` of this run.
        monitor: a metric logged once per validation epoch (``val/auroc_patient``, ``val/loss``, ...); its
            direction must be the study's.

    Attributes:
        reported: ``(epoch, value)`` pairs reported so far.
        pruned_epoch: the epoch after which the trial was pruned, or None.
    """

    def __init__(self, trial: Any, monitor: str = "val/auroc_patient") -> None:
        if not monitor:
            raise ValueError(f"monitor={monitor!r} must name a validation metric, e.g. 'val/auroc_patient'")
        self.trial = trial
        self.monitor = monitor
        self.reported: list[tuple[int, float]] = []
        self.pruned_epoch: int | None = None
        self._warned = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Report the epoch's value and ask the pruner (skipped in sanity checks and outside ``fit``)."""
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            if not self._warned:
                log.warning(
                    "pruning: %s is not among the validation metrics (or undefined) at epoch %d; "
                    "nothing reported. Logged: %s",
                    self.monitor,
                    trainer.current_epoch,
                    sorted(trainer.callback_metrics),
                )
                self._warned = True
            return
        epoch = int(trainer.current_epoch)
        self.trial.report(float(value), step=epoch)
        self.reported.append((epoch, float(value)))
        if self.trial.should_prune():
            self.pruned_epoch = epoch
            trainer.should_stop = True
            log.info(
                "trial %d pruned after epoch %d (%s=%.4f)",
                self.trial.number,
                epoch,
                self.monitor,
                float(value),
            )
