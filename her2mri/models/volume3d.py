"""3-D baselines: MONAI DenseNet121 / ResNet with ``spatial_dims=3`` on the tumour box of the three phases.

Input: ``(B, 3, D, H, W)`` (channels = pre, early, late or the ``preprocess.channels`` maps; a fixed box of
``volume_depth`` slices centred on the tumour, cropped and resized in-plane like the 2-D slices), produced by
``preprocess.views: volume``. One volume per patient, so the patient probability is the volume's probability.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from her2mri.models.base import Her2Model
from her2mri.models.registry import register_model
from her2mri.models.weights import build_model

__all__ = ["VOLUME_ARCHS", "Volume3DClassifier", "densenet3d", "resnet3d"]

VOLUME_ARCHS: tuple[str, ...] = ("densenet121", "resnet10", "resnet18", "resnet34")


class Volume3DClassifier(Her2Model):
    """MONAI 3-D CNN (DenseNet121 or ResNet-10/18/34) behind the her2mri model API.

    The MONAI network is built without its classifier; her2mri adds global average pooling, dropout and a
    linear ``head``, as for the 2-D models.

    Args:
        arch: ``densenet121`` (default; MONAI ``DenseNet121``) or ``resnet10``/``resnet18``/``resnet34``
            (MONAI ``ResNet``).
        num_classes: number of output classes.
        pretrained: not available (no ImageNet weights in 3-D); must be false.
        in_chans: input channels (3 phases).
        drop_rate: dropout before the classifier.
        init_features: DenseNet121 stem width (64 in MONAI; smaller is faster on a CPU).
        base_width: ResNet width of the first stage; the four stages have ``base_width * (1, 2, 4, 8)``
            channels (64 = MONAI's ResNet, 14 M parameters for ResNet-10; 16 has 16x fewer parameters, which
            a few dozen training volumes can fit).

    DenseNet121 halves every axis five times (stem, pooling, three transitions): the box needs at least 32
    slices and 32 pixels (``preprocess.volume_depth >= 32``); the ResNets (stem, pooling, three strided
    stages) work from 8 slices up and are the default 3-D baseline (``model=resnet3d``).

    Example:
        >>> m = Volume3DClassifier("resnet10", num_classes=2)
        >>> m(torch.randn(1, 3, 8, 32, 32)).shape
        torch.Size([1, 2])
    """

    num_views = 1
    spatial_dims = 3

    def __init__(
        self,
        arch: str = "densenet121",
        num_classes: int = 2,
        pretrained: bool = False,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        init_features: int = 64,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if pretrained:
            raise ValueError(
                "pretrained=true: there are no ImageNet weights for the 3-D networks; set "
                "model.pretrained=false "
                "(or load your own with model.weights_path)."
            )
        if arch not in VOLUME_ARCHS:
            raise ValueError(f"arch={arch!r} is not valid. Valid values: {', '.join(VOLUME_ARCHS)}.")
        self.arch = arch
        self.in_chans = int(in_chans)
        if isinstance(base_width, bool) or int(base_width) < 1:
            raise ValueError(f"base_width={base_width!r} must be a positive integer.")
        if arch == "densenet121":
            from monai.networks.nets import DenseNet121

            net = DenseNet121(
                spatial_dims=3, in_channels=in_chans, out_channels=1, init_features=int(init_features)
            )
            self.trunk: nn.Module = net.features
            n_feat = int(net.class_layers.out.in_features)
        else:
            from monai.networks.nets import ResNet

            layers = {"resnet10": [1, 1, 1, 1], "resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}[arch]
            net = ResNet(
                block="basic",
                layers=layers,
                block_inplanes=[int(base_width) * k for k in (1, 2, 4, 8)],
                spatial_dims=3,
                n_input_channels=in_chans,
                num_classes=1,
                feed_forward=False,
            )
            self.trunk = nn.Sequential(
                net.conv1, net.bn1, net.act, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
            )
            n_feat = int(base_width) * 8
        self.pool = nn.AdaptiveAvgPool3d(1)
        self._init_head(n_feat, num_classes, drop_rate)

    def forward_features(self, x: Tensor) -> Tensor:
        """Last feature map ``(B, C, d, h, w)``."""
        if x.ndim != 5 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"x must have shape (B, {self.in_chans}, D, H, W) for a 3-D model, got {tuple(x.shape)}: "
                "set preprocess.views=volume (or auto)"
            )
        if self.arch == "densenet121" and min(x.shape[2:]) < 32:
            raise ValueError(
                f"x has spatial shape {tuple(x.shape[2:])}: the 3-D DenseNet121 needs at least 32 in every "
                "axis; "
                "set preprocess.volume_depth >= 32 and image_size >= 32, or use model=resnet3d."
            )
        return self.trunk(x)

    def pool_features(self, features: Tensor) -> Tensor:
        """Global average pooling to ``(B, num_features)`` (DenseNet's final norm + ReLU is in the trunk)."""
        if self.arch == "densenet121":
            features = torch.relu(features)
        return self.pool(features).flatten(1)

    def gradcam_target_layers(self) -> list[nn.Module]:
        """The last stage of the trunk."""
        return [list(self.trunk.children())[-1]]


@register_model
def densenet3d(**kwargs: Any) -> Volume3DClassifier:
    """MONAI DenseNet121, ``spatial_dims=3``: ``(B, 3, D, H, W) -> (B, num_classes)``."""
    return build_model(Volume3DClassifier, arch=kwargs.pop("arch", "densenet121"), **kwargs)


@register_model
def resnet3d(**kwargs: Any) -> Volume3DClassifier:
    """MONAI ResNet (``arch`` resnet10 default, resnet18, resnet34), ``spatial_dims=3``."""
    return build_model(Volume3DClassifier, arch=kwargs.pop("arch", "resnet10"), **kwargs)
