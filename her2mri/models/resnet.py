"""Single-view ResNet baseline (timm) behind the her2mri model API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import timm
from torch import Tensor, nn

from her2mri.models.base import Her2Model
from her2mri.models.registry import register_model
from her2mri.models.weights import build_model

__all__ = ["ResNetClassifier", "resnet34"]


class ResNetClassifier(Her2Model):
    """Single-view timm ResNet: input ``(B, in_chans, H, W)``, logits ``(B, num_classes)``.

    The timm model is built without its classifier (``backbone``); her2mri adds global average pooling,
    dropout (``head_drop``) and a linear ``head``. ``forward_features`` returns the ``layer4`` map
    ``(B, 512, H/32, W/32)``.

    Args:
        variant: timm ResNet name (``"resnet34"``).
        num_classes: number of output classes.
        pretrained: load timm ImageNet weights from the hub (network needed).
        in_chans: input channels (3 for the RGB-fused phases).
        drop_rate: dropout before the classifier (0 as in timm).
        drop_path_rate: stochastic depth of the residual blocks.
        **timm_kwargs: further ``timm.create_model`` arguments.
    """

    num_views = 1

    def __init__(
        self,
        variant: str = "resnet34",
        num_classes: int = 2,
        pretrained: bool = False,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        self.backbone = timm.create_model(
            variant,
            pretrained=pretrained,
            num_classes=0,
            in_chans=in_chans,
            drop_path_rate=drop_path_rate,
            **timm_kwargs,
        )
        self.in_chans = in_chans
        self._init_head(self.backbone.num_features, num_classes, drop_rate)

    def forward_features(self, x: Tensor) -> Tensor:
        """Last-stage feature map ``(B, C, h, w)``."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"x must have shape (B, {self.in_chans}, H, W) for a single-view model, "
                f"got {tuple(x.shape)}: "
                "multi-view batches (B, 3, C, H, W) need thda_resnet34 (data views adjacent|scales)"
            )
        return self.backbone.forward_features(x)

    def pool_features(self, features: Tensor) -> Tensor:
        """Global average pooling to ``(B, num_features)``."""
        return self.backbone.forward_head(features, pre_logits=True)

    def gradcam_target_layers(self) -> list[nn.Module]:
        """The last residual block of ``layer4``."""
        return [self.backbone.layer4[-1]]

    def remap_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A bare timm/torchvision ResNet state dict: prefix ``backbone.``, its ``fc`` becomes ``head``."""
        return self._prefix_foreign_keys(state_dict, "backbone.", {"fc.": "head."})


@register_model
def resnet34(**kwargs: Any) -> ResNetClassifier:
    """ResNet34 (timm), single view: ``(B, 3, H, W) -> (B, num_classes)``."""
    return build_model(ResNetClassifier, variant="resnet34", **kwargs)
