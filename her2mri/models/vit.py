"""Vision Transformer baselines (timm) behind the her2mri model API."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import timm
from torch import Tensor, nn

from her2mri.models.base import Her2Model
from her2mri.models.registry import register_model
from her2mri.models.weights import build_model

__all__ = ["ViTClassifier", "vit_base", "vit_small"]


class ViTClassifier(Her2Model):
    """Single-view timm ViT: input ``(B, in_chans, img_size, img_size)``, logits ``(B, num_classes)``.

    ``forward_features`` returns the normalised tokens ``(B, 1 + N, embed_dim)``; the embedding is the class
    token (timm ``global_pool="token"``), followed by dropout and a linear ``head``. The input size is fixed
    at construction (``img_size``; position embeddings are resized by timm when pretrained weights of
    another size are loaded).

    Args:
        variant: timm ViT name (``"vit_small_patch16_224"``).
        num_classes: number of output classes.
        pretrained: load timm ImageNet weights from the hub (network needed).
        in_chans: input channels.
        drop_rate: dropout before the classifier.
        img_size: input side in pixels (224; tests use 64).
        depth: number of transformer blocks (``None``: the variant's).
        embed_dim: token width (``None``: the variant's).
        num_heads: attention heads (``None``: the variant's).
        drop_path_rate: stochastic depth.
        **timm_kwargs: further ``timm.create_model`` arguments.
    """

    num_views = 1

    def __init__(
        self,
        variant: str = "vit_small_patch16_224",
        num_classes: int = 2,
        pretrained: bool = False,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        img_size: int = 224,
        depth: int | None = None,
        embed_dim: int | None = None,
        num_heads: int | None = None,
        drop_path_rate: float = 0.0,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        named = (("depth", depth), ("embed_dim", embed_dim), ("num_heads", num_heads))
        overrides = {k: v for k, v in named if v is not None}
        self.backbone = timm.create_model(
            variant,
            pretrained=pretrained,
            num_classes=0,
            in_chans=in_chans,
            img_size=img_size,
            drop_path_rate=drop_path_rate,
            **overrides,
            **timm_kwargs,
        )
        self.in_chans = in_chans
        self.img_size = img_size
        self._init_head(self.backbone.num_features, num_classes, drop_rate)

    def forward_features(self, x: Tensor) -> Tensor:
        """Tokens ``(B, num_prefix_tokens + N, embed_dim)`` after the final norm."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"x must have shape (B, {self.in_chans}, H, W) for a single-view model, got {tuple(x.shape)}"
            )
        return self.backbone.forward_features(x)

    def pool_features(self, features: Tensor) -> Tensor:
        """Class-token embedding ``(B, embed_dim)``."""
        return self.backbone.forward_head(features, pre_logits=True)

    def gradcam_target_layers(self) -> list[nn.Module]:
        """``norm1`` of the last block (the final class token depends on all its tokens)."""
        return [self.backbone.blocks[-1].norm1]

    def gradcam_reshape_transform(self) -> Callable[[Tensor], Tensor]:
        """Tokens ``(B, P + N, D)`` -> patch maps ``(B, D, h, w)`` (prefix tokens dropped)."""
        prefix = self.backbone.num_prefix_tokens
        grid_h, grid_w = self.backbone.patch_embed.grid_size

        def reshape(tokens: Tensor) -> Tensor:
            return tokens[:, prefix:].reshape(tokens.shape[0], grid_h, grid_w, -1).permute(0, 3, 1, 2)

        return reshape

    def remap_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A bare timm ViT state dict: prefix ``backbone.``; its ``head`` stays the classifier."""
        return self._prefix_foreign_keys(state_dict, "backbone.", {"head.": "head."})


@register_model
def vit_small(**kwargs: Any) -> ViTClassifier:
    """ViT-S/16 (timm ``vit_small_patch16_224``), single view."""
    return build_model(ViTClassifier, variant="vit_small_patch16_224", **kwargs)


@register_model
def vit_base(**kwargs: Any) -> ViTClassifier:
    """ViT-B/16 (timm ``vit_base_patch16_224``), single view."""
    return build_model(ViTClassifier, variant="vit_base_patch16_224", **kwargs)
