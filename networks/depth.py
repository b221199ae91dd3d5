"""DeepV2D's learned depth module: 2D encoder, cost-volume backprojection over depth bins, 3D
matching network with view pooling, soft-argmax over bins.

Pipeline for a keyframe (frame 0) and its N-1 neighbours with known poses:

1. ``encode``: images resized to ``config.input_size`` -> :class:`FeatureEncoder` features at
   1/4 of that size.
2. Cost volume: for each neighbour and each of D depth bins, the neighbour's features are
   sampled at the reprojection of every keyframe pixel (:func:`networks.cost_volume.plane_sweep`)
   and concatenated with the keyframe's features (2C channels).
3. 3D matching network: a 1x1x1 conv to ``volume_channels``, plus (where ``config.correlation``)
   a per-bin cosine-similarity channel between the keyframe's and the warped neighbour's features
   mapped to ``volume_channels`` by a 1x1x1 conv, then a residual pair of 3x3x3 convs, a
   mean over neighbours (view pooling), then ``volume_hourglasses`` stacked 3D hourglasses, each
   followed by a head that gives one logit per bin and pixel.
4. Per head: softmax over bins, soft-argmax (expected depth), bilinear upsampling to the
   caller's image size. Confidence: ``1 - H(p) / log(D)`` of the last head's distribution
   (:func:`networks.cost_volume.entropy_confidence`), upsampled the same way.

The first 1x1x1 conv on the concatenation ``[keyframe; warped neighbour]`` is computed as
``W_k * keyframe + sample(W_n * neighbour)``: the conv and bilinear sampling are both linear per
pixel (and zero padding maps to zero), so this is the same function, but the keyframe term is
computed once instead of M*D times and only ``volume_channels`` are sampled.

Normalisation is GroupNorm (see :mod:`networks.layers`): batch size 1 in SLAM.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from networks.cost_volume import (
    BIN_SPACINGS,
    depth_bins,
    entropy_confidence,
    expected_depth,
    neighbour_transforms,
    plane_sweep,
)
from networks.flow_geometry import feature_intrinsics, resize_images
from networks.interfaces import DepthEstimate
from networks.layers import (
    Conv3d,
    FeatureEncoder,
    Hourglass3d,
    ResidualBlock3d,
    group_norm,
)
from slam.errors import V2DError
from slam.geometry.lie import SE3


@dataclass
class DepthNetConfig:
    """Sizes of the learned depth module (stored beside its weights).

    - ``feature_channels``: channels of the encoder's output (32 in the paper).
    - ``base_channels``: width of the encoder's layers and 2D hourglasses (64 in the paper).
    - ``encoder_hourglasses``: stacked 2D hourglasses in the encoder (2 in the paper).
    - ``volume_channels``: width of the 3D matching network (32 in the paper).
    - ``volume_hourglasses``: stacked 3D hourglasses, one depth head each (2 in the paper).
    - ``head_layers``: 3x3x3 convs in each head before the 1x1x1 logit conv (2 in the paper).
    - ``depth_bins``: depth hypotheses D (32 in the paper); a multiple of 4 (the 3D hourglass
      halves the bin axis twice).
    - ``min_depth``, ``max_depth``: metres, range of the bins (0.2-10 m indoors as the paper;
      use :meth:`with_depth_range`, e.g. 1-80 m, for KITTI-like driving).
    - ``bin_spacing``: "linear" (the paper) or "inverse" (even steps in inverse depth).
    - ``input_size``: (H, W) images are resized to; multiples of 16.
    - ``correlation``: add a per-bin cosine-similarity channel between keyframe and warped
      neighbour features to the 3D network's input (a matching cost as in MVSNet or DPSNet; not
      in the paper, whose network has to learn matching from the concatenation alone). Off for
      the paper's size; on for lite, whose narrow 3D network did not learn to read the
      concatenation in CPU-scale training (weights stored without this field load with it off).
    """

    feature_channels: int = 32
    base_channels: int = 64
    encoder_hourglasses: int = 2
    volume_channels: int = 32
    volume_hourglasses: int = 2
    head_layers: int = 2
    depth_bins: int = 32
    min_depth: float = 0.2
    max_depth: float = 10.0
    bin_spacing: str = "linear"
    input_size: tuple[int, int] = (480, 640)
    correlation: bool = False

    def __post_init__(self) -> None:
        self.input_size = cast("tuple[int, int]", tuple(int(s) for s in self.input_size))  # length checked below
        multiple = FeatureEncoder.SIZE_MULTIPLE
        if len(self.input_size) != 2 or any(s <= 0 or s % multiple for s in self.input_size):
            raise ValueError(
                f"depth network input size must be two positive multiples of {multiple}, got {self.input_size}"
            )
        if min(self.feature_channels, self.base_channels, self.volume_channels, self.volume_hourglasses) < 1:
            raise ValueError("depth network channel and hourglass counts must be positive")
        if self.encoder_hourglasses < 0 or self.head_layers < 0:
            raise ValueError("depth network layer counts must not be negative")
        if self.depth_bins < 4 or self.depth_bins % 4:
            raise ValueError(f"depth bins must be a positive multiple of 4, got {self.depth_bins}")
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {self.min_depth} and {self.max_depth}")
        if self.bin_spacing not in BIN_SPACINGS:
            raise ValueError(f"unknown bin spacing {self.bin_spacing!r}: use one of {', '.join(BIN_SPACINGS)}")

    @classmethod
    def paper(cls) -> DepthNetConfig:
        """The paper's size (NYU setting): 480 x 640 input (120 x 160 features), a 64-wide
        encoder with two hourglasses giving 32 channels, 32 linear bins over 0.2-10 m, a 32-wide
        3D network with two hourglasses. Sized for a GPU."""
        return cls()

    @classmethod
    def lite(cls) -> DepthNetConfig:
        """Real time on two CPU cores (a depth update for a keyframe and 4 neighbours from
        480 x 640 images, features included: 95 ms measured against the 250 ms budget): 192 x 256
        input (48 x 64 features), a 16-wide encoder with one hourglass giving 16 channels, 16
        bins, an 8-wide 3D network with two hourglasses and one-conv heads, and the correlation
        channel. Measured
        alternatives: 32 bins 141 ms, a 16-wide 3D network 128 ms, both with two-conv heads
        259 ms."""
        return cls(
            feature_channels=16,
            base_channels=16,
            encoder_hourglasses=1,
            volume_channels=8,
            volume_hourglasses=2,
            head_layers=1,
            depth_bins=16,
            input_size=(192, 256),
            correlation=True,
        )

    def with_depth_range(self, min_depth: float, max_depth: float) -> DepthNetConfig:
        """A copy with bins over ``[min_depth, max_depth]`` metres (e.g. 1-80 for driving)."""
        return replace(self, min_depth=min_depth, max_depth=max_depth)


@dataclass
class LearnedDepthEstimate(DepthEstimate):
    """:class:`DepthEstimate` plus what a loss on the bin distributions may want:
    ``head_logits``, one (B, D, h, w) tensor per head at feature resolution, and ``bins`` (D,)
    metres."""

    head_logits: list[torch.Tensor] = field(default_factory=list)
    bins: torch.Tensor | None = None


def _depth_head(channels: int, layers: int) -> nn.Sequential:
    """``layers`` 3x3x3 conv + GroupNorm + ReLU, then a 1x1x1 conv to one logit per voxel."""
    body = []
    for _ in range(layers):
        body += [Conv3d(channels, channels, 3, padding=1, bias=False), group_norm(channels), nn.ReLU(inplace=True)]
    # no bias: a constant added to every bin would not change the softmax
    return nn.Sequential(*body, Conv3d(channels, 1, 1, bias=False))


class LearnedDepthModule(nn.Module):
    """:class:`networks.interfaces.DepthModule` with learned weights (DeepV2D's depth network)."""

    stride = FeatureEncoder.STRIDE
    bins: torch.Tensor  # a registered buffer (see __init__), declared for the type checker

    def __init__(self, config: DepthNetConfig | None = None):
        super().__init__()
        self.config = config or DepthNetConfig.lite()
        c = self.config
        self.encoder = FeatureEncoder(c.feature_channels, c.base_channels, num_hourglasses=c.encoder_hourglasses)
        # the 1x1x1 conv over [keyframe; warped neighbour], split by input half (see module docstring)
        self.project_keyframe = nn.Conv2d(c.feature_channels, c.volume_channels, 1)
        self.project_neighbour = nn.Conv2d(c.feature_channels, c.volume_channels, 1, bias=False)
        self.project_correlation = Conv3d(1, c.volume_channels, 1, bias=False) if c.correlation else None
        self.match = ResidualBlock3d(c.volume_channels, c.volume_channels)
        self.hourglasses = nn.ModuleList([Hourglass3d(c.volume_channels) for _ in range(c.volume_hourglasses)])
        self.heads = nn.ModuleList([_depth_head(c.volume_channels, c.head_layers) for _ in range(c.volume_hourglasses)])
        bins = depth_bins(c.min_depth, c.max_depth, c.depth_bins, c.bin_spacing)
        self.register_buffer("bins", bins, persistent=False)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, H, W) RGB in [0, 1] -> (B, N, C, h, w) features, (h, w) = input_size / 4."""
        batch, frames = images.shape[:2]
        small = resize_images(images, self.config.input_size)
        features = self.encoder(small.reshape(batch * frames, *small.shape[2:]))
        return features.view(batch, frames, *features.shape[1:])

    def depth(
        self, features: torch.Tensor, poses: SE3, intrinsics: torch.Tensor, image_size: tuple[int, int]
    ) -> LearnedDepthEstimate:
        """Keyframe depth (B, H, W) metres at ``image_size`` from (B, N, C, h, w) features of the
        keyframe (index 0) and N-1 >= 1 neighbours, world-to-camera ``poses`` SE3 (B, N) and the
        full-resolution (B, 4) ``intrinsics``. Differentiable with respect to the features,
        poses and weights. ``head_depths`` holds one estimate per 3D hourglass head, the last
        equal to ``depth``."""
        batch, frames, channels, height, width = features.shape
        if frames < 2:
            raise V2DError(f"the depth module needs the keyframe and at least one neighbour, got {frames} frame(s)")
        neighbours = frames - 1
        K = feature_intrinsics(intrinsics, image_size, self.config.input_size, self.stride)
        keyframe = self.project_keyframe(features[:, 0])
        neighbour_features = features[:, 1:].reshape(batch * neighbours, channels, height, width)
        projected = self.project_neighbour(neighbour_features)
        if self.project_correlation is not None:  # sample the unit features alongside, in one sweep
            projected = torch.cat([projected, F.normalize(neighbour_features, dim=1)], dim=1)
        projected = projected.view(batch, neighbours, *projected.shape[1:])
        warped, _ = plane_sweep(projected, neighbour_transforms(poses), K, self.bins)
        volume = warped[:, :, : self.config.volume_channels] + keyframe[:, None, :, None]
        if self.project_correlation is not None:
            unit_keyframe = F.normalize(features[:, 0], dim=1)[:, None, :, None]  # (B, 1, C, 1, h, w)
            cosine = (warped[:, :, self.config.volume_channels :] * unit_keyframe).sum(dim=2, keepdim=True)
            volume = volume + self.project_correlation(cosine.flatten(0, 1)).unflatten(0, (batch, neighbours))
        volume = self.match(volume.flatten(0, 1)).unflatten(0, (batch, neighbours)).mean(dim=1)

        head_logits, head_depths = [], []
        for hourglass, head in zip(self.hourglasses, self.heads):
            volume = hourglass(volume)
            logits = head(volume).squeeze(1)
            depth, prob = expected_depth(logits, self.bins)
            head_logits.append(logits)
            head_depths.append(_upsample(depth, image_size))
        confidence = _upsample(entropy_confidence(prob), image_size)
        return LearnedDepthEstimate(
            depth=head_depths[-1],
            confidence=confidence,
            head_depths=head_depths,
            head_logits=head_logits,
            bins=self.bins,
        )


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) -> (B, H, W) bilinear, pixel-centre aligned."""
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
