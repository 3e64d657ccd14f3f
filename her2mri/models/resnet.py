"""Single-view ResNet baseline (timm) behind the her2mri model API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from her2mri.models.registry import register_model
from her2mri.models.timm_backbones import TimmClassifier
from her2mri.models.weights import build_model

__all__ = ["ResNetClassifier", "resnet34"]


class ResNetClassifier(TimmClassifier):
    """Single-view timm ResNet: input ``(B, in_chans, H, W)``, logits ``(B, num_classes)``.

    The generic :class:`~her2mri.models.timm_backbones.TimmClassifier` (timm's global average pooling,
    dropout ``head_drop`` and a linear ``head``) with the ResNet specifics: default ``resnet34``, Grad-CAM on
    the last ``layer4`` block, and torchvision/timm ``fc`` weights mapped to ``head``. ``forward_features``
    returns the ``layer4`` map ``(B, 512, H/32, W/32)``.

    Args:
        variant: timm ResNet name (``"resnet34"``).
        num_classes: number of output classes.
        pretrained: load timm ImageNet weights from the hub (network needed).
        in_chans: input channels (3 for the RGB-fused phases).
        drop_rate: dropout before the classifier (0 as in timm).
        drop_path_rate: stochastic depth of the residual blocks.
        **timm_kwargs: further ``timm.create_model`` arguments.
    """

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
        super().__init__(
            variant,
            num_classes=num_classes,
            pretrained=pretrained,
            in_chans=in_chans,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            **timm_kwargs,
        )

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
