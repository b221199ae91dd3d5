"""The one frame type every camera source yields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slam.geometry.camera import Camera


@dataclass
class Frame:
    """One image of a sequence, as delivered to the SLAM system.

    - ``index``: position in the source's output (0, 1, 2, ... after start/stride are applied).
    - ``timestamp``: seconds (the dataset's clock, or capture time for live sources).
    - ``image``: H x W x 3 uint8, RGB (grey sources are replicated to three channels).
    - ``camera``: intrinsics of ``image`` as delivered (after undistortion and resizing).
    - ``pose_gt``: optional 4 x 4 float64 ground-truth pose, camera-to-world.
    - ``depth_gt``: optional H x W float32 ground-truth depth in metres, 0 where unknown.
    """

    index: int
    timestamp: float
    image: np.ndarray
    camera: Camera
    pose_gt: np.ndarray | None = None
    depth_gt: np.ndarray | None = None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
