"""World-frame line geometry every viewer draws, as segments (S, 2, 3): camera frustums,
trajectories, a ground grid and axes; and the fixed rotation to z-up display coordinates.

The map's world frame is the first keyframe's camera frame (OpenCV: x right, y down, z forward),
so "up" in the world is -y; the ground grid lies in a plane y = const below the cameras.
"""

from __future__ import annotations

import numpy as np

#: display (x right, y forward, z up) from world (x right, y down, z forward): x, z, -y
DISPLAY_FROM_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def to_display(points: np.ndarray) -> np.ndarray:
    """(..., 3) world points -> (..., 3) float32 display points (z up)."""
    return (np.asarray(points, dtype=np.float64) @ DISPLAY_FROM_WORLD.T).astype(np.float32)


def frustum_segments(poses_c2w: np.ndarray, intrinsics: np.ndarray, size: tuple[int, int], depth: float) -> np.ndarray:
    """(8K, 2, 3) world segments of K camera frustums (four edges from the centre to the image
    corners at ``depth`` along the optical axis, and the image rectangle there). ``poses_c2w``:
    (K, 4, 4) camera-to-world; ``intrinsics``: ``[fx, fy, cx, cy]`` in pixels of ``size``
    (W, H)."""
    poses = np.asarray(poses_c2w, dtype=np.float64).reshape(-1, 4, 4)
    fx, fy, cx, cy = np.asarray(intrinsics, dtype=np.float64)
    width, height = size
    u = np.array([-0.5, width - 0.5, width - 0.5, -0.5])
    v = np.array([-0.5, -0.5, height - 0.5, height - 0.5])
    corners_camera = np.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, np.full(4, depth)], axis=1)  # (4, 3)
    centres = poses[:, :3, 3]  # (K, 3)
    corners = np.einsum("kij,cj->kci", poses[:, :3, :3], corners_camera) + centres[:, None]  # (K, 4, 3)
    edges = np.stack([np.broadcast_to(centres[:, None], corners.shape), corners], axis=2)  # (K, 4, 2, 3)
    rectangle = np.stack([corners, np.roll(corners, -1, axis=1)], axis=2)  # (K, 4, 2, 3)
    return np.concatenate([edges, rectangle], axis=1).reshape(-1, 2, 3)


def polyline_segments(points: np.ndarray) -> np.ndarray:
    """(N-1, 2, 3) segments joining consecutive points of (N, 3) (empty for fewer than 2)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(points) < 2:
        return np.zeros((0, 2, 3))
    return np.stack([points[:-1], points[1:]], axis=1)


def grid_segments(centre: np.ndarray, level: float, spacing: float, cells: int = 20) -> np.ndarray:
    """(2(cells+1), 2, 3) segments of a square grid in the world plane y = ``level``, ``cells``
    cells of side ``spacing`` across, centred below ``centre`` (snapped to the grid)."""
    half = cells * spacing / 2
    x0 = np.round(centre[0] / spacing) * spacing - half
    z0 = np.round(centre[2] / spacing) * spacing - half
    ticks = np.arange(cells + 1) * spacing
    along_x = [[[x0, level, z0 + t], [x0 + 2 * half, level, z0 + t]] for t in ticks]
    along_z = [[[x0 + t, level, z0], [x0 + t, level, z0 + 2 * half]] for t in ticks]
    return np.array(along_x + along_z, dtype=np.float64)


def axes_segments(length: float) -> np.ndarray:
    """(3, 2, 3) segments of the world axes x, y, z from the origin (draw them red, green, blue)."""
    return np.stack([np.zeros((3, 3)), np.eye(3) * length], axis=1)


def nice_spacing(extent: float) -> float:
    """A round grid spacing (1, 2 or 5 times a power of ten) giving about ten cells over ``extent``."""
    raw = max(extent, 1e-6) / 10
    power = 10.0 ** np.floor(np.log10(raw))
    return float(power * min((m for m in (1, 2, 5, 10) if m * power >= raw), default=10))
