"""EuRoC MAV sequences (ASL layout).

Layout: ``FOLDER/mav0/cam0/data/*.png``, ``cam0/data.csv`` (``timestamp [ns],filename``),
``cam0/sensor.yaml`` (``intrinsics: [fu, fv, cu, cv]``, ``distortion_coefficients: [k1, k2, p1,
p2]`` of the radial-tangential model, ``T_BS``: the camera's pose in the body frame, 4x4 row-major,
i.e. camera-to-body), and optionally ``state_groundtruth_estimate0/data.csv`` (timestamp ns,
``p_RS_R`` xyz, ``q_RS`` w x y z: the body's pose in the world, body-to-world).

``pose_gt`` is the camera-to-world pose T_WB @ T_BS interpolated to the image timestamps. The path
may be FOLDER or its ``mav0``. Calibration: the file given, else ``sensor.yaml``. Images are
undistorted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from slam.errors import CalibrationError, SourceError, TrajectoryError
from slam.geometry.camera import Camera
from slam.io.sources.base import ImageFileSource, SourceOptions, read_image
from slam.io.sources.calibration import camera_from_file
from slam.io.trajectory import Trajectory, check_quaternions, finite_numbers, time_order
from slam.text_files import parse_yaml, read_text

#: Ground truth is not interpolated across gaps longer than this (seconds); it is sampled at 200 Hz.
MAX_GROUND_TRUTH_GAP = 0.25


def find_mav0(path: Path) -> Path | None:
    """The ``mav0`` folder of a EuRoC sequence given as the sequence folder or ``mav0`` itself."""
    if (path / "mav0").is_dir():
        return path / "mav0"
    if path.name == "mav0" and path.is_dir():
        return path
    return None


def read_csv(path: Path, min_columns: int) -> list[tuple[int, list[str]]]:
    """Rows of a EuRoC csv (``#`` header lines skipped) as ``(line number, fields)``, each with at
    least ``min_columns`` fields; raises SourceError naming the file and line when a row is short."""
    if not path.is_file():
        raise SourceError(f"EuRoC file not found: {path}")
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < min_columns:
            raise SourceError(f"{path}:{number}: expected {min_columns} comma-separated fields, found {line!r}")
        rows.append((number, fields))
    return rows


def _nanoseconds(value: str, where: str) -> int:
    """``value`` as a timestamp in nanoseconds (an integer that fits 64 bits); raises SourceError
    starting with ``where`` (``FILE:LINE``) otherwise."""
    try:
        nanoseconds = int(value)
        if not 0 <= nanoseconds < 2**63:
            raise ValueError
    except ValueError:
        raise SourceError(f"{where}: not a timestamp in nanoseconds: {value!r}") from None
    return nanoseconds


def read_sensor_yaml(path: Path) -> dict:
    """Parse a EuRoC/Kalibr ``sensor.yaml`` (an OpenCV-style ``%YAML:1.0`` first line is skipped);
    raises CalibrationError naming the file (and the line of a YAML error) when it is not YAML."""
    if not path.is_file():
        raise CalibrationError(f"EuRoC camera description not found: {path}")
    lines = read_text(path).splitlines()
    text = "\n".join("" if line.startswith("%YAML") else line for line in lines)  # blank: line numbers hold
    data = parse_yaml(text, str(path), CalibrationError)
    if not isinstance(data, dict):
        raise CalibrationError(f"{path}: expected a mapping of camera properties")
    return data


def camera_from_sensor_yaml(sensor: dict, path: Path, width: int, height: int) -> Camera:
    """The camera of a ``sensor.yaml`` (pinhole, radial-tangential or no distortion) for images of
    ``width`` x ``height``; raises CalibrationError naming the file when it cannot be used."""
    if sensor.get("camera_model", "pinhole") != "pinhole":
        raise CalibrationError(f"{path}: camera_model {sensor['camera_model']!r} is not supported (pinhole only)")
    model = sensor.get("distortion_model", "radial-tangential")
    distortion = sensor.get("distortion_coefficients") or []
    if model not in ("radial-tangential", "radtan", "none"):
        raise CalibrationError(f"{path}: distortion_model {model!r} is not supported (radial-tangential only)")
    try:
        fu, fv, cu, cv = (float(v) for v in sensor["intrinsics"])
        camera = Camera(fu, fv, cu, cv, distortion=tuple(float(d) for d in distortion), width=width, height=height)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise CalibrationError(
            f"{path}: expected 'intrinsics: [fu, fv, cu, cv]' and 'distortion_coefficients: [k1, k2, p1, p2]'"
        ) from None
    except CalibrationError as err:
        raise CalibrationError(f"{path}: {err}") from None
    camera.check_image_size(width, height, origin=str(path))
    return camera


def sensor_to_body(sensor: dict, path: Path) -> np.ndarray:
    """``T_BS`` of a ``sensor.yaml``: 4x4, the sensor's pose in the body frame (sensor-to-body)."""
    try:
        matrix = np.array(sensor["T_BS"]["data"], dtype=np.float64).reshape(4, 4)
        if not np.isfinite(matrix).all():
            raise ValueError
    except (KeyError, TypeError, ValueError, OverflowError):
        raise CalibrationError(f"{path}: expected 'T_BS' with a 'data' list of 16 finite numbers") from None
    return matrix


def read_groundtruth(path: Path) -> Trajectory:
    """Body-to-world poses of ``state_groundtruth_estimate0/data.csv`` (quaternions w first), in
    time order. Raises SourceError or TrajectoryError naming the file and line of a malformed or
    non-finite value, a quaternion that cannot be normalised, or a repeated timestamp."""
    rows = read_csv(path, 8)
    line_numbers = [number for number, _ in rows]
    stamps = np.array([_nanoseconds(fields[0], f"{path}:{number}") for number, fields in rows], dtype=np.int64)
    values = np.array(
        [finite_numbers(fields[1:8], f"{path}:{number}") for number, fields in rows], dtype=np.float64
    ).reshape(-1, 7)
    check_quaternions(values[:, 3:], path, line_numbers)
    order = time_order(stamps, line_numbers, path, TrajectoryError)
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, 3] = values[:, :3]
    if len(rows):
        poses[:, :3, :3] = Rotation.from_quat(values[:, [4, 5, 6, 3]]).as_matrix()  # w x y z -> x y z w
    return Trajectory(stamps[order] * 1e-9, poses[order])


