"""Geometry shared by the motion modules (learned and classical): the internal resolution a
module works at, and the reprojection of frame pairs (edges) at that resolution.

Pixel-centre convention throughout (pixel (0, 0) is the centre of the top-left pixel): resizing an
image from W to W' columns maps u to ``(u + 0.5) * W' / W - 0.5``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slam.geometry.lie import SE3
from slam.geometry.projection import reproject
from slam.geometry.resize import scale_intrinsics


def resize_intrinsics(intrinsics: torch.Tensor, image_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(..., 4) intrinsics of an ``image_size`` (H, W) image -> those of the same image resized to
    ``size`` (H', W'), per axis and pixel-centre aligned (what :func:`resize_images` does)."""
    sy, sx = size[0] / image_size[0], size[1] / image_size[1]
    fx, fy, cx, cy = intrinsics.unbind(-1)
    return torch.stack([fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5], dim=-1)


def feature_intrinsics(
    intrinsics: torch.Tensor, image_size: tuple[int, int], input_size: tuple[int, int], stride: int
) -> torch.Tensor:
    """(..., 4) full-resolution intrinsics of ``image_size`` images -> intrinsics of a module's
    features: images resized to ``input_size``, then downsampled by ``stride``."""
    return scale_intrinsics(resize_intrinsics(intrinsics, image_size, input_size), stride)


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, N, C, H, W) images -> (B, N, C, H', W') at ``size`` (H', W'): bilinear, antialiased when
    shrinking, pixel-centre aligned. Returns the input itself when the size already matches."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    batch, frames = images.shape[:2]
    flat = images.reshape(batch * frames, *images.shape[2:])
    resized = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return resized.view(batch, frames, *resized.shape[1:])


def inside_image(coords: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., 2) pixel coordinates -> (...) bool, True where inside the ``height`` x ``width`` image
    (between the centres of the border pixels, where bilinear sampling needs no padding)."""
    u, v = coords.unbind(-1)
    return (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)


def edge_reprojection(
    depths: torch.Tensor, poses: SE3, intrinsics: torch.Tensor, ii: torch.Tensor, jj: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where every pixel of frame ``ii[e]`` lands in frame ``jj[e]``, for all edges at once.

    Args:
        depths: (B, N, h, w) metres (only frames in ``ii`` are read).
        poses: SE3 (B, N) world-to-camera; edge e uses ``T_ji = G_jj[e] * G_ii[e]^-1``.
        intrinsics: (B, 4) at the depths' resolution.
        ii, jj: (E,) long.

    Returns ``coords`` (B, E, h, w, 2) pixel coordinates in frame jj[e] and ``valid`` (B, E, h, w)
    bool: depth known, in front of camera jj[e], and inside its image.
    """
    batch = depths.shape[0]
    edges = ii.shape[0]
    height, width = depths.shape[-2:]
    T_ji = poses[:, jj] * poses[:, ii].inv()
    coords, valid, _, _ = reproject(
        depths[:, ii].reshape(batch * edges, height, width),
        T_ji.view(batch * edges),
        intrinsics[:, None].expand(batch, edges, 4).reshape(batch * edges, 4),
    )
    coords = coords.view(batch, edges, height, width, 2)
    valid = valid.view(batch, edges, height, width) & inside_image(coords, height, width)
    return coords, valid


#: RGB -> grey weights (ITU-R BT.601, as OpenCV's)
GREY_WEIGHTS = (0.299, 0.587, 0.114)


def grey_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, N, 3, H, W) RGB in [0, 1] -> (B, N, 1, h, w) grey levels in [0, 1] at ``size`` (h, w)."""
    small = resize_images(images, size)
    weights = small.new_tensor(GREY_WEIGHTS).view(3, 1, 1)
    return (small * weights).sum(dim=2, keepdim=True).clamp(0.0, 1.0)
