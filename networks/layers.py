"""Building blocks shared by the learned DeepV2D modules: 2D/3D residual blocks, hourglasses and
the 2D feature encoder.

Normalisation: GroupNorm everywhere (groups of up to 8 channels' worth, see :func:`group_norm`).
BatchNorm's statistics depend on the batch, and SLAM runs with batch size 1 (one keyframe, a few
neighbours) at inference while training uses small batches; GroupNorm normalises each sample on
its own, so training and inference compute the same function, and it needs no running averages
to go stale. InstanceNorm would do the same but discards per-image contrast across channels,
which matching wants to keep; GroupNorm sits between the two.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from slam.errors import V2DError

#: ImageNet mean and standard deviation (RGB), used to normalise [0, 1] images inside the encoder.
_IMAGE_MEAN = (0.485, 0.456, 0.406)
_IMAGE_STD = (0.229, 0.224, 0.225)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with groups of about 8 channels (at least one group, dividing ``channels``)."""
    groups = max(1, channels // 8)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


class ResidualBlock2d(nn.Module):
    """Two 3x3 conv + GroupNorm + ReLU with a skip connection (1x1 conv when the shape changes).
    (B, in_ch, H, W) -> (B, out_ch, ceil(H / stride), ceil(W / stride))."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm1 = group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_ch)
        self.skip = None
        if stride != 1 or in_ch != out_ch:
            self.skip = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), group_norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (zero padding) that always takes oneDNN's kernel on CPU for float32.

    PyTorch's CPU dispatcher sends small batch-1 3D convolutions (the 3D hourglasses after view
    pooling) to a naive im2col kernel that measured 5-10x slower than oneDNN's on this machine;
    calling the oneDNN op directly gives the same values and gradients. Other devices and dtypes
    use the ordinary path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available():
            return torch.ops.aten.mkldnn_convolution(
                x, self.weight, self.bias, list(self.padding), list(self.stride), list(self.dilation), self.groups
            )
        return super().forward(x)


class ResidualBlock3d(nn.Module):
    """3D twin of :class:`ResidualBlock2d`: (B, in_ch, D, H, W) -> (B, out_ch, D/s, H/s, W/s)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = Conv3d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm1 = group_norm(out_ch)
        self.conv2 = Conv3d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_ch)
        self.skip = None
        if stride != 1 or in_ch != out_ch:
            self.skip = nn.Sequential(Conv3d(in_ch, out_ch, 1, stride=stride, bias=False), group_norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class _Hourglass(nn.Module):
    """Encoder-decoder with skips over three scales (full, 1/2, 1/4) and a residual output.

    Down path: residual block at stride 2 (channels grow by ``channels // 2`` per level), twice;
    up path: nearest upsampling + residual block, each added to the same-scale skip. The input
    size must be divisible by 4 along every spatial axis (checked)."""

    def __init__(self, channels: int, block: type[nn.Module]):
        super().__init__()
        mid, low = channels + channels // 2, 2 * channels
        self.skip0 = block(channels, channels)
        self.down1 = block(channels, mid, stride=2)
        self.skip1 = block(mid, mid)
        self.down2 = block(mid, low, stride=2)
        self.bottom = block(low, low)
        self.up2 = block(low, mid)
        self.up1 = block(mid, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        if any(size % 4 for size in spatial):
            raise ValueError(f"hourglass input spatial size {tuple(spatial)} must be divisible by 4")
        skip0 = self.skip0(x)
        low1 = self.down1(x)
        skip1 = self.skip1(low1)
        low2 = self.bottom(self.down2(low1))
        up1 = skip1 + F.interpolate(self.up2(low2), size=low1.shape[2:], mode="nearest")
        return skip0 + F.interpolate(self.up1(up1), size=spatial, mode="nearest")


class Hourglass2d(_Hourglass):
    """2D hourglass: (B, channels, H, W) -> same shape; H and W divisible by 4."""

    def __init__(self, channels: int):
        super().__init__(channels, ResidualBlock2d)


class Hourglass3d(_Hourglass):
    """3D hourglass: (B, channels, D, H, W) -> same shape; D, H and W divisible by 4."""

    def __init__(self, channels: int):
        super().__init__(channels, ResidualBlock3d)


class FeatureEncoder(nn.Module):
    """DeepV2D's 2D encoder: images -> features at 1/4 resolution.

    Stride-2 7x7 conv, a residual block, a residual block at stride 2 (1/4 overall), another
    residual block, ``num_hourglasses`` stacked 2D hourglasses, and a 1x1 projection to
    ``out_channels``.

    Input (B, 3, H, W) float RGB in [0, 1] (normalised inside with ImageNet statistics); output
    (B, out_channels, H/4, W/4). H and W must be multiples of :attr:`SIZE_MULTIPLE` (16: the
    stride 4 of the encoder times the 1/4 of the hourglass' lowest level), else ``V2DError``.
    """

    SIZE_MULTIPLE = 16
    STRIDE = 4
    # registered buffers (see __init__), declared for the type checker
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, out_channels: int, base_channels: int, num_hourglasses: int = 2):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, base_channels, 7, stride=2, padding=3, bias=False),
            group_norm(base_channels),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(
            ResidualBlock2d(base_channels, base_channels),
            ResidualBlock2d(base_channels, base_channels, stride=2),
            ResidualBlock2d(base_channels, base_channels),
        )
        self.hourglasses = nn.Sequential(*[Hourglass2d(base_channels) for _ in range(num_hourglasses)])
        self.project = nn.Conv2d(base_channels, out_channels, 1)
        self.register_buffer("mean", torch.tensor(_IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise V2DError(f"FeatureEncoder expects (B, 3, H, W) images, got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if height % self.SIZE_MULTIPLE or width % self.SIZE_MULTIPLE:
            raise V2DError(
                f"FeatureEncoder needs image height and width that are multiples of "
                f"{self.SIZE_MULTIPLE}, got {height}x{width}"
            )
        x = (images - self.mean) / self.std
        x = self.blocks(self.stem(x))
        return self.project(self.hourglasses(x))