class EurocSource(ImageFileSource):
    """One camera of a EuRoC MAV sequence (``cam0`` by default; see the module docstring)."""

    kind = "euroc"

    def __init__(
        self,
        path: str | Path,
        calib: str | Path | None = None,
        options: SourceOptions | None = None,
        camera: str = "cam0",
    ):
        super().__init__(options)
        path = Path(path)
        if not path.is_dir():
            raise SourceError(f"EuRoC folder not found: {path}")
        mav0 = find_mav0(path)
        if mav0 is None:
            raise SourceError(f"{path} is not a EuRoC sequence: no mav0/ folder")
        self.folder = mav0
        self.camera_dir = mav0 / camera
        index = self.camera_dir / "data.csv"
        rows = read_csv(index, 2)
        if not rows:
            raise SourceError(f"{index} lists no images")
        self.timestamps_ns = np.array(
            [_nanoseconds(fields[0], f"{index}:{number}") for number, fields in rows], dtype=np.int64
        )
        self.timestamps = self.timestamps_ns * 1e-9
        self.image_files = [self.camera_dir / "data" / fields[1] for _, fields in rows]
        first = read_image(self.image_files[0])
        height, width = first.shape[:2]
        sensor_file = self.camera_dir / "sensor.yaml"
        if calib is not None:
            self.calib_file = Path(calib)
            camera_model = camera_from_file(calib, width, height)
        else:
            self.calib_file = sensor_file
            camera_model = camera_from_sensor_yaml(read_sensor_yaml(sensor_file), sensor_file, width, height)
        self.set_camera(camera_model)
        gt_file = mav0 / "state_groundtruth_estimate0" / "data.csv"
        self.poses_gt = None
        if gt_file.is_file():
            body = read_groundtruth(gt_file)
            camera_to_body = sensor_to_body(read_sensor_yaml(sensor_file), sensor_file)
            cameras = Trajectory(body.timestamps, body.poses @ camera_to_body)
            poses, valid = cameras.interpolate(self.timestamps, max_gap=MAX_GROUND_TRUTH_GAP)
            self.poses_gt = [pose if ok else None for pose, ok in zip(poses, valid)]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "path": str(self.folder),
            "camera": self.camera_dir.name,
            "images": self.num_raw,
            "calibration": str(self.calib_file),
            "ground_truth_poses": 0 if self.poses_gt is None else sum(p is not None for p in self.poses_gt),
        }
