"""A folder of images, in natural name order (frame2 before frame10).

Timestamps come from a file of one number a line (given, or ``timestamps.txt`` / ``times.txt`` in
the folder), else from the frame number and ``fps``. Calibration: the file given, else
``calib.txt`` in the folder (one line ``fx fy cx cy [k1 k2 p1 p2 [k3]]``), else ``intrinsics.txt``
(fx, fy, cx, cy, one a line), else a guess (with a warning). Distorted images are undistorted.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from slam.errors import CalibrationError, SourceError
from slam.geometry.camera import Camera
from slam.io.sources.base import ImageFileSource, SourceOptions, read_image
from slam.io.sources.calibration import camera_from_file, guessed_camera
from slam.text_files import read_text

#: File name endings read as images (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
#: Timestamp files looked for in the folder, in this order.
TIMESTAMP_FILES = ("timestamps.txt", "times.txt")


def natural_key(name: str) -> list:
    """Sort key that orders the digit runs of a name by value: ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, in natural name order."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: natural_key(p.name))


def read_timestamps(path: Path, count: int) -> np.ndarray:
    """Read ``count`` timestamps in seconds (the first number of each non-comment line) from
    ``path``. Line k holds the time of image k, so the times must increase line by line; raises
    SourceError naming the file (and line) when one is malformed, not finite or not after the one
    before, or when there are too few lines."""
    values: list[float] = []
    previous_line = 0
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            value = float(line.replace(",", " ").split()[0])
            if not math.isfinite(value):
                raise ValueError
        except (ValueError, IndexError):  # IndexError: a line of commas only
            raise SourceError(f"{path}:{number}: not a timestamp: {line!r}") from None
        if values and value <= values[-1]:
            raise SourceError(
                f"{path}:{number}: timestamp {value} is not after the one on line {previous_line} "
                f"({values[-1]}); the times must increase line by line, one line per image in image order"
            )
        values.append(value)
        previous_line = number
    if len(values) < count:
        raise SourceError(f"{path}: {len(values)} timestamps for {count} images")
    return np.array(values[:count], dtype=np.float64)


def read_intrinsics_lines(path: Path, width: int, height: int) -> Camera:
    """Read an ``intrinsics.txt`` (fx, fy, cx, cy, one number a line) for ``width`` x ``height``
    images; raises CalibrationError naming the file when it is malformed or does not fit."""
    try:
        values = [float(v) for v in read_text(path).split()]
    except ValueError:
        raise CalibrationError(f"{path}: expected four numbers fx, fy, cx, cy") from None
    if len(values) != 4:
        raise CalibrationError(f"{path}: expected four numbers fx, fy, cx, cy, found {len(values)}")
    try:
        camera = Camera(values[0], values[1], values[2], values[3], width=width, height=height)
    except CalibrationError as err:
        raise CalibrationError(f"{path}: {err}") from None
    camera.check_image_size(width, height, origin=str(path))
    return camera


class ImageFolderSource(ImageFileSource):
    """Images of a folder, in natural name order. ``timestamps``: a file of one timestamp (seconds)
    a line; ``fps``: frame rate for timestamps when there is no such file."""

    kind = "image_folder"

    def __init__(
        self,
        folder: str | Path,
        calib: str | Path | None = None,
        options: SourceOptions | None = None,
        timestamps: str | Path | None = None,
        fps: float = 30.0,
    ):
        super().__init__(options)
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        self.image_files = list_images(self.folder)
        if not self.image_files:
            raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {self.folder}")
        if fps <= 0:
            raise SourceError(f"invalid frame rate {fps} for {self.folder}")
        self.timestamps_file = self._find_timestamps_file(timestamps)
        if self.timestamps_file is None:
            self.timestamps = np.arange(self.num_raw, dtype=np.float64) / fps
        else:
            self.timestamps = read_timestamps(self.timestamps_file, self.num_raw)
        first = read_image(self.image_files[0])
        height, width = first.shape[:2]
        self.calib_file, camera = self._calibration(calib, width, height)
        self.set_camera(camera)

    def _find_timestamps_file(self, timestamps: str | Path | None) -> Path | None:
        if timestamps is not None:
            if not Path(timestamps).is_file():
                raise SourceError(f"timestamps file not found: {timestamps}")
            return Path(timestamps)
        return next((self.folder / name for name in TIMESTAMP_FILES if (self.folder / name).is_file()), None)

    def _calibration(self, calib: str | Path | None, width: int, height: int) -> tuple[Path | None, Camera]:
        if calib is not None:
            return Path(calib), camera_from_file(calib, width, height)
        if (self.folder / "calib.txt").is_file():
            return self.folder / "calib.txt", camera_from_file(self.folder / "calib.txt", width, height)
        if (self.folder / "intrinsics.txt").is_file():
            path = self.folder / "intrinsics.txt"
            return path, read_intrinsics_lines(path, width, height)
        return None, guessed_camera(width, height, f"image folder {self.folder}")

    def describe(self) -> dict:
        return {
            **super().describe(),
            "path": str(self.folder),
            "images": self.num_raw,
            "calibration": str(self.calib_file) if self.calib_file else "guessed",
            "timestamps": str(self.timestamps_file) if self.timestamps_file else "frame rate",
        }
