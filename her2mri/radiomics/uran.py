"""URAN (seed 000): HKFS key-feature selection + MAAE attention-excitation + fully connected classifier.

This implements the *intent* of the published method, not its code's defects (see docs/radiomics.md):

- **HKFS** is an L1 selection (:class:`~her2mri.radiomics.selection.LassoSelector`) placed in the sklearn
  pipeline before :class:`URANClassifier`, so it is fitted on the training folds only (the published code
  fitted ``Lasso(alpha=0.09117, max_iter=10)`` on all data before the split, unconverged).
- **MAAE** acts on a hidden feature representation: the selected features are projected to ``channels x
  length`` units; max- and average-pooling over ``length`` give two channel descriptors that go through a
  shared bottleneck MLP of width ``max(1, channels // reduction)`` (>= 1; the published block squeezed 2
  logits with reduction 16, a width of 0, so it multiplied everything by 0.5); their sum through a sigmoid
  rescales each channel (CBAM-style channel attention).
- The network trains in a plain torch loop (:class:`URANClassifier`), the same optimisation as
  :class:`URANModule` in a Lightning ``Trainer`` (same batches, same results) without its per-fit overhead.
- The classifier returns one logit trained with ``BCEWithLogitsLoss`` (no softmax before the loss);
  probabilities (not argmax labels) are used for the AUC; the standardisation is fitted on training rows only.
"""

from __future__ import annotations

import numpy as np
import torch
from lightning import LightningModule
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn


class MAAE(nn.Module):
    """Max- and average-pooled attention-excitation over channels of a ``(B, C, L)`` hidden tensor.

    Args:
        channels: number of channels C.
        reduction: bottleneck ratio; the hidden width is ``max(1, channels // reduction)``.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels={channels}: must be >= 1")
        if reduction < 1:
            raise ValueError(f"reduction={reduction}: must be >= 1")
        self.hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, self.hidden), nn.ReLU(), nn.Linear(self.hidden, channels)
        )

    def weights(self, h: torch.Tensor) -> torch.Tensor:
        """Channel weights in (0, 1), shape (B, C)."""
        return torch.sigmoid(self.mlp(h.amax(dim=2)) + self.mlp(h.mean(dim=2)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Rescale each channel of ``h`` (B, C, L) by its attention weight."""
        return h * self.weights(h).unsqueeze(-1)


class URANNet(nn.Module):
    """Tabular network: projection to (C, L) -> MAAE (optional) -> fully connected classifier -> 1 logit.

    Args:
        n_features: input features (after HKFS).
        channels: hidden channels C.
        length: units per channel L (pooled by MAAE).
        reduction: MAAE bottleneck ratio.
        hidden: width of the classifier's hidden layer.
        dropout: dropout before the classifier.
        use_maae: False for the ablation without attention.
    """

    def __init__(
        self,
        n_features: int,
        channels: int = 16,
        length: int = 8,
        reduction: int = 4,
        hidden: int = 32,
        dropout: float = 0.2,
        use_maae: bool = True,
    ) -> None:
        super().__init__()
        if n_features < 1:
            raise ValueError(f"n_features={n_features}: must be >= 1")
        self.channels, self.length = channels, length
        self.proj = nn.Sequential(nn.Linear(n_features, channels * length), nn.ReLU())
        self.maae = MAAE(channels, reduction) if use_maae else nn.Identity()
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(channels * length, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (B,)."""
        h = self.proj(x).view(x.shape[0], self.channels, self.length)
        h = self.maae(h)
        return self.head(h.flatten(1)).squeeze(-1)


class URANModule(LightningModule):
    """LightningModule training :class:`URANNet` with ``BCEWithLogitsLoss`` and AdamW.

    For use in a Lightning ``Trainer`` (e.g. on a GPU or with callbacks). :class:`URANClassifier` runs the
    same optimisation in a plain torch loop, which is what the radiomics pipelines use.

    Args:
        n_features: input features.
        lr: learning rate.
        weight_decay: AdamW weight decay.
        pos_weight: weight of positive cases in the loss (class imbalance); 1 = none.
        **net_kwargs: :class:`URANNet` arguments.
    """

    def __init__(
        self,
        n_features: int,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        pos_weight: float = 1.0,
        **net_kwargs: object,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = URANNet(n_features, **net_kwargs)  # type: ignore[arg-type]
        self.loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(float(pos_weight)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B,)."""
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step on a batch of (features, labels)."""
        x, y = batch
        loss = self.loss(self(x), y)
        if not self.trainer.barebones:
            self.log("train/loss", loss, prog_bar=False, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW."""
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )


