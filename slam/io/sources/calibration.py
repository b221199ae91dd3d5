"""Calibration for sources: reading a file for a known image size, guessing intrinsics when there is
none, and the size check every delivered image must pass."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from slam.errors import SourceError
from slam.geometry.camera import Camera

log = logging.getLogger(__name__)

#: Focal length of a guessed calibration, as a multiple of the longer image side: a field of view of
#: 2 * atan(0.5 / 0.8) = 64 degrees across the longer side, typical of phone cameras and webcams.
GUESSED_FOCAL_FACTOR = 0.8


def camera_from_file(path: str | Path, width: int, height: int) -> Camera:
    """Read a calibration file for images of ``width`` x ``height`` pixels. Raises CalibrationError
    naming the file when it is missing, malformed, or made for another image size."""
    camera = Camera.from_file(path)
    camera.check_image_size(width, height, origin=str(path))
    return replace(camera, width=int(width), height=int(height))


def guessed_camera(width: int, height: int, what: str) -> Camera:
    """A pinhole camera without distortion for an uncalibrated source: fx = fy =
    :data:`GUESSED_FOCAL_FACTOR` x the longer side, principal point at the image centre. Logs one
    warning naming ``what`` (the source), since depth and trajectory scale follow from the guess."""
    focal = GUESSED_FOCAL_FACTOR * max(width, height)
    camera = Camera(focal, focal, (width - 1) / 2, (height - 1) / 2, width=int(width), height=int(height))
    log.warning(
        "%s has no calibration: guessing fx = fy = %.1f, cx = %.1f, cy = %.1f for %dx%d images "
        "(pass --calib FILE for accurate depth and poses)",
        what,
        focal,
        camera.cx,
        camera.cy,
        width,
        height,
    )
    return camera


def check_frame_size(image: np.ndarray, camera: Camera, path: str | Path) -> None:
    """Raise SourceError naming ``path`` when ``image`` is not the size of the source's images."""
    height, width = image.shape[:2]
    if (width, height) != camera.size:
        raise SourceError(
            f"{path}: image is {width}x{height} but the sequence's images are {camera.width}x{camera.height}"
        )
