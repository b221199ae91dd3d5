"""Resolution changes: intrinsics of a downsampled image and depth maps resized without
mixing valid and invalid depths."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def scale_intrinsics(intrinsics: torch.Tensor, stride: int) -> torch.Tensor:
    """Intrinsics of an image downsampled by ``stride`` (pixel-centre convention:
    u' = (u + 0.5) / stride - 0.5). (..., 4) -> (..., 4)."""
    fx, fy, cx, cy = intrinsics.unbind(-1)
    return torch.stack([fx / stride, fy / stride, (cx + 0.5) / stride - 0.5, (cy + 0.5) / stride - 0.5], dim=-1)


def resize_depth(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (..., H, W) depth maps to ``size`` (h, w), averaging valid (> 0) depths only (area
    filter when shrinking, bilinear when enlarging); a pixel covered less than half by valid
    depth is invalid (0)."""
    shape = depth.shape
    flat = depth.reshape(-1, 1, *shape[-2:])
    valid = (flat > 0).to(flat.dtype)
    shrinking = size[0] <= shape[-2] and size[1] <= shape[-1]
    options = {"mode": "area"} if shrinking else {"mode": "bilinear", "align_corners": False}
    sums = F.interpolate(torch.cat([flat * valid, valid], dim=1), size=size, **options)
    coverage = sums[:, 1:]
    out = torch.where(coverage > 0.5, sums[:, :1] / coverage.clamp(min=1e-6), torch.zeros_like(coverage))
    return out.reshape(*shape[:-2], *size)