class URANClassifier(ClassifierMixin, BaseEstimator):
    """sklearn estimator training :class:`URANNet` in a plain torch loop, so URAN sits in the CV pipeline.

    Put the HKFS step (``lasso`` with ``l1_logistic``) before it in the pipeline. Features are standardised
    with statistics of the rows passed to ``fit`` only. The loop is what :class:`URANModule` does in a
    Lightning ``Trainer`` (AdamW, ``BCEWithLogitsLoss`` with ``pos_weight``, same seed, same init), without
    the Trainer's start-up and per-epoch overhead, which dominated these millisecond fits (a URAN experiment
    fits the network once per outer fold and signature). The batches come from the same seeded, shuffled
    ``DataLoader`` the Trainer was given, so each row keeps its batch and dropout mask;
    ``tests/test_radiomics_uran_dlr.py`` checks that both give the same predictions within 1e-5.

    Args:
        channels: see :class:`URANNet`.
        length: see :class:`URANNet`.
        reduction: see :class:`URANNet`.
        hidden: see :class:`URANNet`.
        dropout: see :class:`URANNet`.
        use_maae: see :class:`URANNet`.
        lr: learning rate.
        weight_decay: AdamW weight decay.
        max_epochs: training epochs.
        batch_size: mini-batch size (32); None = full batch, one step per epoch on all training rows.
            Up to 32 training rows the default is a full batch already. Rows are shuffled each epoch in a
            seeded order.
        balance: weight positives by n_neg / n_pos in the loss.
        random_state: seed of the initialisation, dropout and batch order.
        num_threads: torch CPU threads while fitting / predicting (restored afterwards). 1 by default: on a
            network this small, more threads only add synchronisation (15x slower on a busy 2-core machine).
    """

    def __init__(
        self,
        channels: int = 16,
        length: int = 8,
        reduction: int = 4,
        hidden: int = 32,
        dropout: float = 0.2,
        use_maae: bool = True,
        lr: float = 3e-3,
        weight_decay: float = 1e-3,
        max_epochs: int = 60,
        batch_size: int | None = 32,
        balance: bool = True,
        random_state: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.channels = channels
        self.length = length
        self.reduction = reduction
        self.hidden = hidden
        self.dropout = dropout
        self.use_maae = use_maae
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.balance = balance
        self.random_state = random_state
        self.num_threads = num_threads

    def _net_kwargs(self) -> dict[str, object]:
        return {
            "channels": self.channels,
            "length": self.length,
            "reduction": self.reduction,
            "hidden": self.hidden,
            "dropout": self.dropout,
            "use_maae": self.use_maae,
        }

    def fit(self, X, y):  # noqa: ANN001, ANN201
        """Standardise on these rows and train the network."""
        from torch.utils.data import DataLoader, TensorDataset

        Xa = np.asarray(X, dtype=np.float32)
        ya = np.asarray(y).astype(np.float32)
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"batch_size={self.batch_size}: must be >= 1 or None (full batch)")
        self.mean_ = Xa.mean(axis=0)
        self.scale_ = np.where(Xa.std(axis=0) > 0, Xa.std(axis=0), 1.0).astype(np.float32)
        n_pos = float(ya.sum())
        pos_weight = (len(ya) - n_pos) / n_pos if self.balance and n_pos > 0 else 1.0
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(self.num_threads)))
        try:
            torch.manual_seed(self.random_state)
            self.net_ = URANNet(Xa.shape[1], **self._net_kwargs())  # type: ignore[arg-type]
            loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(float(pos_weight)))
            opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            xt = torch.from_numpy((Xa - self.mean_) / self.scale_)
            yt = torch.from_numpy(ya)
            bs = len(xt) if self.batch_size is None else int(self.batch_size)
            # the DataLoader only draws the seeded batch order (shuffled rows, as the Trainer was fed), so
            # every row keeps the dropout mask and batch it had under Lightning
            gen = torch.Generator().manual_seed(self.random_state)
            loader = DataLoader(TensorDataset(xt, yt), batch_size=bs, shuffle=True, generator=gen)
            self.net_.train()
            for _ in range(int(self.max_epochs)):
                for xb, yb in loader:
                    opt.zero_grad(set_to_none=True)
                    loss_fn(self.net_(xb), yb).backward()
                    opt.step()
            self.net_.eval()
        finally:
            torch.set_num_threads(threads)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = Xa.shape[1]
        return self

    def decision_function(self, X) -> np.ndarray:  # noqa: ANN001
        """Logits."""
        check_is_fitted(self, "net_")
        Xa = (np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(self.num_threads)))
        try:
            with torch.inference_mode():
                return self.net_(torch.from_numpy(Xa)).numpy().astype(np.float64)
        finally:
            torch.set_num_threads(threads)

    def predict_proba(self, X) -> np.ndarray:  # noqa: ANN001
        """Probabilities of class 0 and 1 (sigmoid of the logit)."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p, p], axis=1)

    def predict(self, X) -> np.ndarray:  # noqa: ANN001
        """Class with probability >= 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
