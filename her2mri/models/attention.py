"""Channel and spatial attention blocks (CBAM-style) used by THDA-ResNet.

References:
    Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018 (the formulas below).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ChannelAttention", "DualAttention", "SpatialAttention"]


class ChannelAttention(nn.Module):
    """Channel attention: ``sigmoid(MLP(GAP(x)) + MLP(GMP(x)))``, one weight per channel.

    The MLP (shared by both poolings) is ``C -> C / reduction -> C`` with a ReLU in between.

    Args:
        channels: number of input channels ``C``.
        reduction: reduction ratio ``r`` of the hidden layer (16 in CBAM), at least 1.
        min_hidden: lower bound of the hidden width, so narrow stages keep a usable MLP.

    Example:
        >>> ca = ChannelAttention(128)
        >>> ca(torch.randn(2, 128, 8, 8)).shape
        torch.Size([2, 128, 1, 1])
    """

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels!r}")
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction!r}")
        hidden = max(channels // reduction, min(min_hidden, channels))
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Channel weights ``(B, C, 1, 1)`` in (0, 1)."""
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """Multi-scale spatial attention: ``sigmoid(fuse(conv_k([mean_c(x), max_c(x)]) for k in kernels))``.

    The channel-wise mean and max give a 2-channel map; each kernel size ``k`` has its own ``k x k``
    convolution (2 -> 1 channel, same padding). With several kernels the per-kernel logits are fused by a
    learned ``1 x 1`` convolution; with one kernel (``(7,)`` is CBAM) the logit goes straight to the sigmoid.

    Args:
        kernel_sizes: odd kernel sizes, e.g. ``(3, 7)`` (fine and coarse context).

    Example:
        >>> sa = SpatialAttention((3, 7))
        >>> sa(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, kernel_sizes: Sequence[int] = (3, 7)) -> None:
        super().__init__()
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be a non-empty list of odd sizes >= 1, got {kernel_sizes!r}")
        self.kernel_sizes = kernel_sizes
        self.convs = nn.ModuleList(nn.Conv2d(2, 1, kernel_size=k, padding=k // 2) for k in kernel_sizes)
        self.fuse = nn.Conv2d(len(kernel_sizes), 1, kernel_size=1) if len(kernel_sizes) > 1 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Spatial weights ``(B, 1, H, W)`` in (0, 1)."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        logits = torch.cat([conv(pooled) for conv in self.convs], dim=1)
        return torch.sigmoid(self.fuse(logits))


class DualAttention(nn.Module):
    """Channel attention followed by spatial attention (sequential, as in CBAM).

    ``y = x * ca(x)`` then ``out = y * sa(y)``. Either part can be switched off.

    Args:
        channels: number of input channels.
        reduction: channel-attention reduction ratio.
        spatial_kernels: kernel sizes of the spatial attention.
        use_channel: apply the channel attention.
        use_spatial: apply the spatial attention.

    Example:
        >>> att = DualAttention(64)
        >>> out, smap = att(torch.randn(2, 64, 8, 8))
        >>> out.shape, smap.shape
        (torch.Size([2, 64, 8, 8]), torch.Size([2, 1, 8, 8]))
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        spatial_kernels: Sequence[int] = (3, 7),
        use_channel: bool = True,
        use_spatial: bool = True,
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction) if use_channel else None
        self.spatial = SpatialAttention(spatial_kernels) if use_spatial else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Return the attended features and the spatial map ``(B, 1, H, W)`` (``None`` without one)."""
        if self.channel is not None:
            x = x * self.channel(x)
        smap = None
        if self.spatial is not None:
            smap = self.spatial(x)
            x = x * smap
        return x, smap
