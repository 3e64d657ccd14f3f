"""Any timm image classifier behind the her2mri model API, and the backbones the seed papers compare.

:class:`TimmClassifier` wraps ``timm.create_model(variant, num_classes=0)`` (the backbone without its
classifier): her2mri adds dropout and a linear ``head``, and Grad-CAM uses the last feature stage timm reports
(``feature_info``). Registered names: ``resnet50``, ``resnet101``, ``densenet121``, ``efficientnet_b0``,
``vgg19`` (the backbones of seeds 001 and 002) and ``timm_classifier`` (any timm name through ``variant=``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import timm
from torch import Tensor, nn

from her2mri.models.base import Her2Model
from her2mri.models.registry import register_model
from her2mri.models.weights import build_model

__all__ = ["SEED_BACKBONES", "TimmClassifier", "timm_classifier"]

#: backbones compared by the seed papers (001: ResNet50/101, DenseNet121, VGG19; 002: EfficientNet-B0)
SEED_BACKBONES: tuple[str, ...] = ("resnet50", "resnet101", "densenet121", "efficientnet_b0", "vgg19")


class TimmClassifier(Her2Model):
    """Single-view timm classifier: input ``(B, in_chans, H, W)``, logits ``(B, num_classes)``.

    Args:
        variant: any ``timm.list_models()`` name (e.g. ``"densenet121"``).
        num_classes: number of output classes.
        pretrained: load timm ImageNet weights from the hub (network needed; offline pass ``weights_path``
            to the factory instead).
        in_chans: input channels (3 for the RGB-fused phases).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth, for the timm models that have it (ignored by the others).
        **timm_kwargs: further ``timm.create_model`` arguments.

    Example:
        >>> m = TimmClassifier("efficientnet_b0", num_classes=2)
        >>> m(torch.randn(1, 3, 32, 32)).shape  # doctest: +SKIP
        torch.Size([1, 2])
    """

    num_views = 1

    def __init__(
        self,
        variant: str = "resnet50",
        num_classes: int = 2,
        pretrained: bool = False,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        if not isinstance(variant, str) or not timm.is_model(variant):
            raise ValueError(f"variant={variant!r} is not a timm model name (see timm.list_models()).")
        kwargs = dict(timm_kwargs)
        if drop_path_rate:
            kwargs["drop_path_rate"] = drop_path_rate
        self.variant = variant
        self.backbone = timm.create_model(
            variant, pretrained=pretrained, num_classes=0, in_chans=in_chans, **kwargs
        )
        self.in_chans = in_chans
        # pre-logits width: VGG's ConvMlp gives 4096 features although num_features is 512
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self._init_head(width, num_classes, drop_rate)

    def forward_features(self, x: Tensor) -> Tensor:
        """Last-stage feature map ``(B, C, h, w)``."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"x must have shape (B, {self.in_chans}, H, W) for a single-view model, "
                f"got {tuple(x.shape)}: "
                "multi-view batches (B, 3, C, H, W) need a THDA model (data views adjacent|scales|phases)"
            )
        return self.backbone.forward_features(x)

    def pool_features(self, features: Tensor) -> Tensor:
        """Timm's own pooling (and pre-logits layers, e.g. VGG's) to ``(B, num_features)``."""
        return self.backbone.forward_head(features, pre_logits=True)

    def gradcam_target_layers(self) -> list[nn.Module]:
        """The last feature stage timm reports for this model."""
        info = getattr(self.backbone, "feature_info", None)
        if info:
            last = info[-1]["module"]
            return [self.backbone.get_submodule(last)]
        convs = [m for m in self.backbone.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1:]

    def remap_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A bare timm state dict of ``variant``: prefix ``backbone.``; its ImageNet classifier is dropped."""
        clf = self.backbone.pretrained_cfg.get("classifier", "fc") if self.backbone.pretrained_cfg else "fc"
        names = (clf,) if isinstance(clf, str) else tuple(clf)
        return self._prefix_foreign_keys(state_dict, "backbone.", {f"{n}.": "" for n in names})


def _factory(variant: str) -> Any:
    def make(**kwargs: Any) -> TimmClassifier:
        return build_model(TimmClassifier, variant=variant, **kwargs)

    make.__name__ = variant
    make.__qualname__ = variant
    make.__doc__ = f"timm {variant}, single view: ``(B, 3, H, W) -> (B, num_classes)``."
    return make


for _name in SEED_BACKBONES:
    register_model(_factory(_name))


@register_model
def timm_classifier(variant: str = "resnet50", **kwargs: Any) -> TimmClassifier:
    """Any timm model by name (``variant=...``), single view, behind the her2mri model API."""
    return build_model(TimmClassifier, variant=variant, **kwargs)
