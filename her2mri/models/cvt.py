"""CvT baseline (Hugging Face ``transformers`` ``CvtModel``; timm has no CvT) behind the her2mri model API."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from her2mri.models.base import Her2Model
from her2mri.models.registry import register_model
from her2mri.models.weights import build_model

__all__ = ["CVT13_HUB_ID", "CvTClassifier", "cvt_13"]

CVT13_HUB_ID = "microsoft/cvt-13"
_CVT13 = {"depth": (1, 2, 10), "embed_dim": (64, 192, 384), "num_heads": (1, 3, 6)}


def _three(name: str, value: Sequence[int]) -> list[int]:
    """Validate a per-stage list of three positive integers."""
    values = [int(v) for v in value]
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"{name} must list 3 positive integers (one per CvT stage), got {list(value)!r}")
    return values


class CvTClassifier(Her2Model):
    """Single-view CvT: input ``(B, in_chans, H, W)``, logits ``(B, num_classes)``.

    The backbone is ``transformers.CvtModel`` (random init, or ``microsoft/cvt-13`` from the hub when
    ``pretrained``). As in ``CvtForImageClassification``, the embedding is the layer-normed class token of the
    last stage (or the mean of the layer-normed spatial tokens when the last stage has none), then dropout
    and a linear ``head``. ``forward_features`` returns the last stage's tokens ``(B, 1 + h*w, C)`` (class
    token first). Any input size works (convolutional token embedding).

    Args:
        num_classes: number of output classes.
        pretrained: load ``microsoft/cvt-13`` from the Hugging Face hub (network needed; only with the default
            CvT-13 sizes and 3 input channels).
        in_chans: input channels.
        drop_rate: dropout before the classifier.
        depth: blocks per stage, CvT-13 ``(1, 2, 10)``; ``depth[i] > i`` is required by transformers.
        embed_dim: width per stage, CvT-13 ``(64, 192, 384)``.
        num_heads: attention heads per stage, CvT-13 ``(1, 3, 6)``.
        drop_path_rate: stochastic depth of the last stage (0.1 in CvT-13).
    """

    num_views = 1

    def __init__(
        self,
        num_classes: int = 2,
        pretrained: bool = False,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        depth: Sequence[int] = _CVT13["depth"],
        embed_dim: Sequence[int] = _CVT13["embed_dim"],
        num_heads: Sequence[int] = _CVT13["num_heads"],
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        from her2mri.extras import require

        require("transformers", "model=cvt_13")
        from transformers import CvtConfig, CvtForImageClassification, CvtModel

        depth, embed_dim, num_heads = (
            _three(n, v) for n, v in zip(_CVT13, (depth, embed_dim, num_heads), strict=True)
        )
        bad = [i for i, d in enumerate(depth) if d <= i]
        if bad:
            raise ValueError(
                f"depth must satisfy depth[i] > i (a transformers CvT constraint), got {depth!r}"
            )
        bad_heads = [i for i in range(3) if embed_dim[i] % num_heads[i]]
        if bad_heads:
            raise ValueError(
                f"embed_dim must be divisible by num_heads per stage, got {embed_dim!r} / {num_heads!r}"
            )
        self.in_chans = in_chans
        if pretrained:
            custom = {"depth": depth, "embed_dim": embed_dim, "num_heads": num_heads} != {
                k: list(v) for k, v in _CVT13.items()
            }
            if custom or in_chans != 3:
                raise ValueError(
                    f"pretrained={pretrained!r} needs the CvT-13 sizes and in_chans=3, got depth={depth}, "
                    f"embed_dim={embed_dim}, num_heads={num_heads}, in_chans={in_chans}"
                )
            hub = CvtForImageClassification.from_pretrained(CVT13_HUB_ID)
            self.backbone = hub.cvt
            self.norm = hub.layernorm
        else:
            config = CvtConfig(
                num_channels=in_chans,
                depth=depth,
                embed_dim=embed_dim,
                num_heads=num_heads,
                drop_path_rate=[0.0, 0.0, float(drop_path_rate)],
            )
            self.backbone = CvtModel(config, add_pooling_layer=False)
            self.norm = nn.LayerNorm(embed_dim[-1])
        self.has_cls_token = bool(self.backbone.config.cls_token[-1])
        self._input_hw: tuple[int, int] | None = None
        self._init_head(self.backbone.config.embed_dim[-1], num_classes, drop_rate)

    def forward_features(self, x: Tensor) -> Tensor:
        """Last-stage tokens ``(B, P + h*w, C)``, ``P = 1`` class token when the stage has one."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"x must have shape (B, {self.in_chans}, H, W) for a single-view model, got {tuple(x.shape)}"
            )
        self._input_hw = (int(x.shape[-2]), int(x.shape[-1]))
        out = self.backbone(pixel_values=x, return_dict=True)
        tokens = out.last_hidden_state.flatten(2).transpose(1, 2)
        if self.has_cls_token:
            tokens = torch.cat([out.cls_token_value, tokens], dim=1)
        return tokens

    def pool_features(self, features: Tensor) -> Tensor:
        """Layer-normed class token (or mean of layer-normed tokens) ``(B, C)``."""
        if self.has_cls_token:
            return self.norm(features[:, 0])
        return self.norm(features).mean(dim=1)

    def _grid(self) -> tuple[int, int] | None:
        """Token grid of the last stage for the last input size (conv-embedding arithmetic)."""
        if self._input_hw is None:
            return None
        cfg = self.backbone.config
        h, w = self._input_hw
        for k, s, p in zip(cfg.patch_sizes, cfg.patch_stride, cfg.patch_padding, strict=True):
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        return h, w

    def gradcam_target_layers(self) -> list[nn.Module]:
        """``layernorm_before`` of the last block of the last stage."""
        return [self.backbone.encoder.stages[-1].layers[-1].layernorm_before]

    def gradcam_reshape_transform(self) -> Callable[[Tensor], Tensor]:
        """Tokens ``(B, P + h*w, C)`` -> maps ``(B, C, h, w)`` (class token dropped)."""
        prefix = 1 if self.has_cls_token else 0

        def reshape(tokens: Tensor) -> Tensor:
            spatial = tokens[:, prefix:]
            grid = self._grid()
            if grid is None or grid[0] * grid[1] != spatial.shape[1]:
                side = int(round(spatial.shape[1] ** 0.5))
                grid = (side, spatial.shape[1] // side)
            return spatial.reshape(tokens.shape[0], grid[0], grid[1], -1).permute(0, 3, 1, 2)

        return reshape

    def remap_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A bare ``CvtModel`` or ``CvtForImageClassification`` state dict -> this model's keys."""
        renames = {"cvt.": "backbone.", "layernorm.": "norm.", "classifier.": "head."}
        return self._prefix_foreign_keys(state_dict, "backbone.", renames)


@register_model
def cvt_13(**kwargs: Any) -> CvTClassifier:
    """CvT-13 (transformers ``CvtModel``), single view; ``depth``/``embed_dim``/``num_heads`` resize it."""
    return build_model(CvTClassifier, **kwargs)
