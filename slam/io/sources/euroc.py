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
import yaml
from scipy.spatial.transform import Rotation

from slam.errors import CalibrationError, SourceError
from slam.geometry.camera import Camera
from slam.io.sources.base import ImageFileSource, SourceOptions, read_image
from slam.io.sources.calibration import camera_from_file
from slam.io.trajectory import Trajectory

#: Ground truth is not interpolated across gaps longer than this (seconds); it is sampled at 200 Hz.
MAX_GROUND_TRUTH_GAP = 0.25


def find_mav0(path: Path) -> Path | None:
    """The ``mav0`` folder of a EuRoC sequence given as the sequence folder or ``mav0`` itself."""
    if (path / "mav0").is_dir():
        return path / "mav0"
    if path.name == "mav0" and path.is_dir():
        return path
    return None


def read_csv(path: Path, min_columns: int) -> list[list[str]]:
    """Rows of a EuRoC csv (``#`` header lines skipped), each at least ``min_columns`` fields;
    raises SourceError naming the file when a row is short."""
    if not path.is_file():
        raise SourceError(f"EuRoC file not found: {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < min_columns:
            raise SourceError(f"{path}:{number}: expected {min_columns} comma-separated fields, found {line!r}")
        rows.append(fields)
    return rows


def _nanoseconds(value: str, path: Path) -> int:
    try:
        return int(value)
    except ValueError:
        raise SourceError(f"{path}: not a timestamp in nanoseconds: {value!r}") from None


def read_sensor_yaml(path: Path) -> dict:
    """Parse a EuRoC/Kalibr ``sensor.yaml`` (an OpenCV-style ``%YAML:1.0`` first line is skipped)."""
    if not path.is_file():
        raise CalibrationError(f"EuRoC camera description not found: {path}")
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("%YAML"))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CalibrationError(f"{path}: not valid YAML ({err})") from None
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
    except (KeyError, TypeError, ValueError):
        raise CalibrationError(f"{path}: expected 'intrinsics: [fu, fv, cu, cv]'") from None
    except CalibrationError as err:
        raise CalibrationError(f"{path}: {err}") from None
    camera.check_image_size(width, height, origin=str(path))
    return camera


def sensor_to_body(sensor: dict, path: Path) -> np.ndarray:
    """``T_BS`` of a ``sensor.yaml``: 4x4, the sensor's pose in the body frame (sensor-to-body)."""
    try:
        matrix = np.array(sensor["T_BS"]["data"], dtype=np.float64).reshape(4, 4)
    except (KeyError, TypeError, ValueError):
        raise CalibrationError(f"{path}: expected 'T_BS' with a 16-number 'data' list") from None
    return matrix


def read_groundtruth(path: Path) -> Trajectory:
    """Body-to-world poses of ``state_groundtruth_estimate0/data.csv`` (quaternions w first)."""
    rows = read_csv(path, 8)
    stamps = np.array([_nanoseconds(r[0], path) for r in rows], dtype=np.int64)
    try:
        values = np.array([[float(v) for v in r[1:8]] for r in rows], dtype=np.float64).reshape(-1, 7)
    except ValueError:
        raise SourceError(f"{path}: non-numeric pose values") from None
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, 3] = values[:, :3]
    if len(rows):
        poses[:, :3, :3] = Rotation.from_quat(values[:, [4, 5, 6, 3]]).as_matrix()  # w x y z -> x y z w
    order = np.argsort(stamps, kind="stable")
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
        self.timestamps_ns = np.array([_nanoseconds(r[0], index) for r in rows], dtype=np.int64)
        self.timestamps = self.timestamps_ns * 1e-9
        self.image_files = [self.camera_dir / "data" / r[1] for r in rows]
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
