"""KITTI odometry sequences.

Layout: ``ROOT/sequences/NN/{image_0,image_2,calib.txt,times.txt}`` and optionally
``ROOT/poses/NN.txt``. The path given may be ROOT (``sequence`` picks NN; by default the first) or
the sequence folder itself. Images come from ``image_0`` (grey, left) when present, else
``image_2`` (colour, left), or the folder named by ``camera``.

Calibration: the file given, else the projection matrix ``P<N>`` of the sequence's ``calib.txt``
for ``image_<N>``, else the shipped calibration for sequences 00-12. Images are rectified.
Ground truth: ``poses/NN.txt`` holds camera-to-world poses of camera 0; for another camera they are
moved by the rectified baseline of ``P<N>``, so ``pose_gt`` is always the pose of the delivered
images' camera, camera-to-world.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from slam.errors import CalibrationError, SourceError
from slam.geometry.camera import Camera
from slam.io.sources.base import ImageFileSource, SourceOptions, read_image
from slam.io.sources.calibration import camera_from_file, guessed_camera
from slam.io.sources.image_folder import read_timestamps
from slam.io.trajectory import read_kitti
from slam.text_files import read_text

#: Image folders tried in order when no camera is named.
DEFAULT_CAMERAS = ("image_0", "image_2")
#: Shipped calibration for each odometry sequence with published calibration.
_SHIPPED = {
    **{f"{n:02d}": "kitti_00-02" for n in range(0, 3)},
    "03": "kitti_03",
    **{f"{n:02d}": "kitti_04-12" for n in range(4, 13)},
}


def is_kitti_sequence(folder: Path) -> bool:
    """Whether ``folder`` looks like one KITTI odometry sequence (an image folder and times.txt)."""
    return (folder / "times.txt").is_file() and any((folder / name).is_dir() for name in DEFAULT_CAMERAS)


def read_projections(path: Path) -> dict[str, np.ndarray]:
    """Read the ``P0: ...`` lines (and any other ``KEY: 12 numbers``) of a KITTI calib.txt as 3x4
    matrices; raises CalibrationError naming the file and line when one is malformed or holds a
    value that is not a finite number."""
    matrices = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        key, _, values = line.partition(":")
        try:
            numbers = [float(v) for v in values.split()]
            if not np.isfinite(numbers).all():
                raise ValueError
        except ValueError:
            raise CalibrationError(f"{path}:{number}: not a list of finite numbers: {line!r}") from None
        if len(numbers) != 12:
            raise CalibrationError(f"{path}:{number}: expected 'KEY: 12 numbers', found {line!r}")
        matrices[key.strip()] = np.array(numbers, dtype=np.float64).reshape(3, 4)
    return matrices


def _sequence_name(sequence: str | int) -> str:
    """Folder name of a sequence given as 7, "7" or "07"."""
    return f"{int(sequence):02d}" if str(sequence).isdigit() else str(sequence)


class KittiSource(ImageFileSource):
    """One KITTI odometry sequence (see the module docstring for paths, calibration, ground truth)."""

    kind = "kitti"

    def __init__(
        self,
        path: str | Path,
        calib: str | Path | None = None,
        options: SourceOptions | None = None,
        sequence: str | int | None = None,
        camera: str | None = None,
    ):
        super().__init__(options)
        path = Path(path)
        if not path.is_dir():
            raise SourceError(f"KITTI folder not found: {path}")
        self.sequence_dir = self._sequence_dir(path, sequence)
        self.sequence = self.sequence_dir.resolve().name
        self.image_dir = self._image_dir(camera)
        self.camera_index = int(self.image_dir.name.rpartition("_")[2])
        self.image_files = sorted(p for p in self.image_dir.iterdir() if p.suffix.lower() == ".png")
        if not self.image_files:
            raise SourceError(f"no png images in {self.image_dir}")
        times = self.sequence_dir / "times.txt"
        if not times.is_file():
            raise SourceError(f"KITTI sequence {self.sequence_dir} has no times.txt")
        self.timestamps = read_timestamps(times, self.num_raw)
        first = read_image(self.image_files[0])
        height, width = first.shape[:2]
        self.calib_file, calibrated, baseline = self._calibration(calib, width, height)
        self.set_camera(calibrated)
        self.poses_file = self.sequence_dir.resolve().parent.parent / "poses" / f"{self.sequence}.txt"
        in_layout = self.sequence_dir.resolve().parent.name == "sequences"
        self.poses_gt = self._ground_truth(baseline) if in_layout and self.poses_file.is_file() else None

    @staticmethod
    def _sequence_dir(path: Path, sequence: str | int | None) -> Path:
        if (path / "sequences").is_dir():
            available = sorted(p.name for p in (path / "sequences").iterdir() if p.is_dir())
            if not available:
                raise SourceError(f"KITTI folder {path} has no sequence in sequences/")
            if sequence is None:
                return path / "sequences" / available[0]
            name = _sequence_name(sequence)
            if name not in available:
                raise SourceError(
                    f"KITTI sequence {name} not found in {path / 'sequences'}; available: {', '.join(available)}"
                )
            return path / "sequences" / name
        if sequence is not None and _sequence_name(sequence) != path.resolve().name:
            raise SourceError(f"{path} is KITTI sequence {path.resolve().name}, not {sequence}")
        return path

    def _image_dir(self, camera: str | None) -> Path:
        if camera is not None and re.fullmatch(r"image_\d", camera) is None:
            raise SourceError(f"invalid KITTI camera {camera!r}: expected an image folder such as image_0 or image_2")
        names = (camera,) if camera is not None else DEFAULT_CAMERAS
        for name in names:
            if (self.sequence_dir / name).is_dir():
                return self.sequence_dir / name
        raise SourceError(f"KITTI sequence {self.sequence_dir} has no image folder {' or '.join(names)}")

    def _calibration(self, calib: str | Path | None, width: int, height: int) -> tuple[Path | None, Camera, np.ndarray]:
        """Returns (calibration file, camera, position of camera 0 in this camera's frame, metres)."""
        no_baseline = np.zeros(3)
        if calib is not None:
            return Path(calib), camera_from_file(calib, width, height), no_baseline
        calib_file = self.sequence_dir / "calib.txt"
        key = f"P{self.camera_index}"
        if calib_file.is_file():
            projections = read_projections(calib_file)
            if key not in projections:
                raise CalibrationError(f"{calib_file} has no projection matrix {key} for {self.image_dir.name}")
            P = projections[key]
            try:
                camera = Camera.from_matrix(P[:, :3], width=width, height=height)
            except CalibrationError as err:
                raise CalibrationError(f"{calib_file}: {key}: {err}") from None
            camera.check_image_size(width, height, origin=f"{calib_file} ({key})")
            try:
                return calib_file, camera, np.linalg.solve(P[:, :3], P[:, 3])
            except np.linalg.LinAlgError:
                raise CalibrationError(f"{calib_file}: {key}: the left 3x3 block is singular") from None
        if self.sequence in _SHIPPED:
            from calib import path_for

            shipped = path_for(_SHIPPED[self.sequence])
            return shipped, camera_from_file(shipped, width, height), no_baseline
        return None, guessed_camera(width, height, f"KITTI sequence {self.sequence_dir}"), no_baseline

    def _ground_truth(self, baseline: np.ndarray) -> list[np.ndarray | None]:
        poses = read_kitti(self.poses_file).poses  # line i is image i
        # P_N = K [I | t]: a point X0 in camera-0 coordinates is X0 + t in camera N, so the pose of
        # camera N (camera-to-world) is the pose of camera 0 times [I | -t].
        camera0_from_this = np.eye(4)
        camera0_from_this[:3, 3] = -baseline
        return [poses[i] @ camera0_from_this if i < len(poses) else None for i in range(self.num_raw)]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "path": str(self.sequence_dir),
            "sequence": self.sequence,
            "images": self.num_raw,
            "image_folder": self.image_dir.name,
            "calibration": str(self.calib_file) if self.calib_file else "guessed",
            "ground_truth": str(self.poses_file) if self.poses_gt is not None else None,
        }
