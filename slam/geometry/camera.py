"""Pinhole cameras with OpenCV distortion: the calibration file format, resizing, cropping and
undistortion that keep the intrinsics right.

Calibration file format (see calib/README.md): one line ``fx fy cx cy [k1 k2 p1 p2 [k3]]`` in
pixels of the images as stored, distortion coefficients in OpenCV's order. Lines starting with
``#`` and blank lines are ignored.

Pixel convention: pixel (u, v) = (0, 0) is the centre of the top-left pixel, as in OpenCV. Under
this convention scaling an image by s maps a coordinate u to s * (u + 0.5) - 0.5.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from slam.errors import CalibrationError
from slam.text_files import read_text

#: Distortion vectors accepted in a calibration file: none, k1 k2 p1 p2, or k1 k2 p1 p2 k3.
_VALID_DISTORTION_LENGTHS = (0, 4, 5)


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels, OpenCV distortion coefficients, and the image size they hold
    for (``width``/``height`` may be None when a calibration file is read without an image)."""

    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...] = field(default=())
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy, *self.distortion)
        if not np.isfinite(values).all():
            raise CalibrationError(f"values must be finite numbers, got {' '.join(str(v) for v in values)}")
        if not (self.fx > 0 and self.fy > 0):
            raise CalibrationError(f"focal lengths must be positive, got fx={self.fx} fy={self.fy}")
        if len(self.distortion) not in _VALID_DISTORTION_LENGTHS:
            raise CalibrationError(
                f"distortion needs 0, 4 (k1 k2 p1 p2) or 5 (k1 k2 p1 p2 k3) values, got {len(self.distortion)}"
            )

    # ------------------------------------------------------------------ construction and I/O
    @classmethod
    def from_string(
        cls, text: str, width: int | None = None, height: int | None = None, origin: str = "calibration"
    ) -> Camera:
        """Parse the one-line calibration format; ``origin`` names the file in error messages."""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if len(lines) != 1:
            raise CalibrationError(f"{origin}: expected one line 'fx fy cx cy [k1 k2 p1 p2 [k3]]', found {len(lines)}")
        try:
            values = [float(v) for v in lines[0].replace(",", " ").split()]
        except ValueError:
            raise CalibrationError(f"{origin}: not a list of numbers: {lines[0]!r}") from None
        if len(values) not in (4, 8, 9):
            raise CalibrationError(
                f"{origin}: expected 4, 8 or 9 numbers 'fx fy cx cy [k1 k2 p1 p2 [k3]]', found {len(values)}"
            )
        try:
            return cls(
                values[0], values[1], values[2], values[3], distortion=tuple(values[4:]), width=width, height=height
            )
        except CalibrationError as err:
            raise CalibrationError(f"{origin}: {err}") from None

    @classmethod
    def from_file(cls, path: str | Path, width: int | None = None, height: int | None = None) -> Camera:
        """Read a calibration file (UTF-8 or UTF-16 text); raises CalibrationError naming the file
        when it is missing or bad, TextFileError when it is not text."""
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(f"calibration file not found: {path}")
        return cls.from_string(read_text(path), width, height, origin=str(path))

    @classmethod
    def from_matrix(
        cls, K: np.ndarray, distortion: np.ndarray | tuple = (), width: int | None = None, height: int | None = None
    ) -> Camera:
        """Build from a 3x3 intrinsic matrix (skew ignored) and an OpenCV distortion vector."""
        dist = tuple(float(d) for d in np.asarray(distortion, dtype=np.float64).ravel())
        dist = _trim_distortion(dist)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), dist, width, height)

    def to_string(self) -> str:
        """The one-line calibration format, full precision."""
        return " ".join(f"{v:.10g}" for v in (self.fx, self.fy, self.cx, self.cy, *self.distortion))

    def to_file(self, path: str | Path, comment: str | None = None) -> None:
        """Write the calibration file (with an optional ``#`` comment line above the values)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "".join(f"# {line}\n" for line in comment.splitlines()) if comment else ""
        path.write_text(header + self.to_string() + "\n")

    # ------------------------------------------------------------------ views
    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix, float64."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def intrinsics(self) -> np.ndarray:
        """``[fx, fy, cx, cy]`` as float32, the layout the geometry functions take."""
        return np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float32)

    @property
    def is_distorted(self) -> bool:
        return any(d != 0.0 for d in self.distortion)

    @property
    def size(self) -> tuple[int, int] | None:
        """``(width, height)`` or None when unknown."""
        return None if self.width is None or self.height is None else (self.width, self.height)

    def with_size(self, width: int, height: int) -> Camera:
        """The same intrinsics attached to an image size, checked with :meth:`check_image_size`."""
        camera = replace(self, width=int(width), height=int(height))
        camera.check_image_size(width, height)
        return camera

    def check_image_size(self, width: int, height: int, origin: str = "calibration") -> None:
        """Raise CalibrationError when the principal point lies outside the image: the sign of a
        calibration made for another resolution. A principal point far from the centre is only
        logged as a warning, since cropped images (e.g. KITTI-style bottom crops) have one."""
        if not (0 <= self.cx < width and 0 <= self.cy < height):
            raise CalibrationError(
                f"{origin}: principal point ({self.cx:.1f}, {self.cy:.1f}) lies outside the "
                f"{width}x{height} image; is the calibration for another resolution?"
            )
        if abs(self.cx - (width - 1) / 2) > 0.25 * width or abs(self.cy - (height - 1) / 2) > 0.25 * height:
            logging.getLogger(__name__).warning(
                "%s: principal point (%.1f, %.1f) is far from the centre of the %dx%d image; "
                "fine for a cropped image, wrong if the calibration is for another resolution",
                origin,
                self.cx,
                self.cy,
                width,
                height,
            )

    # ------------------------------------------------------------------ image operations
    def scaled(self, sx: float, sy: float | None = None) -> Camera:
        """Intrinsics of the image resized by factors (sx, sy); distortion is scale free."""
        sy = sx if sy is None else sy
        width = None if self.width is None else int(round(self.width * sx))
        height = None if self.height is None else int(round(self.height * sy))
        return replace(
            self,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=sx * (self.cx + 0.5) - 0.5,
            cy=sy * (self.cy + 0.5) - 0.5,
            width=width,
            height=height,
        )

    def resized(self, width: int, height: int) -> Camera:
        """Intrinsics after resizing the whole image to ``width`` x ``height`` (needs the size)."""
        if self.size is None:
            raise CalibrationError("cannot resize a camera whose image size is unknown")
        assert self.width is not None and self.height is not None  # size is not None
        cam = self.scaled(width / self.width, height / self.height)
        return replace(cam, width=int(width), height=int(height))

    def cropped(self, x0: int, y0: int, width: int, height: int) -> Camera:
        """Intrinsics of the crop whose top-left pixel is (x0, y0) in this image."""
        return replace(self, cx=self.cx - x0, cy=self.cy - y0, width=int(width), height=int(height))

    def resize_image(self, image: np.ndarray, width: int, height: int) -> np.ndarray:
        """Resize an image (area filter when shrinking, linear when enlarging)."""
        shrink = width < image.shape[1] or height < image.shape[0]
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _trim_distortion(dist: tuple[float, ...]) -> tuple[float, ...]:
    """Reduce an OpenCV distortion vector to the file format's lengths (0, 4 or 5)."""
    if len(dist) > 5:
        if any(d != 0.0 for d in dist[5:]):
            raise CalibrationError("only k1 k2 p1 p2 k3 distortion is supported (rational/thin-prism terms found)")
        dist = dist[:5]
    if len(dist) == 5 and dist[4] == 0.0:
        dist = dist[:4]
    if len(dist) == 4 and all(d == 0.0 for d in dist):
        dist = ()
    return dist


class Undistorter:
    """Undistorts images of a camera with precomputed remap tables. The output camera keeps the
    same pinhole intrinsics (fx, fy, cx, cy) with no distortion, as TUM's tools do."""

    def __init__(self, camera: Camera):
        if camera.size is None:
            raise CalibrationError("undistortion needs the image size of the camera")
        self.source_camera = camera
        self.camera = replace(camera, distortion=())
        self._maps = None
        if camera.is_distorted:
            self._maps = cv2.initUndistortRectifyMap(
                camera.K, np.array(camera.distortion), None, camera.K, camera.size, cv2.CV_16SC2
            )

    def __call__(self, image: np.ndarray, nearest: bool = False) -> np.ndarray:
        """Undistort an image of the source camera's size (``nearest`` for depth maps)."""
        if self._maps is None:
            return image
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        return cv2.remap(image, self._maps[0], self._maps[1], interp, borderMode=cv2.BORDER_CONSTANT)
