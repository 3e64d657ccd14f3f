"""Per-slice evaluation outputs and the epoch loss, gathered over DDP ranks by torchmetrics aggregation.

:class:`EvalOutputs` keeps what the validation/test steps produce (patient id, slice index, label,
probability, and the loss) in torchmetrics ``CatMetric``/``MeanMetric`` states. Their ``compute()`` gathers
the states of every DDP rank (torchmetrics' ``gather_all_tensors``, uneven sizes and ranks without data
included), so :class:`~her2mri.training.module.HER2Classifier` writes no collective call itself; in one
process nothing is gathered and the values are those of the steps, in order.

Patient ids are strings, which a tensor metric cannot hold: they are kept as one stream of UTF-8 bytes, each
id followed by a 0 byte (:func:`encode_pids`, :func:`decode_pids`). The stream needs no id table shared
between ranks, and it is concatenated in the same rank order as the other states, so the ids stay aligned
with their probabilities.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import CatMetric, MeanMetric, SumMetric

#: the byte that ends each patient id in the id stream
PID_END = 0


def encode_pids(pids: Sequence[str], device: torch.device | str | None = None) -> Tensor:
    """The UTF-8 bytes of ``pids``, each followed by a 0 byte, as a float64 vector (bytes are exact).

    Raises:
        ValueError: an id contains the NUL character (it would end the id early).
    """
    out = bytearray()
    for pid in pids:
        raw = str(pid).encode("utf-8")
        if PID_END in raw:
            raise ValueError(f"pid={pid!r} contains a NUL character, which a patient id may not hold")
        out += raw
        out.append(PID_END)
    return torch.tensor(list(out), dtype=torch.float64, device=device)


def decode_pids(stream: Tensor | np.ndarray) -> list[str]:
    """The patient ids of an id stream of :func:`encode_pids` (concatenated streams included)."""
    raw = bytes(np.asarray(torch.as_tensor(stream).cpu(), dtype=np.float64).astype(np.uint8).tolist())
    if not raw:
        return []
    if raw[-1] != PID_END:
        raise ValueError("id stream does not end with the 0 byte that ends every patient id")
    return [part.decode("utf-8") for part in raw[:-1].split(bytes([PID_END]))]


def _cat(metric: CatMetric) -> Tensor:
    """``metric.compute()`` as a 1-D tensor (empty when no rank saw data)."""
    with warnings.catch_warnings():  # a stage without any batch on this rank: an empty result, not a warning
        warnings.filterwarnings("ignore", message=r".*compute.*called before.*update")
        value = metric.compute()
    if isinstance(value, list):  # torchmetrics returns its empty state list when nothing was added
        return torch.zeros(0, dtype=torch.float64)
    return value.reshape(-1)


class EvalOutputs(nn.Module):
    """The slice predictions and the loss of one evaluation stage, as torchmetrics aggregation states.

    Every state is float64 (labels, slice indices and id bytes are exact there; NaN probabilities are kept,
    ``nan_strategy="disable"``) and non-persistent, so checkpoints are unchanged.

    Example:
        >>> out = EvalOutputs()
        >>> out.update(["P1", "P1"], torch.tensor([0, 1]), torch.tensor([1, 1]), torch.tensor([0.75, 0.5]))
        >>> out.update_loss(torch.tensor(0.5), 2)
        >>> pids, sidx, labels, probs, loss = out.compute()
        >>> pids, sidx.tolist(), labels.tolist(), probs.tolist(), loss
        (['P1', 'P1'], [0, 1], [1, 1], [0.75, 0.5], 0.5)
    """

    def __init__(self) -> None:
        super().__init__()
        self.pids = CatMetric(nan_strategy="disable")
        self.slice_idx = CatMetric(nan_strategy="disable")
        self.labels = CatMetric(nan_strategy="disable")
        self.probs = CatMetric(nan_strategy="disable")
        #: slice-weighted mean of the batch losses, and the number of labelled slices it covers
        self.loss = MeanMetric(nan_strategy="disable")
        self.n_labelled = SumMetric(nan_strategy="disable")
        for metric in (self.pids, self.slice_idx, self.labels, self.probs, self.loss, self.n_labelled):
            metric.set_dtype(torch.float64)

    def update(self, pids: Sequence[str], slice_idx: Tensor, labels: Tensor, probs: Tensor) -> None:
        """Add one batch of slice predictions (no host sync)."""
        self.pids.update(encode_pids(pids, device=probs.device))
        self.slice_idx.update(slice_idx.detach().reshape(-1).double())
        self.labels.update(labels.detach().reshape(-1).double())
        self.probs.update(probs.detach().reshape(-1).double())

    def update_loss(self, loss: Tensor, n_labelled: int) -> None:
        """Add the mean loss of a batch over its ``n_labelled`` labelled slices (weight of the batch)."""
        # the batch loss once per labelled slice: MeanMetric's ``weight`` is ignored with
        # nan_strategy="disable" (torchmetrics 1.9), and NaN losses must stay visible
        self.loss.update(loss.detach().double().reshape(1).expand(int(n_labelled)))
        self.n_labelled.update(torch.tensor(float(n_labelled), dtype=torch.float64, device=loss.device))

    def compute(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, float | None]:
        """Every rank's slices ``(pids, slice_idx, labels, probs)`` in rank order, and the epoch loss.

        Every DDP rank must call it (the states are gathered); each gets the same values. The loss is
        None when no rank saw a labelled slice.
        """
        pids = decode_pids(_cat(self.pids))
        sidx = _cat(self.slice_idx).cpu().numpy().astype(np.int64)
        labels = _cat(self.labels).cpu().numpy().astype(np.int64)
        probs = _cat(self.probs).cpu().numpy().astype(np.float64)
        if not len(pids) == len(sidx) == len(labels) == len(probs):
            raise RuntimeError(
                f"gathered {len(pids)} ids, {len(sidx)} slice indices, {len(labels)} labels and {len(probs)} "
                "probabilities: the evaluation states are out of step"
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*compute.*called before.*update")
            n = float(self.n_labelled.compute())
            loss = float(self.loss.compute())
        return pids, sidx, labels, probs, (loss if n > 0 else None)

    def reset(self) -> None:
        """Empty every state (start of an epoch)."""
        for metric in (self.pids, self.slice_idx, self.labels, self.probs, self.loss, self.n_labelled):
            metric.reset()
