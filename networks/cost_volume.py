"""Plane-sweep cost volumes shared by the depth modules (learned and classical).

For a keyframe (frame 0) and its neighbours, every keyframe pixel is backprojected at each of D
depth hypotheses (the "bins"), reprojected into each neighbour, and the neighbour's features are
sampled there bilinearly (DeepV2D's cost-volume backprojection). A distribution over the bins
then gives the expected depth (soft-argmax) and a confidence.

Conventions as in :mod:`networks.interfaces`: poses are SE3 (B, N) world-to-camera, intrinsics
(B, 4) ``[fx, fy, cx, cy]`` at the resolution of the features being swept.
"""

from __future__ import annotations

import math

import torch

from networks.flow_geometry import inside_image
from slam.geometry.lie import SE3
from slam.geometry.projection import MIN_DEPTH, backproject, project, sample

#: How depth hypotheses are spaced between the nearest and farthest depth.
BIN_SPACINGS = ("linear", "inverse", "log")


def depth_bins(
    min_depth: float,
    max_depth: float,
    count: int,
    spacing: str = "linear",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(count,) increasing depth hypotheses in metres from ``min_depth`` to ``max_depth``, both
    included: evenly spaced in depth (``"linear"``, as the paper), in inverse depth
    (``"inverse"``: even steps of disparity, densest near the camera) or in log depth (``"log"``:
    a constant ratio between neighbouring bins, i.e. the same relative resolution everywhere)."""
    if spacing not in BIN_SPACINGS:
        raise ValueError(f"unknown depth bin spacing {spacing!r}: use one of {', '.join(BIN_SPACINGS)}")
    if not 0 < min_depth < max_depth or count < 2:
        raise ValueError(f"need 0 < min_depth < max_depth and at least 2 bins, got {min_depth}, {max_depth}, {count}")
    if spacing == "linear":
        return torch.linspace(min_depth, max_depth, count, dtype=dtype, device=device)
    if spacing == "inverse":
        return 1.0 / torch.linspace(1.0 / min_depth, 1.0 / max_depth, count, dtype=dtype, device=device)
    return torch.logspace(math.log10(min_depth), math.log10(max_depth), count, dtype=dtype, device=device)


def neighbour_transforms(poses: SE3) -> SE3:
    """World-to-camera poses (..., N) -> relative transforms (..., N-1) from the keyframe (frame
    0) to each neighbour: ``T_j0 = G_j * G_0^-1``."""
    return poses[..., 1:] * poses[..., :1].inv()


def plane_sweep(
    neighbour_features: torch.Tensor, transforms: SE3, intrinsics: torch.Tensor, bins: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample each neighbour's features where every keyframe pixel lands at every depth bin.

    Args:
        neighbour_features: (B, M, C, h, w) features of the M neighbours.
        transforms: SE3 (B, M) keyframe-to-neighbour transforms (:func:`neighbour_transforms`).
        intrinsics: (B, 4) at the features' resolution (shared by all frames).
        bins: (D,) depth hypotheses in metres.

    Returns ``(warped, valid)``: warped (B, M, C, D, h, w), the neighbour features seen from the
    keyframe pixel (u, v) at depth ``bins[d]`` (zero where outside the neighbour's image); valid
    (B, M, D, h, w) bool, True where the point is in front of the neighbour and inside its image.

    The reprojection is that of :func:`slam.geometry.projection.reproject` with a constant depth map per
    bin, computed as a plane sweep: with ``X1 = T (K^-1 [u, v, 1])`` the keyframe ray moved into
    the neighbour at unit depth, the point at depth d is ``t + d (X1 - t)``; so the rigid
    transform runs once per neighbour pixel instead of once per bin (D times fewer small matrix
    products), then :func:`slam.geometry.projection.project` maps all bins at once. All bins and
    neighbours are sampled in one ``grid_sample`` call.
    """
    batch, neighbours, channels, height, width = neighbour_features.shape
    num_bins = bins.shape[0]
    ones = torch.ones(batch, height, width, dtype=neighbour_features.dtype, device=neighbour_features.device)
    rays = backproject(ones, intrinsics)  # (B, h, w, 3), z = 1
    moved = transforms.view(batch, neighbours, 1, 1).act(rays[:, None])  # (B, M, h, w, 3)
    t = transforms.translation().view(batch, neighbours, 1, 1, 1, 3)
    points = torch.addcmul(t, bins.view(1, 1, num_bins, 1, 1, 1), moved[:, :, None] - t)  # (B, M, D, h, w, 3)
    coords = project(points, intrinsics, extra_dims=4)
    valid = (points[..., 2] > MIN_DEPTH) & inside_image(coords, height, width)
    # one sampling call per neighbour map: the D bins are stacked along the sampled rows
    grid = coords.view(batch * neighbours, num_bins * height, width, 2)
    warped = sample(neighbour_features.reshape(batch * neighbours, channels, height, width), grid)
    warped = warped.view(batch, neighbours, channels, num_bins, height, width)
    return warped, valid


def expected_depth(logits: torch.Tensor, bins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-argmax: (B, D, h, w) logits over the (D,) bins -> the expected depth (B, h, w) in
    metres under ``p = softmax(logits)`` over bins, and ``p`` itself (B, D, h, w)."""
    prob = torch.softmax(logits, dim=1)
    return (prob * bins.view(1, -1, 1, 1)).sum(dim=1), prob


def entropy_confidence(prob: torch.Tensor) -> torch.Tensor:
    """Confidence in [0, 1] of (B, D, h, w) distributions over bins: ``1 - H(p) / log(D)``, the
    normalised entropy's complement (1 for all mass in one bin, 0 for a uniform distribution).
    Returns (B, h, w)."""
    entropy = -(prob * torch.log(prob.clamp(min=1e-12))).sum(dim=1)
    return (1.0 - entropy / math.log(prob.shape[1])).clamp(0.0, 1.0)
