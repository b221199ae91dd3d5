"""Calibration files shipped with the project (format and sources: calib/README.md).

Each file holds one line ``fx fy cx cy [k1 k2 p1 p2 [k3]]`` for the images as stored; read one
with :meth:`slam.geometry.camera.Camera.from_file` on :func:`path_for`'s result.
"""

from __future__ import annotations

from pathlib import Path

from slam.errors import CalibrationError

_CALIB_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped calibrations (file stems, e.g. ``"tum_fr1"``), sorted."""
    return sorted(path.stem for path in _CALIB_DIR.glob("*.txt"))


def path_for(name: str) -> Path:
    """Path of the shipped calibration file ``name`` (a stem such as ``"kitti_04-12"``; a trailing
    ``.txt`` is accepted). Raises CalibrationError listing the available names when unknown."""
    stem = name[:-4] if name.endswith(".txt") else name
    path = _CALIB_DIR / f"{stem}.txt"
    if stem not in available():
        raise CalibrationError(f"no shipped calibration named {name!r}; available: {', '.join(available())}")
    return path
