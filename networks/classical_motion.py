"""The classical twin of the Flow-SE3 motion module: no weights, OpenCV DIS optical flow for the
residual flow, forward-backward consistency for the confidence.

For an edge ``i -> j`` with frame i's depth and the current poses, the reprojection ``x(u)`` says
where pixel u of frame i lands in frame j. Frame j's grey image is warped into frame i's pixel
grid by it, ``W(u) = I_j(x(u))``, and DIS measures the flow ``f`` from ``I_i`` to ``W``:
``I_i(u) ~ W(u + f(u)) = I_j(x(u + f(u)))``. So the corrected correspondence of u in frame j is
the reprojection map read at the displaced point, ``target(u) = x(u + f(u))`` (bilinear sample of
the coordinate map), and the residual is ``target(u) - x(u)``, in frame j's pixels. Where the
poses are already right, W matches I_i, f is zero and the target is the reprojection.

Confidence (the same for u and v): ``exp(-|f(u) + b(u + f(u))|^2 / sigma^2)`` with ``b`` the flow
from W back to I_i (forward-backward consistency), times an optional texture term
``1 - exp(-|grad I_i|^2 / tau^2)``, and zero where the reprojection at u or at u + f(u) is invalid
(no depth, behind the camera, outside frame j).

DIS runs on the CPU on uint8 images; tensors on any device are accepted (moved to the CPU for DIS
and back). The loop over edges is the one over DIS calls; everything else is batched.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from networks.flow_geometry import (
    edge_reprojection,
    feature_intrinsics,
    grey_images,
    inside_image,
)
from networks.interfaces import FlowEstimate
from slam.geometry.lie import SE3
from slam.geometry.projection import pixel_grid, sample

#: OpenCV DIS presets by name
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass
class ClassicalMotionConfig:
    """``input_size`` (H, W): images are resized to it first; features (grey images) are at
    ``input_size / stride``; an ``input_size`` of the camera's aspect ratio avoids anisotropic
    pixels. ``preset`` names the DIS preset ("ultrafast", "fast", "medium"); ``finest_scale``
    overrides its finest pyramid level: 0 computes the flow at the feature resolution, 1 at half of
    it (half the time, but pose errors about 1.5-2x larger on the benchmark clips), the presets' 2
    at a quarter (too coarse for images this small). ``fb_sigma`` (pixels at feature resolution)
    scales the forward-backward confidence; ``texture_tau`` (grey level difference per pixel, images in [0, 1]; 0 = off)
    down-weights textureless pixels, which helps on real images (flat walls) more than on the
    textured synthetic scenes."""

    input_size: tuple[int, int] = (240, 320)
    stride: int = 2
    preset: str = "fast"
    finest_scale: int = 0
    fb_sigma: float = 0.5
    texture_tau: float = 0.02

    def __post_init__(self) -> None:
        if self.preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {self.preset!r}: use one of {', '.join(DIS_PRESETS)}")
        if self.stride < 1 or any(s % self.stride for s in self.input_size):
            raise ValueError(f"input size {self.input_size} must be a multiple of the stride {self.stride}")
        if self.fb_sigma <= 0 or self.texture_tau < 0:
            raise ValueError(
                f"fb_sigma must be positive and texture_tau non-negative, got {self.fb_sigma}, {self.texture_tau}"
            )


class ClassicalMotionModule(torch.nn.Module):
    """Weight-free :class:`networks.interfaces.MotionModule` (an ``nn.Module`` with no parameters,
    so that ``.to()``/``.eval()`` work as for the learned one)."""

    def __init__(self, config: ClassicalMotionConfig | None = None):
        super().__init__()
        self.config = config or ClassicalMotionConfig()
        self.stride = self.config.stride
        self._per_thread = threading.local()  # a DIS instance per thread (one is not thread-safe)

    @property
    def feature_size(self) -> tuple[int, int]:
        """(h, w) of the features (and of the depths :meth:`flow` expects)."""
        height, width = self.config.input_size
        return height // self.stride, width // self.stride

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, H, W) RGB in [0, 1] -> (B, N, 1, h, w) grey images in [0, 1] at
        :attr:`feature_size`."""
        return grey_images(images, self.feature_size)

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
        """Residual flow for the edges ``ii[e] -> jj[e]`` (see the module docstring).

        ``features`` (B, N, 1, h, w) from :meth:`encode`; ``depths`` (B, N, h, w) metres;
        ``poses`` SE3 (B, N) world-to-camera; ``intrinsics`` (B, 4) of the full-resolution
        ``image_size`` (H, W) images. Not differentiable (DIS is not)."""
        batch, _, _, height, width = features.shape
        edges = ii.shape[0]
        K = feature_intrinsics(intrinsics, image_size, self.config.input_size, self.stride)
        with torch.no_grad():
            coords, valid = edge_reprojection(depths, poses, K, ii, jj)
            flat_coords = coords.view(batch * edges, height, width, 2)
            grey_i = features[:, ii, 0].reshape(batch * edges, 1, height, width)
            grey_j = features[:, jj, 0].reshape(batch * edges, 1, height, width)
            warped_j = sample(grey_j, flat_coords, padding_mode="border")
            forward, backward = self._dis_flows(grey_i, warped_j)
            forward, backward = forward.to(features), backward.to(features)
            displaced = pixel_grid(height, width, forward.dtype, forward.device) + forward  # (BE, h, w, 2)
            # The reprojection map (and its validity) read at u + f(u): the corrected target.
            coord_channels = torch.cat(
                [flat_coords.permute(0, 3, 1, 2), valid.view(batch * edges, 1, height, width).to(features)], dim=1
            )
            at_displaced = sample(coord_channels, displaced)
            targets = at_displaced[:, :2].permute(0, 2, 3, 1)
            still_valid = (at_displaced[:, 2] > 0.999) & inside_image(displaced, height, width)
            fb_error = forward + sample(backward.permute(0, 3, 1, 2), displaced, padding_mode="border").permute(
                0, 2, 3, 1
            )
            weight = torch.exp(-fb_error.square().sum(-1) / self.config.fb_sigma**2)
            weight = weight * self._texture_weight(grey_i) * (valid.view(batch * edges, height, width) & still_valid)
        targets = targets.view(batch, edges, height, width, 2)
        weights = weight.view(batch, edges, height, width, 1).expand(-1, -1, -1, -1, 2)
        targets = torch.where(weights > 0, targets, coords)
        return FlowEstimate(targets=targets, weights=weights.contiguous(), residual=targets - coords, intrinsics=K)

    def _dis_flows(self, grey_i: torch.Tensor, warped_j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DIS flows I_i -> W_j and W_j -> I_i for (P, 1, h, w) grey pairs in [0, 1]:
        two (P, h, w, 2) CPU float32 tensors in pixels."""
        # Any: OpenCV's stubs require calc()'s flow argument, which the binding accepts as None
        dis: Any = getattr(self._per_thread, "dis", None)
        if dis is None:  # made once per thread: its buffers are reused from call to call
            dis = self._per_thread.dis = cv2.DISOpticalFlow.create(DIS_PRESETS[self.config.preset])
            dis.setFinestScale(self.config.finest_scale)
        first, second = (_to_uint8(x) for x in (grey_i, warped_j))
        forward = np.stack([dis.calc(a, b, None) for a, b in zip(first, second)])
        backward = np.stack([dis.calc(b, a, None) for a, b in zip(first, second)])
        return torch.from_numpy(forward), torch.from_numpy(backward)

    def _texture_weight(self, grey: torch.Tensor) -> torch.Tensor:
        """(P, 1, h, w) grey in [0, 1] -> (P, h, w) in [0, 1]: near 0 where the image gradient is
        small compared with ``texture_tau`` (central differences), 1 when the term is off."""
        tau = self.config.texture_tau
        if tau == 0:
            return torch.ones_like(grey[:, 0])
        padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
        du = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
        dv = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
        return 1.0 - torch.exp(-(du.square() + dv.square())[:, 0] / tau**2)


def _to_uint8(grey: torch.Tensor) -> np.ndarray:
    """(P, 1, h, w) grey in [0, 1] on any device -> (P, h, w) uint8 numpy (contiguous)."""
    return np.ascontiguousarray((grey[:, 0] * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy())
