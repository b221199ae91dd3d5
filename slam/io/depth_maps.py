"""Depth map files: read as metres from ``.npy`` or 16-bit PNG (TUM convention, value / scale =
metres), written as 16-bit PNG or as a keyframe's float32 ``.npy`` (map units), atomically (see
:mod:`slam.io.atomic`)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from slam.errors import DepthMapError, ExportError
from slam.io.atomic import atomic_file, write_bytes_atomic

log = logging.getLogger(__name__)

#: PNG depth units per metre in TUM RGB-D sequences (and in the HoloLens scene's TUM layout).
TUM_DEPTH_SCALE = 5000.0


def read_depth(path: str | Path, depth_scale: float = TUM_DEPTH_SCALE) -> np.ndarray:
    """An (H, W) float32 depth map in metres (0 = invalid) from ``.npy`` (metres) or a 16-bit
    ``.png`` (value / ``depth_scale`` metres). Raises DepthMapError naming the file."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DepthMapError(f"cannot read depth map {path}: {err}") from None
        depth = np.squeeze(depth)
    elif path.suffix.lower() == ".png":
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise DepthMapError(f"cannot read depth map {path} (missing or corrupt)")
        if depth.dtype != np.uint16:
            raise DepthMapError(f"{path}: a depth PNG must be 16-bit (value / depth scale = metres), got {depth.dtype}")
        depth = depth.astype(np.float32) / depth_scale
    else:
        raise DepthMapError(f"{path}: depth maps must be .npy (metres) or 16-bit .png")
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise DepthMapError(f"{path}: a depth map must be one HxW array of numbers, got shape {depth.shape}")
    return depth.astype(np.float32)


def write_depth_png(path: str | Path, depth: np.ndarray, scale: float = TUM_DEPTH_SCALE) -> None:
    """Write an (H, W) depth map in metres as a 16-bit PNG holding ``round(depth * scale)``
    (TUM: 5000 per metre, so at most 13.1 m). Invalid depths (<= 0, not finite) and depths too
    large for 16 bits are written as 0 (invalid), the latter with a logged warning."""
    path = Path(path)
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"a depth map must be (H, W), got shape {depth.shape}")
    if scale <= 0:
        raise ValueError(f"the depth scale must be > 0, got {scale}")
    valid = np.isfinite(depth) & (depth > 0)
    units = np.round(np.where(valid, depth, 0.0) * scale)
    too_far = units > np.iinfo(np.uint16).max
    if too_far.any():
        log.warning(
            "%s: %d depths beyond %.2f m do not fit 16 bits at scale %g; written as 0 (invalid)",
            path,
            int(too_far.sum()),
            np.iinfo(np.uint16).max / scale,
            scale,
        )
    units = np.where(too_far, 0.0, units).astype(np.uint16)
    if path.suffix.lower() != ".png":
        raise ExportError(f"cannot write {path}: a 16-bit depth map's name must end in .png")
    encoded, data = cv2.imencode(".png", units)
    if not encoded:
        raise ExportError(f"cannot write {path}: PNG encoding failed")
    write_bytes_atomic(path, data.tobytes())


def write_depth_npy(folder: str | Path, frame_index: int, depth: np.ndarray) -> Path:
    """Write a keyframe's (H, W) depth (map units, 0 = unknown) as float32
    ``folder/NNNNNN.npy``, NNNNNN the keyframe's frame index; returns the path."""
    path = Path(folder) / f"{frame_index:06d}.npy"
    with atomic_file(path, binary=True) as handle:
        np.save(handle, np.asarray(depth, dtype=np.float32))
    return path
