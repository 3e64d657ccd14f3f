"""THDA-ResNet: Triple-Head Dual-Attention ResNet (Fridman & Goldstein, arXiv 2510.13897).

The authors' code is not public; what the paper fixes (three heads, weight-shared ResNet34, dual attention
with multi-scale spatial attention, about 21.3 M parameters) is implemented as described, and every other
choice is a constructor argument documented in :class:`THDAResNet` and ``docs/models.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import timm
import torch
from torch import Tensor, nn

from her2mri.models.attention import DualAttention
from her2mri.models.base import Her2Model
from her2mri.models.registry import register_model
from her2mri.models.weights import build_model
from her2mri.options import check_choice

__all__ = ["FUSION_MODES", "HeadFusion", "THDAResNet", "thda_resnet18", "thda_resnet34"]

FUSION_MODES = ("attention", "concat", "mean")
ATTENTION_PLACEMENTS = ("side", "inline")


class HeadFusion(nn.Module):
    """Fuse the per-head feature vectors ``(B, V, D)`` into one vector per sample.

    Modes:
        ``attention``: learned softmax weights over the heads, ``w = softmax_v(score(h_v))``, output
        ``sum_v w_v h_v`` of size ``D``; ``score`` is linear (``hidden=0``) or ``Linear-tanh-Linear``.
        ``concat``: ``[h_1, ..., h_V]`` of size ``V * D``.
        ``mean``: ``mean_v h_v`` of size ``D`` (no parameters).

    Args:
        mode: one of ``attention``, ``concat``, ``mean``.
        in_features: per-head feature size ``D``.
        num_views: number of heads ``V``.
        hidden: hidden width of the attention score MLP; 0 for a linear score.
    """

    def __init__(self, mode: str, in_features: int, num_views: int, hidden: int = 0) -> None:
        super().__init__()
        self.mode = check_choice("fusion", mode, FUSION_MODES)
        if hidden < 0:
            raise ValueError(f"fusion_hidden must be >= 0, got {hidden!r}")
        self.score: nn.Module | None = None
        if self.mode == "attention":
            self.score = (
                nn.Linear(in_features, 1)
                if hidden == 0
                else nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))
            )
        self.out_features = in_features * num_views if self.mode == "concat" else in_features

    def weights(self, heads: Tensor) -> Tensor | None:
        """Weights ``(B, V)`` given to each head (uniform for ``mean``, ``None`` for ``concat``)."""
        if self.score is not None:
            return torch.softmax(self.score(heads).squeeze(-1), dim=1)
        if self.mode == "mean":
            return heads.new_full(heads.shape[:2], 1.0 / heads.shape[1])
        return None

    def forward(self, heads: Tensor) -> Tensor:
        """Fused features ``(B, out_features)``."""
        if self.mode == "concat":
            return heads.flatten(1)
        weights = self.weights(heads)
        return (weights.unsqueeze(-1) * heads).sum(dim=1)


class THDAResNet(Her2Model):
    """Triple-Head Dual-Attention ResNet.

    Input ``(B, V, C, H, W)`` with ``V = 3`` views (the data module's ``views: adjacent`` or ``scales``), each
    view an RGB-fused image (R = pre, G = early, B = late contrast). The channel-stacked form
    ``(B, V * C, H, W)`` is accepted too (for tools such as pytorch-grad-cam that read 5-D input as volumes).

    Architecture (choices the paper does not fix are marked *option*):

    1. **One shared backbone**: a timm ResNet (``features_only=True``, ``out_indices`` = stages) runs on the
       ``B * V`` views reshaped to ``(B * V, C, H, W)``: the three heads share every backbone weight by
       construction (and BatchNorm statistics are computed over all views of the batch).
    2. **Dual attention at several scales** (*option* ``out_indices``, default layer2/3/4): on each returned
       stage, channel attention (GAP and GMP -> shared MLP with reduction ``reduction`` -> sigmoid) then
       multi-scale spatial attention (channel mean and max -> one ``k x k`` conv per ``k`` in
       ``spatial_kernels`` -> learned 1x1 fusion -> sigmoid). *Option* ``attention_placement``: ``side``
       (default; the attended map feeds the pooling, not the next stage, so ImageNet features are not
       disturbed) or ``inline`` (the attended map replaces the stage output and feeds the next stage, as in
       CBAM inserted between stages).
       *Option* ``share_attention`` (default true, like the backbone): one set of attention modules for all
       heads, or one set per head.
    3. **Multi-scale pooling**: global average pooling of each attended stage, concatenated into the head's
       feature vector ``D = sum(stage channels)`` (896 for layer2/3/4 of ResNet34). ``out_indices=(4,)``
       gives the single-scale variant (attention and pooling on layer4 only).
    4. **Head fusion** (*option* ``fusion``): ``attention`` (default; learned softmax weights over the heads
       from the head features), ``concat`` or ``mean``.
    5. Dropout (``drop_rate``, default 0.5) and a linear classifier ``head``.

    Default parameter count (ResNet34, 2 classes): 21,331,686 (ResNet34 trunk 21,284,672 + attention 44,323
    + fusion 897 + classifier 1,794 -- the paper reports about 21.3 M).

    Args:
        backbone: timm ResNet-family name (``"resnet34"`` as in the paper).
        num_classes: number of output classes.
        pretrained: load timm ImageNet weights into the backbone from the hub (network needed); offline,
            pass a ResNet34 state dict as ``weights_path`` instead.
        in_chans: channels per view.
        num_views: number of views / heads ``V`` (3 in the paper).
        out_indices: backbone stages with attention and pooling (1..4 for ResNets).
        reduction: channel-attention reduction ratio ``r``.
        spatial_kernels: kernel sizes of the multi-scale spatial attention (``(7,)`` is plain CBAM).
        use_channel_attention: enable channel attention (ablation switch).
        use_spatial_attention: enable spatial attention (ablation switch).
        share_attention: one set of attention modules for all heads (true) or one per head (false).
        attention_placement: ``side`` (attention feeds the pooling only) or ``inline`` (the attended
            stage output also feeds the next backbone stage). Same parameters either way.
        fusion: ``attention``, ``concat`` or ``mean``.
        fusion_hidden: hidden width of the attention-fusion score; 0 = linear score.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth inside the backbone.
        **timm_kwargs: further ``timm.create_model`` arguments for the backbone.

    Example:
        >>> model = THDAResNet(num_classes=2)
        >>> model(torch.randn(2, 3, 3, 64, 64)).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        backbone: str = "resnet34",
        num_classes: int = 2,
        pretrained: bool = False,
        in_chans: int = 3,
        num_views: int = 3,
        out_indices: Sequence[int] = (2, 3, 4),
        reduction: int = 16,
        spatial_kernels: Sequence[int] = (3, 7),
        use_channel_attention: bool = True,
        use_spatial_attention: bool = True,
        share_attention: bool = True,
        attention_placement: str = "side",
        fusion: str = "attention",
        fusion_hidden: int = 0,
        drop_rate: float = 0.5,
        drop_path_rate: float = 0.0,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 1:
            raise ValueError(f"num_views must be an integer >= 1, got {num_views!r}")
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or len(set(out_indices)) != len(out_indices) or min(out_indices) < 1:
            raise ValueError(f"out_indices must be distinct stage numbers >= 1, got {out_indices!r}")
        if attention_placement not in ATTENTION_PLACEMENTS:
            raise ValueError(
                f"attention_placement={attention_placement!r} is not valid. "
                f"Valid values: {', '.join(ATTENTION_PLACEMENTS)}."
            )
        self.attention_placement = attention_placement
        self.backbone_name = backbone
        self.in_chans = in_chans
        self.num_views = num_views
        self.out_indices = out_indices
        self.share_attention = bool(share_attention)
        self.backbone = timm.create_model(
            backbone,
            pretrained=pretrained,
            features_only=True,
            out_indices=out_indices,
            in_chans=in_chans,
            drop_path_rate=drop_path_rate,
            **timm_kwargs,
        )
        self.stage_names: list[str] = list(self.backbone.feature_info.module_name())
        self._stage_set = frozenset(self.stage_names)
        missing = self._stage_set - set(self.backbone.keys())
        if missing:  # the forward pass walks the backbone's modules by name
            raise ValueError(f"backbone={backbone!r}: stages {sorted(missing)} are not top-level modules")
        channels = self.backbone.feature_info.channels()
        n_sets = 1 if self.share_attention else num_views
        self.attention = nn.ModuleList(
            nn.ModuleDict(
                {
                    name: DualAttention(
                        ch, reduction, spatial_kernels, use_channel_attention, use_spatial_attention
                    )
                    for name, ch in zip(self.stage_names, channels, strict=True)
                }
            )
            for _ in range(n_sets)
        )
        self.head_features = int(sum(channels))
        self.fusion = HeadFusion(fusion, self.head_features, num_views, fusion_hidden)
        self._init_head(self.fusion.out_features, num_classes, drop_rate)

    # -- input ---------------------------------------------------------------------------------------------
    def _check_views(self, x: Tensor) -> Tensor:
        """Validate ``x`` and return it as ``(B, V, C, H, W)``."""
        v, c = self.num_views, self.in_chans
        if x.ndim == 4 and x.shape[1] == v * c:
            x = x.unflatten(1, (v, c))
        if x.ndim != 5 or x.shape[1] != v or x.shape[2] != c:
            raise ValueError(
                f"x must have shape (B, {v}, {c}, H, W) (views, channels) for THDA-ResNet, "
                f"got {tuple(x.shape)}: "
                "single-view batches (B, C, H, W) need a single-view model (or data views adjacent|scales)"
            )
        return x

    def _run(self, x: Tensor, return_maps: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-head features ``(B, V, D)`` and, on request, spatial maps ``(B, V, h, w)`` per stage."""
        x = self._check_views(x)
        b, v = x.shape[:2]
        pooled: list[Tensor] = []
        maps: dict[str, Tensor] = {}
        for name, att, smap in self._attended_stages(x.flatten(0, 1), b, v):
            pooled.append(att.mean(dim=(2, 3)))
            if return_maps and smap is not None:
                maps[name] = smap.reshape(b, v, *smap.shape[-2:])
        return torch.cat(pooled, dim=1).unflatten(0, (b, v)), maps

    def _attended_stages(self, h: Tensor, b: int, v: int) -> Iterator[tuple[str, Tensor, Tensor | None]]:
        """``(stage name, attended map, spatial map)`` of each attended stage, in order."""
        if self.attention_placement == "side":
            # timm's own forward (grad checkpointing included), then attention on the returned stages
            for name, feat in zip(self.stage_names, self.backbone(h), strict=True):
                yield (name, *self._attend(name, feat, b, v))
            return
        # inline: walk timm's FeatureListNet modules in order (it stops after the last returned stage)
        for module_name, module in self.backbone.items():
            h = module(h)
            if module_name in self._stage_set:
                att, smap = self._attend(module_name, h, b, v)
                h = att
                yield module_name, att, smap

    def _attend(self, name: str, feat: Tensor, b: int, v: int) -> tuple[Tensor, Tensor | None]:
        """Dual attention of one stage ``(B * V, C, h, w)``: the attended map and the spatial map."""
        if self.share_attention:
            return self.attention[0][name](feat)
        per_view = feat.unflatten(0, (b, v))
        outs = [self.attention[i][name](per_view[:, i]) for i in range(v)]
        att = torch.stack([o[0] for o in outs], dim=1).flatten(0, 1)
        smap = None if outs[0][1] is None else torch.stack([o[1] for o in outs], dim=1).flatten(0, 1)
        return att, smap

    # -- API -----------------------------------------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Tensor:
        """Per-head feature vectors ``(B, V, D)`` (attended, multi-scale pooled; before fusion)."""
        return self._run(x)[0]

    def pool_features(self, features: Tensor) -> Tensor:
        """Fuse the heads: ``(B, V, D) -> (B, num_features)``."""
        return self.fusion(features)

    def attention_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Spatial attention maps ``{stage: (B, V, h, w)}`` (values in (0, 1)), computed without gradients.

        Call ``model.eval()`` first for deterministic maps. Empty when spatial attention is disabled.
        Computed under ``torch.inference_mode``.
        """
        with torch.inference_mode():
            return self._run(x, return_maps=True)[1]

    def fusion_weights(self, x: Tensor) -> Tensor | None:
        """Weights ``(B, V)`` of the heads in the fusion (``None`` for ``fusion="concat"``); no autograd."""
        with torch.inference_mode():
            return self.fusion.weights(self._run(x)[0])

    def gradcam_target_layers(self) -> list[nn.Module]:
        """Last residual block of the last attended stage of the shared backbone.

        Its activations have batch size ``B * V`` (views fastest), so Grad-CAM returns ``B * V`` maps:
        reshape them to ``(B, V, H, W)``.
        """
        return [getattr(self.backbone, self.stage_names[-1])[-1]]

    def remap_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A bare timm/torchvision ResNet state dict goes into the shared backbone; its ``fc`` is dropped."""
        return self._prefix_foreign_keys(state_dict, "backbone.", {"fc.": ""})


@register_model
def thda_resnet34(**kwargs: Any) -> THDAResNet:
    """THDA-ResNet on a shared ResNet34 (the paper's model): ``(B, 3, 3, H, W) -> (B, num_classes)``."""
    return build_model(THDAResNet, backbone="resnet34", **kwargs)


@register_model
def thda_resnet18(**kwargs: Any) -> THDAResNet:
    """THDA-ResNet on a shared ResNet18 (about half the compute; for quick CPU runs)."""
    return build_model(THDAResNet, backbone="resnet18", **kwargs)


@register_model
def thda_resnet50(**kwargs: Any) -> THDAResNet:
    """THDA-ResNet on a shared ResNet50 (bottleneck blocks; head features 512 + 1024 + 2048)."""
    return build_model(THDAResNet, backbone="resnet50", **kwargs)


@register_model
def thda_resnet(backbone: str = "resnet34", **kwargs: Any) -> THDAResNet:
    """THDA-ResNet on any timm ResNet-family backbone.

    ``backbone`` e.g. ``resnet101``, ``resnext50_32x4d``, ``seresnet50`` or ``resnet26d``: the backbone must
    expose ``layer1``..``layer4`` as top-level stages.
    """
    import timm

    if not isinstance(backbone, str) or not timm.is_model(backbone):
        raise ValueError(
            f"backbone={backbone!r} is not a timm model name (see timm.list_models('*resnet*'))."
        )
    return build_model(THDAResNet, backbone=backbone, **kwargs)
