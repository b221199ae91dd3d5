"""The two module interfaces of DeepV2D, shared by the learned networks and their classical twins.

Both modules work in two stages, so that the SLAM system can compute a frame's features once and
reuse them: ``encode`` turns images into features at 1/``stride`` of the input resolution, and
the second stage (``depth`` or ``flow``) works on features only.

Shared conventions:
- images: (B, N, 3, H, W) float32 RGB in [0, 1]. Frame 0 is the keyframe where it matters.
- poses: ``slam.geometry.lie.SE3`` of shape (B, N), world-to-camera (``G``; the relative transform from
  frame i to frame j is ``G_j * G_i.inv()``).
- intrinsics: (B, 4) ``[fx, fy, cx, cy]`` of the full-resolution images; a module rescales them
  to its feature resolution with :func:`scale_intrinsics`.
- depth: metres, z along the optical axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from slam.geometry.lie import SE3


@dataclass
class DepthEstimate:
    """Depth of the keyframe (frame 0) at full input resolution.

    - ``depth``: (B, H, W) metres, the final estimate.
    - ``confidence``: (B, H, W) in [0, 1] (for learned modules: from the sharpness of the
      distribution over depth bins).
    - ``head_depths``: every intermediate estimate the training loss supervises, (B, H, W) each,
      the last one equal to ``depth`` (one per 3D hourglass head for the learned module).
    """

    depth: torch.Tensor
    confidence: torch.Tensor
    head_depths: list[torch.Tensor]


class DepthModule(Protocol):
    """Depth of a keyframe from the keyframe and its neighbours with known poses."""

    stride: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, H, W) images -> (B, N, C, H/stride, W/stride) features."""

    def depth(
        self, features: torch.Tensor, poses: SE3, intrinsics: torch.Tensor, image_size: tuple[int, int]
    ) -> DepthEstimate:
        """Keyframe depth from features of the keyframe (index 0) and N-1 neighbours, their
        world-to-camera poses (B, N) and full-resolution intrinsics (B, 4); ``image_size`` is the
        full-resolution (H, W) the depth is returned at."""


@dataclass
class FlowEstimate:
    """Where each pixel of frame ``ii[e]`` should land in frame ``jj[e]``, at feature resolution.

    - ``targets``: (B, E, h, w, 2) pixel coordinates in frame jj[e] (the current reprojection
      plus the predicted residual flow).
    - ``weights``: (B, E, h, w, 2) confidences in [0, 1] for the u and v residuals.
    - ``residual``: (B, E, h, w, 2) the predicted residual flow alone (targets - reprojection).
    - ``intrinsics``: (B, 4) intrinsics at feature resolution, for the Gauss-Newton layer.
    """

    targets: torch.Tensor
    weights: torch.Tensor
    residual: torch.Tensor
    intrinsics: torch.Tensor


class MotionModule(Protocol):
    """Flow-SE3: residual flow and confidence for frame pairs, given depth and current poses."""

    stride: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, H, W) images -> (B, N, C, H/stride, W/stride) features."""

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
        """Residual flow for the E edges ``ii[e] -> jj[e]`` (LongTensors (E,)).

        ``features`` (B, N, C, h, w) from :meth:`encode`; ``depths`` (B, N, h, w) at feature
        resolution (only frames in ``ii`` are read); ``poses`` (B, N) world-to-camera;
        ``intrinsics`` (B, 4) at full resolution, that of the ``image_size`` (H, W) images given
        to :meth:`encode` (a module that resizes images internally needs it to rescale them)."""
