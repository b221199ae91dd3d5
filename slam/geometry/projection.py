"""Pinhole projection and backprojection (the paper's pi and pi^-1), their analytic Jacobians,
and bilinear warping of feature maps by depth and relative pose.

Conventions:
- Intrinsics are (..., 4) tensors ``[fx, fy, cx, cy]`` in pixels of the image they are used with.
- Pixel (u, v) = (0, 0) is the centre of the top-left pixel; u grows right, v down. Camera
  coordinates are OpenCV's: x right, y down, z forward; depth is z in metres.
- ``T_ji`` is the relative transform taking points in camera i to camera j (for world-to-camera
  poses ``G``, ``T_ji = G_j * G_i.inv()``; for camera-to-world poses ``P``,
  ``T_ji = P_j.inv() * P_i``).
- SE3 Jacobians are with respect to a left perturbation ``T_ji <- exp(xi) * T_ji``, tangent order
  ``[tau, phi]`` (see slam.geometry.lie).

Every function is batched over leading dimensions, differentiable, and device/dtype agnostic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slam.geometry.lie import SE3

#: Points closer than this (metres along z) are treated as not projectable.
MIN_DEPTH = 0.05


def pixel_grid(
    height: int, width: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """(H, W, 2) pixel coordinates ``(u, v)`` of every pixel centre."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device), torch.arange(width, dtype=dtype, device=device), indexing="ij"
    )
    return torch.stack([u, v], dim=-1)


def _unbind_intrinsics(intrinsics: torch.Tensor, extra_dims: int) -> tuple[torch.Tensor, ...]:
    """fx, fy, cx, cy each shaped (..., 1 x extra_dims) to broadcast over pixel dimensions."""
    shaped = intrinsics.reshape(*intrinsics.shape[:-1], *([1] * extra_dims), 4)
    return shaped.unbind(-1)


def backproject(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """pi^-1: (..., H, W) depth and (..., 4) intrinsics -> (..., H, W, 3) points in the camera
    frame, ``X = depth * K^-1 [u, v, 1]``."""
    height, width = depth.shape[-2:]
    uv = pixel_grid(height, width, depth.dtype, depth.device)
    fx, fy, cx, cy = _unbind_intrinsics(intrinsics, 2)
    x = (uv[..., 0] - cx) / fx
    y = (uv[..., 1] - cy) / fy
    return torch.stack([x * depth, y * depth, depth], dim=-1)


def project(points: torch.Tensor, intrinsics: torch.Tensor, extra_dims: int | None = None) -> torch.Tensor:
    """pi: (..., 3) camera-frame points -> (..., 2) pixels ``(fx x/z + cx, fy y/z + cy)``.

    ``intrinsics`` is (B..., 4) where B... are the points' leading dimensions minus the last
    ``extra_dims`` (default: all of them but the batch dims it already has), e.g. points
    (B, H, W, 3) with intrinsics (B, 4). Depth is clamped to MIN_DEPTH to stay finite; check
    ``points[..., 2] > MIN_DEPTH`` for validity. Its Jacobian, chained with a pose
    perturbation's, is :func:`_projected_pose_jacobian`.
    """
    if extra_dims is None:
        extra_dims = points.dim() - intrinsics.dim()
    fx, fy, cx, cy = _unbind_intrinsics(intrinsics, extra_dims)
    x, y, z = points.unbind(-1)
    inv_z = 1.0 / z.clamp(min=MIN_DEPTH)
    return torch.stack([fx * x * inv_z + cx, fy * y * inv_z + cy], dim=-1)


def _projected_pose_jacobian(points: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """d pi(exp(xi) X) / d xi at xi = 0 for (B, H, W, 3) points X and (B, 4) intrinsics:
    (B, H, W, 2, 6): ``project``'s Jacobian times ``d(exp(xi) X)/d xi = [I, -[X]x]``, in closed
    form (one stack instead of a batch of small matrix products)."""
    fx, fy, _, _ = _unbind_intrinsics(intrinsics, 2)
    x, y, z = points.unbind(-1)
    inv_z = 1.0 / z.clamp(min=MIN_DEPTH)
    u, v = x * inv_z, y * inv_z  # normalised coordinates
    zero = torch.zeros_like(u)
    row_u = [fx * inv_z, zero, -fx * u * inv_z, -fx * u * v, fx * (1 + u * u), -fx * v]
    row_v = [zero, fy * inv_z, -fy * v * inv_z, -fy * (1 + v * v), fy * u * v, fy * u]
    return torch.stack(row_u + row_v, dim=-1).view(*x.shape, 2, 6)


def projectable(points: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool: where the (..., H, W, 3) ``points`` (camera j's frame, backprojected from
    camera i's (..., H, W) ``depth``) come from a known depth (> 0) and lie in front of camera j
    (z > MIN_DEPTH)."""
    return (points[..., 2] > MIN_DEPTH) & (depth > 0)


def reproject(
    depth: torch.Tensor, T_ji: SE3, intrinsics: torch.Tensor, with_jacobians: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Where every pixel of camera i lands in camera j.

    Args:
        depth: (B, H, W) depth of camera i's pixels.
        T_ji: SE3 of shape (B,), camera i to camera j.
        intrinsics: (B, 4), shared by both cameras (same image size).

    Returns ``(coords, valid, J_pose, J_depth)``:
        coords (B, H, W, 2) pixel coordinates in camera j; valid (B, H, W) bool, True where the
        point is in front of camera j (z > MIN_DEPTH) and depth_i > 0; with ``with_jacobians``,
        J_pose (B, H, W, 2, 6) = d coords / d xi for ``T_ji <- exp(xi) T_ji`` and
        J_depth (B, H, W, 2) = d coords / d depth_i; otherwise both None.
    """
    points_i = backproject(depth, intrinsics)
    T = T_ji.view(*T_ji.shape, 1, 1)
    points_j = T.act(points_i)
    coords = project(points_j, intrinsics, extra_dims=2)
    valid = projectable(points_j, depth)
    if not with_jacobians:
        return coords, valid, None, None
    J_pose = _projected_pose_jacobian(points_j, intrinsics)
    # d points_j / d depth_i is the ray R K^-1 [u, v, 1] = (points_j - t) / depth_i; its first
    # three pose columns are project's Jacobian
    ray_j = (points_j - T.translation()) / depth.clamp(min=1e-9).unsqueeze(-1)
    J_depth = (J_pose[..., :3] * ray_j.unsqueeze(-2)).sum(-1)
    return coords, valid, J_pose, J_depth


def sample(features: torch.Tensor, coords: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Bilinearly sample (B, C, H, W) feature maps at (B, H', W', 2) pixel coordinates (u, v),
    giving (B, C, H', W'). Samples outside the map are zero (``padding_mode`` of grid_sample)."""
    height, width = features.shape[-2:]
    scale = coords.new_tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)])
    grid = coords * scale - 1.0
    return F.grid_sample(features, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def warp(
    features_j: torch.Tensor, depth_i: torch.Tensor, T_ji: SE3, intrinsics: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp camera j's (B, C, H, W) features into camera i's view, using i's (B, H, W) depth and
    the relative transform T_ji (B,). Returns the warped (B, C, H, W) features and the (B, H, W)
    mask of pixels that land inside j's image in front of the camera."""
    coords, valid, _, _ = reproject(depth_i, T_ji, intrinsics)
    height, width = depth_i.shape[-2:]
    inside = (
        (coords[..., 0] >= 0) & (coords[..., 0] <= width - 1) & (coords[..., 1] >= 0) & (coords[..., 1] <= height - 1)
    )
    return sample(features_j, coords), valid & inside
