"""Depth maps as colour pictures, for the viewers and contact sheets."""

from __future__ import annotations

import cv2
import numpy as np


def colorize_depth(depth: np.ndarray, near: float | None = None, far: float | None = None) -> np.ndarray:
    """(H, W) depth in metres -> (H, W, 3) RGB uint8 with the turbo colour map on inverse depth
    (near is red, far is blue); invalid pixels (depth <= 0 or not finite) are black. ``near`` and
    ``far`` default to the 2nd and 98th percentiles of the valid depths."""
    valid = np.isfinite(depth) & (depth > 0)
    out = np.zeros((*depth.shape, 3), np.uint8)
    if not valid.any():
        return out
    values = depth[valid]
    near = float(np.percentile(values, 2)) if near is None else near
    far = float(np.percentile(values, 98)) if far is None else far
    far = max(far, near * 1.001)
    inverse = (1.0 / np.clip(values, near, far) - 1.0 / far) / (1.0 / near - 1.0 / far)
    colours = cv2.applyColorMap((255 * inverse).astype(np.uint8).reshape(-1, 1), cv2.COLORMAP_TURBO)
    out[valid] = colours.reshape(-1, 3)[:, ::-1]
    return out
