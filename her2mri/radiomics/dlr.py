"""Deep-learning radiomics (DLR): penultimate CNN features -> PCA (fitted on train) -> fused with radiomics.

Per case (seed 001): the slice with the largest tumour area (axis 0 of a volume; the image itself in 2-D) is
cropped to the tumour bounding box plus ``margin_px`` pixels, z-scored per channel, resized to
``image_size`` and passed through a backbone; its pooled penultimate features (``forward_head(...,
pre_logits=True)``) are the deep features ``dl__0 ... dl__{d-1}``. Three images (pre/early/late) become the
R/G/B channels; a single image is repeated three times.

The backbone is a timm model (random init offline, or a local weights file) or a her2mri training
checkpoint (Lightning ``.ckpt`` of :mod:`her2mri.training`, model built by ``her2mri.models.create_model``).

:class:`DeepPCA` reduces the ``dl__`` columns (seed 001: 64 components) inside the CV pipeline and passes
every other column through, which is the "pre-fusion" of deep and radiomic features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from her2mri.radiomics.cases import RadiomicsCase, read_case_arrays
from her2mri.radiomics.extract import perturb_mask

DEEP_PREFIX = "dl__"


def roi_crop(images: Sequence[np.ndarray], mask: np.ndarray, margin_px: int = 10) -> np.ndarray:
    """(3, h, w) crop of the largest-tumour slice around the tumour box + margin, z-scored per channel."""
    if margin_px < 0:
        raise ValueError(f"margin_px={margin_px}: must be >= 0")
    if mask.ndim == 3:
        k = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))
        planes = [img[k] for img in images]
        m2 = mask[k]
    else:
        planes, m2 = list(images), mask
    rows, cols = np.flatnonzero(m2.any(axis=1)), np.flatnonzero(m2.any(axis=0))
    r0, r1 = max(0, rows[0] - margin_px), min(m2.shape[0], rows[-1] + 1 + margin_px)
    c0, c1 = max(0, cols[0] - margin_px), min(m2.shape[1], cols[-1] + 1 + margin_px)
    chans = [p[r0:r1, c0:c1].astype(np.float32) for p in planes]
    if len(chans) == 1:
        chans = chans * 3
    if len(chans) != 3:
        raise ValueError(f"images: {len(chans)} images given, expected 1 or 3 (pre, early, late)")
    x = np.stack(chans)
    mu = x.mean(axis=(1, 2), keepdims=True)
    sd = x.std(axis=(1, 2), keepdims=True)
    return (x - mu) / np.where(sd > 0, sd, 1.0)


def load_backbone(
    name: str = "resnet18",
    checkpoint: str | Path | None = None,
    weights: str | Path | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Any:
    """A feature extractor in eval mode: a her2mri checkpoint's model, or a timm model.

    Args:
        name: timm model name (``checkpoint`` None) or her2mri registry name (with ``checkpoint``).
        checkpoint: her2mri Lightning checkpoint; its ``state_dict`` keys ``model.*`` are loaded.
        weights: local timm state-dict file (no download; classifier keys are ignored).
        model_kwargs: extra constructor arguments.
    """
    import torch

    kw = dict(model_kwargs or {})
    if checkpoint is not None:
        from her2mri.models import create_model
        from her2mri.models.weights import read_state_dict

        state = read_state_dict(checkpoint)  # weights_only=True: nothing in the file is run
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")} or state
        model = create_model(name, **kw)
        if getattr(model, "num_views", 1) != 1:
            raise ValueError(f"name={name!r}: DLR needs a single-view model (num_views=1)")
        model.load_state_dict(state, strict=True)
    else:
        import timm

        model = timm.create_model(name, pretrained=False, num_classes=0, **kw)
        if weights is not None:
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
            head = {k for k in state if k.startswith(("fc.", "head.", "classifier."))}
            model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=True)
    return model.eval()


def deep_features(
    cases: Sequence[RadiomicsCase],
    model: Any,
    *,
    image_size: int = 224,
    margin_px: int = 10,
    batch_size: int = 16,
    mask_variant: str = "none",
    perturb_mm: float = 1.0,
) -> pd.DataFrame:
    """Deep features of each case (rows: pid, columns ``dl__i``).

    Args:
        cases: the cohort.
        model: a backbone with ``forward_features`` and ``forward_head(..., pre_logits=True)``.
        image_size: side of the network input.
        margin_px: pixels added around the tumour box.
        batch_size: cases per forward pass.
        mask_variant: ``none``, ``mask2``, ``erode``, ``dilate`` (second extraction for the ICC filter).
        perturb_mm: erosion / dilation in mm.
    """
    import torch
    import torch.nn.functional as F

    crops = []
    for c in cases:
        images, mask, spacing = read_case_arrays(c, "mask2" if mask_variant == "mask2" else "mask")
        if mask_variant in ("erode", "dilate"):
            mask = perturb_mask(mask, spacing, mask_variant, perturb_mm)
        order = [k for k in ("pre", "early", "late") if k in images] or list(images)
        x = torch.from_numpy(roi_crop([images[k] for k in order], mask, margin_px))[None]
        crops.append(F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False))
    feats = []
    with torch.no_grad():
        for i in range(0, len(crops), batch_size):
            xb = torch.cat(crops[i : i + batch_size])
            f = model.forward_features(xb)
            f = model.forward_head(f, pre_logits=True)
            feats.append(f.reshape(f.shape[0], -1).float().numpy())
    arr = np.concatenate(feats)
    cols = [f"{DEEP_PREFIX}{i}" for i in range(arr.shape[1])]
    df = pd.DataFrame(arr, index=pd.Index([c.pid for c in cases], name="pid"), columns=cols)
    if mask_variant != "none":
        df.columns = ["retest__" + c for c in df.columns]
    return df


class DeepPCA(TransformerMixin, BaseEstimator):
    """PCA of the deep-feature columns (fitted on the training rows); other columns pass through unchanged.

    Args:
        n_components: components kept (seed 001: 64); capped at ``min(n_rows - 1, n_deep)``.
        prefix: prefix of the deep columns.
    """

    def __init__(self, n_components: int = 64, prefix: str = DEEP_PREFIX) -> None:
        self.n_components = n_components
        self.prefix = prefix

    def fit(self, X: pd.DataFrame, y=None) -> DeepPCA:  # noqa: ANN001
        """Fit the PCA on the deep columns of these rows."""
        if not isinstance(X, pd.DataFrame):
            raise ValueError("DeepPCA needs X as a pandas DataFrame (deep columns are found by name)")
        self.deep_cols_ = [c for c in X.columns if str(c).startswith(self.prefix)]
        self.other_cols_ = [c for c in X.columns if c not in set(self.deep_cols_)]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        if self.deep_cols_:
            k = max(1, min(self.n_components, len(X) - 1, len(self.deep_cols_)))
            self.pca_ = PCA(n_components=k).fit(X[self.deep_cols_].to_numpy(np.float64))
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Other columns, then ``dlpca__0 ...``."""
        check_is_fitted(self, "deep_cols_")
        out = X[self.other_cols_].copy()
        if self.deep_cols_:
            z = self.pca_.transform(X[self.deep_cols_].to_numpy(np.float64))
            pcs = pd.DataFrame(z, index=X.index, columns=[f"dlpca__{i}" for i in range(z.shape[1])])
            out = pd.concat([out, pcs], axis=1)
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:  # noqa: ANN001
        """Names of the output columns."""
        check_is_fitted(self, "deep_cols_")
        k = self.pca_.n_components_ if self.deep_cols_ else 0
        return np.asarray([*map(str, self.other_cols_), *[f"dlpca__{i}" for i in range(k)]], dtype=object)

    def set_output(self, *, transform: str | None = None) -> DeepPCA:
        """Output is always a DataFrame (accepted for Pipeline.set_output)."""
        return self
