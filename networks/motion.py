"""The learned Flow-SE3 motion module of DeepV2D.

Its own 2D encoder gives 1/4-resolution features of every frame. For an edge ``i -> j`` with
frame i's depth and the current poses, frame i's pixels are reprojected into frame j
(``T_ji = G_j G_i^-1``), frame j's features are sampled bilinearly there (warped into frame
i's view, zero where the reprojection is invalid) and concatenated with frame i's features and
the validity mask. A small 2D network (a residual block and stacked hourglasses) predicts the
residual flow ``r`` (2 channels, pixels at feature resolution) and a confidence
``w = sigmoid(logits)`` (2 channels); the target is the reprojection plus ``r``. Pixels whose
reprojection is invalid (no depth, behind the camera, outside frame j) get weight 0. All edges
of a batch go through the network together.

Images are first resized to ``config.input_size`` (the module's internal resolution), so the
features are ``input_size / 4`` whatever the camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from networks.flow_geometry import edge_reprojection, feature_intrinsics, resize_images
from networks.interfaces import FlowEstimate
from networks.layers import FeatureEncoder, Hourglass2d, ResidualBlock2d
from slam.geometry.lie import SE3
from slam.geometry.projection import sample


@dataclass
class MotionNetConfig:
    """Sizes of the learned motion module (stored beside its weights).

    - ``feature_channels``: channels of the encoder's features.
    - ``base_channels``: width of the encoder's first layers.
    - ``encoder_hourglasses``: 2D hourglasses at the end of the encoder.
    - ``head_channels``: width of the residual-flow network.
    - ``head_hourglasses``: stacked hourglasses in the residual-flow network.
    - ``input_size``: (H, W) the images are resized to; multiples of 16 (the encoder's stride 4
      times the hourglasses' 1/4 lowest level).
    """

    feature_channels: int = 32
    base_channels: int = 16
    encoder_hourglasses: int = 0
    head_channels: int = 32
    head_hourglasses: int = 1
    input_size: tuple[int, int] = (192, 256)

    def __post_init__(self) -> None:
        self.input_size = cast("tuple[int, int]", tuple(int(s) for s in self.input_size))  # length checked below
        multiple = FeatureEncoder.SIZE_MULTIPLE
        if len(self.input_size) != 2 or any(s <= 0 or s % multiple for s in self.input_size):
            raise ValueError(
                f"motion network input size must be two positive multiples of {multiple}, got {self.input_size}"
            )
        if min(self.feature_channels, self.base_channels, self.head_channels) < 1:
            raise ValueError("motion network channel counts must be positive")
        if self.encoder_hourglasses < 0 or self.head_hourglasses < 0:
            raise ValueError("motion network hourglass counts must not be negative")

    @classmethod
    def paper(cls) -> MotionNetConfig:
        """The paper's size: 64-channel features from a 32-channel encoder with no hourglass (as
        DeepV2D's released motion encoder), a 64-channel head with two stacked hourglasses (an
        encoder-decoder, as the paper's), 480 x 640 input (120 x 160 features, DeepV2D's
        tracking resolution)."""
        return cls(
            feature_channels=64,
            base_channels=32,
            encoder_hourglasses=0,
            head_channels=64,
            head_hourglasses=2,
            input_size=(480, 640),
        )

    @classmethod
    def lite(cls) -> MotionNetConfig:
        """Real time on two CPU cores (a tracking step under 30 ms): 192 x 256 input (48 x 64
        features), 32-channel features and head, one hourglass."""
        return cls()


class LearnedMotionModule(nn.Module):
    """:class:`networks.interfaces.MotionModule` with learned weights (Flow-SE3)."""

    stride = FeatureEncoder.STRIDE

    def __init__(self, config: MotionNetConfig | None = None):
        super().__init__()
        self.config = config or MotionNetConfig.lite()
        c = self.config
        self.encoder = FeatureEncoder(c.feature_channels, c.base_channels, num_hourglasses=c.encoder_hourglasses)
        # input: frame i's features, frame j's warped features, the validity mask
        self.head = nn.Sequential(
            nn.Conv2d(2 * c.feature_channels + 1, c.head_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            ResidualBlock2d(c.head_channels, c.head_channels),
            *[Hourglass2d(c.head_channels) for _ in range(c.head_hourglasses)],
            nn.Conv2d(c.head_channels, 4, 3, padding=1),
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, H, W) RGB in [0, 1] -> (B, N, C, h, w) features, (h, w) = input_size / 4."""
        batch, frames = images.shape[:2]
        small = resize_images(images, self.config.input_size)
        features = self.encoder(small.reshape(batch * frames, *small.shape[2:]))
        return features.view(batch, frames, *features.shape[1:])

    def flow(
        self,
        features: torch.Tensor,
        depths: torch.Tensor,
        poses: SE3,
        intrinsics: torch.Tensor,
        ii: torch.Tensor,
        jj: torch.Tensor,
        image_size: tuple[int, int],
    ) -> FlowEstimate:
        """Residual flow and confidence for the edges ``ii[e] -> jj[e]`` (see the module docstring).

        ``features`` (B, N, C, h, w) from :meth:`encode`; ``depths`` (B, N, h, w) metres at
        feature resolution; ``poses`` SE3 (B, N) world-to-camera; ``intrinsics`` (B, 4) of the
        full-resolution ``image_size`` (H, W) images. Differentiable with respect to the
        features, depths, poses and the network's weights."""
        batch, _, channels, height, width = features.shape
        edges = ii.shape[0]
        K = feature_intrinsics(intrinsics, image_size, self.config.input_size, self.stride)
        coords, valid = edge_reprojection(depths, poses, K, ii, jj)
        mask = valid.to(features.dtype).view(batch * edges, 1, height, width)
        features_i = features[:, ii].reshape(batch * edges, channels, height, width)
        features_j = features[:, jj].reshape(batch * edges, channels, height, width)
        warped_j = sample(features_j, coords.view(batch * edges, height, width, 2)) * mask
        out = self.head(torch.cat([features_i, warped_j, mask], dim=1))
        out = out.view(batch, edges, 4, height, width).permute(0, 1, 3, 4, 2)
        residual = out[..., :2]
        weights = torch.sigmoid(out[..., 2:]) * valid.unsqueeze(-1).to(out.dtype)
        return FlowEstimate(targets=coords + residual, weights=weights, residual=residual, intrinsics=K)
