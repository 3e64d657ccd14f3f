"""Exact resume: per-epoch reseeding, so that a run resumed from ``last.ckpt`` equals an uninterrupted one.

Lightning restores weights, optimizer, scheduler, loop counters and callback states from a checkpoint, but not
the random streams: the global torch/numpy/python generators (dropout), the training DataLoader's generator
(shuffling) and the augmentation's generator. A resumed run would therefore replay the random numbers of epoch
0 in epoch ``e``. :class:`EpochSeed` makes every random stream of epoch ``e`` a function of ``(seed, e)``
only:
at the start of each training epoch it reseeds the global generators, the training loader's generator and the
training dataset's augmentation (``dataset.reseed``). Resumed at the start of epoch ``e``, a run then draws
exactly the numbers an uninterrupted run draws in epoch ``e``.

Resume a run with ``ckpt_path=last`` in the run's own directory: Lightning picks the newest ``last*.ckpt`` of
the ``ModelCheckpoint`` folder (``<run dir>/checkpoints``), or starts from scratch with a warning when there
is
none (so the same command both starts and resumes a job)::

    her2mri-train experiment=paper_thda ckpt_path=last hydra.run.dir=outputs/train/2026-01-01_12-00-00
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch

#: spacing of the per-epoch seeds (a prime, so that (seed, epoch) pairs rarely collide)
EPOCH_STRIDE = 1_000_003
#: spacing of the per-rank seeds in DDP
RANK_STRIDE = 7_919


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run seeded with ``seed`` (in ``[0, 2**32)``).

    Example:
        >>> epoch_seed(42, 0), epoch_seed(42, 1) - epoch_seed(42, 0)
        (42, 1000003)
    """
    if epoch < 0:
        raise ValueError(f"epoch={epoch!r} must be >= 0")
    return (int(seed) + EPOCH_STRIDE * int(epoch)) % (2**32)


def reseed_all(seed: int, dataloader: Any = None) -> None:
    """Seed python, numpy and torch (CPU and CUDA), a DataLoader's generator and its dataset's augmentation.

    Args:
        seed: the seed, in ``[0, 2**32)``.
        dataloader: a ``torch.utils.data.DataLoader`` (or None). Its ``generator`` (shared with a
            ``RandomSampler`` it built), its sampler's own ``generator`` and ``dataset.reseed(seed)`` are used
            when present.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if dataloader is None:
        return
    seen: set[int] = set()
    for owner in (
        dataloader,
        getattr(dataloader, "sampler", None),
        getattr(dataloader, "batch_sampler", None),
    ):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and id(gen) not in seen:
            gen.manual_seed(seed)
            seen.add(id(gen))
    reseed = getattr(getattr(dataloader, "dataset", None), "reseed", None)
    if callable(reseed):
        reseed(seed)


def _train_loaders(trainer: Any) -> list[Any]:
    loaders = getattr(trainer, "train_dataloader", None)
    if loaders is None:
        return []
    if isinstance(loaders, (list, tuple)):
        return list(loaders)
    if isinstance(loaders, dict):
        return list(loaders.values())
    return [loaders]


class EpochSeed(L.Callback):
    """Reseed every random stream at the start of each training epoch from ``(seed, epoch)``.

    Args:
        seed: base seed; None uses the ``PL_GLOBAL_SEED`` set by ``seed_everything`` (0 when unset).

    The reseeding happens in ``on_train_epoch_start``, before the epoch's DataLoader iterator is created.
    Lightning creates the iterator of the first epoch of a ``fit`` call earlier (while it sets up the fit,
    before the checkpoint is restored), so in that epoch the callback makes the iterator again (one
    pre-fetched
    batch is discarded). Exact for runs resumed at an epoch boundary (``last.ckpt`` is written at the end of
    each epoch); a checkpoint written in the middle of an epoch does not restore the DataLoader position.
    """

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self.seed = seed

    def _base_seed(self) -> int:
        if self.seed is not None:
            return int(self.seed)
        import os

        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Remember that the first epoch of this ``fit`` call uses an iterator made before any epoch hook."""
        self._first_epoch_of_fit = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Reseed for ``trainer.current_epoch``; in the first epoch of a fit, restart the data iterator."""
        # each DDP rank gets its own stream (rank is stable across a resume, so exactness is kept)
        base = self._base_seed() + RANK_STRIDE * int(getattr(trainer, "global_rank", 0))
        seed = epoch_seed(base, trainer.current_epoch)
        loaders = _train_loaders(trainer)
        for loader in loaders or [None]:
            reseed_all(seed, loader)
        if getattr(self, "_first_epoch_of_fit", False):
            self._first_epoch_of_fit = False
            # Lightning made (and pre-fetched from) this epoch's iterator while setting up the fit, before the
            # checkpoint was restored; from the second epoch on it makes it after this hook. Make it
            # again now,
            # from the reseeded generators, as Lightning itself does at the start of later epochs.
            fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
            if fetcher is None:
                warnings.warn(
                    "EpochSeed: no data fetcher found on the fit loop (Lightning internals changed?): the "
                    "first epoch after a resume is not reproducible.",
                    stacklevel=2,
                )
            else:
                iter(fetcher)
