"""Trajectories: timestamped camera-to-world poses, their TUM and KITTI files, and interpolation
to other timestamps (linear in translation, spherical in rotation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from slam.errors import TrajectoryError, V2DError
from slam.io.atomic import write_text_atomic
from slam.text_files import read_text

#: Quaternions of a smaller norm are refused: they hold no rotation (a unit quaternion has norm 1).
MIN_QUATERNION_NORM = 1e-6


@dataclass
class Trajectory:
    """``timestamps``: (N,) float64 seconds, increasing. ``poses``: (N, 4, 4) float64,
    camera-to-world."""

    timestamps: np.ndarray
    poses: np.ndarray

    def __post_init__(self) -> None:
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64).reshape(-1)
        self.poses = np.asarray(self.poses, dtype=np.float64).reshape(-1, 4, 4)
        if len(self.timestamps) != len(self.poses):
            raise TrajectoryError(f"{len(self.timestamps)} timestamps but {len(self.poses)} poses")

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def positions(self) -> np.ndarray:
        """(N, 3) camera centres in world coordinates."""
        return self.poses[:, :3, 3]

    def path_length(self) -> float:
        """Sum of the distances between consecutive camera centres."""
        return float(np.linalg.norm(np.diff(self.positions, axis=0), axis=1).sum()) if len(self) > 1 else 0.0

    def interpolate(self, timestamps: np.ndarray, max_gap: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Poses at ``timestamps`` (linear translation, slerp rotation between the two nearest
        samples). Returns ``(poses (M, 4, 4), valid (M,) bool)``: a timestamp is invalid when it
        lies outside the trajectory's time span or, with ``max_gap``, between two samples more
        than ``max_gap`` seconds apart. Invalid poses are filled with identity."""
        timestamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        out = np.tile(np.eye(4), (len(timestamps), 1, 1))
        if len(self) == 0:
            return out, np.zeros(len(timestamps), dtype=bool)
        order = np.argsort(self.timestamps, kind="stable")
        t, poses = self.timestamps[order], self.poses[order]
        valid = (timestamps >= t[0]) & (timestamps <= t[-1])
        if len(self) == 1:
            out[valid] = poses[0]
            return out, valid
        right = np.clip(np.searchsorted(t, timestamps, side="left"), 1, len(t) - 1)
        left = right - 1
        if max_gap is not None:
            exact = np.isclose(t[right], timestamps) | np.isclose(t[left], timestamps)
            valid &= (t[right] - t[left] <= max_gap) | exact
        if not valid.any():
            return out, valid
        slerp = Slerp(t, Rotation.from_matrix(poses[:, :3, :3]))
        ts = timestamps[valid]
        alpha = ((ts - t[left[valid]]) / np.maximum(t[right[valid]] - t[left[valid]], 1e-12))[:, None]
        out[valid, :3, :3] = slerp(ts).as_matrix()
        out[valid, :3, 3] = (1 - alpha) * poses[left[valid], :3, 3] + alpha * poses[right[valid], :3, 3]
        return out, valid


def poses_to_tum(poses: np.ndarray) -> np.ndarray:
    """(N, 4, 4) camera-to-world -> (N, 7) ``tx ty tz qx qy qz qw`` (qw >= 0)."""
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
    quat = Rotation.from_matrix(poses[:, :3, :3]).as_quat()  # x y z w
    quat *= np.where(quat[:, 3:] < 0, -1.0, 1.0)
    return np.concatenate([poses[:, :3, 3], quat], axis=1)


def tum_to_poses(values: np.ndarray) -> np.ndarray:
    """(N, 7) ``tx ty tz qx qy qz qw`` -> (N, 4, 4) (quaternions are normalised)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1, 7)
    poses = np.tile(np.eye(4), (len(values), 1, 1))
    poses[:, :3, :3] = Rotation.from_quat(values[:, 3:]).as_matrix()
    poses[:, :3, 3] = values[:, :3]
    return poses


def finite_numbers(fields: Sequence[str], where: str) -> list[float]:
    """``fields`` (the values of one line of a pose file) as finite floats; raises TrajectoryError
    starting with ``where`` (``FILE:LINE``) at one that is not a number or not finite."""
    try:
        numbers = [float(f) for f in fields]
    except ValueError:
        raise TrajectoryError(f"{where}: not a number in {' '.join(fields)!r}") from None
    for field, number in zip(fields, numbers):
        if not np.isfinite(number):
            raise TrajectoryError(f"{where}: {field!r} is not a finite number")
    return numbers


def check_quaternions(quaternions: np.ndarray, path: Path, line_numbers: Sequence[int]) -> None:
    """Raise TrajectoryError naming the file and line of the first of the (N, 4) ``quaternions``
    (read from lines ``line_numbers`` of ``path``) that cannot be normalised: a norm below
    :data:`MIN_QUATERNION_NORM`, or too large to compute."""
    with np.errstate(over="ignore"):  # an overflowing norm is inf, refused below
        norms = np.linalg.norm(quaternions, axis=1)
    bad = np.flatnonzero(~(np.isfinite(norms) & (norms >= MIN_QUATERNION_NORM)))
    if len(bad):
        k = bad[0]
        raise TrajectoryError(
            f"{path}:{line_numbers[k]}: quaternion {' '.join(f'{q:g}' for q in quaternions[k])} has norm "
            f"{norms[k]:g}; a rotation needs a unit quaternion"
        )


def time_order(timestamps: np.ndarray, line_numbers: Sequence[int], path: Path, error: type[V2DError]) -> np.ndarray:
    """The indices that sort ``timestamps`` (read from lines ``line_numbers`` of ``path``) in time
    order; raises ``error`` naming the file and both lines when a timestamp appears twice, since
    the order of such lines (and which pose or image holds then) is ambiguous."""
    order = np.argsort(timestamps, kind="stable")
    repeats = np.flatnonzero(np.diff(timestamps[order]) == 0)
    if len(repeats):
        first, second = order[repeats[0]], order[repeats[0] + 1]
        raise error(
            f"{path}:{line_numbers[second]}: same timestamp as line {line_numbers[first]}; each line needs its own time"
        )
    return order


def _read_table(path: Path, columns: int, what: str) -> tuple[np.ndarray, list[int]]:
    """The numbers of a pose file, ``columns`` a line, and the line number of each row."""
    if not path.is_file():
        raise TrajectoryError(f"{what} file not found: {path}")
    rows, line_numbers = [], []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.replace(",", " ").split()
        if len(fields) != columns:
            raise TrajectoryError(f"{path}:{number}: expected {columns} numbers in a {what} line, found {len(fields)}")
        rows.append(finite_numbers(fields, f"{path}:{number}"))
        line_numbers.append(number)
    return np.array(rows, dtype=np.float64).reshape(-1, columns), line_numbers


def read_tum(path: str | Path) -> Trajectory:
    """Read a TUM trajectory (``timestamp tx ty tz qx qy qz qw`` a line, ``#`` comments),
    sorted by timestamp. Raises TrajectoryError naming the file and line of a malformed or
    non-finite value, a quaternion that cannot be normalised, or a repeated timestamp."""
    path = Path(path)
    table, line_numbers = _read_table(path, 8, "TUM trajectory")
    check_quaternions(table[:, 4:], path, line_numbers)
    order = time_order(table[:, 0], line_numbers, path, TrajectoryError)
    return Trajectory(table[order, 0], tum_to_poses(table[order, 1:]))


def write_tum(path: str | Path, trajectory: Trajectory, header: str | None = None) -> None:
    """Write a TUM trajectory file (full float precision; optional ``#`` header), atomically
    (see :mod:`slam.io.atomic`)."""
    values = poses_to_tum(trajectory.poses)
    lines = [f"# {ln}" for ln in (header or "timestamp tx ty tz qx qy qz qw").splitlines()]
    lines += [f"{t:.6f} " + " ".join(f"{v:.9f}" for v in row) for t, row in zip(trajectory.timestamps, values)]
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_kitti(path: str | Path, timestamps: np.ndarray | None = None) -> Trajectory:
    """Read a KITTI pose file (12 finite numbers a line: the top 3x4 of the camera-to-world
    matrix). Timestamps default to the line number."""
    table, _ = _read_table(Path(path), 12, "KITTI pose")
    poses = np.tile(np.eye(4), (len(table), 1, 1))
    poses[:, :3, :] = table.reshape(-1, 3, 4)
    if timestamps is None:
        timestamps = np.arange(len(table), dtype=np.float64)
    elif len(timestamps) < len(table):
        raise TrajectoryError(f"{path}: {len(table)} poses but only {len(timestamps)} timestamps")
    return Trajectory(np.asarray(timestamps, dtype=np.float64)[: len(table)], poses)


def write_kitti(path: str | Path, trajectory: Trajectory) -> None:
    """Write a KITTI pose file (the top 3x4 of each camera-to-world pose, row-major), atomically."""
    rows = trajectory.poses[:, :3, :].reshape(-1, 12)
    write_text_atomic(path, "".join(" ".join(f"{v:.9e}" for v in row) + "\n" for row in rows))


TRAJECTORY_FORMATS = ("auto", "tum", "kitti")


def read_trajectory(path: str | Path, fmt: str = "auto") -> Trajectory:
    """Read a trajectory file of camera-to-world poses: ``tum`` (``timestamp tx ty tz qx qy qz
    qw``), ``kitti`` (12 numbers a line, timestamps = line index 0, 1, ...) or ``auto`` (by the
    number of values on the first data line). Raises TrajectoryError naming the file."""
    if fmt not in TRAJECTORY_FORMATS:
        raise TrajectoryError(f"unknown trajectory format {fmt!r}; use one of {', '.join(TRAJECTORY_FORMATS)}")
    path = Path(path)
    if fmt == "auto":
        fmt = detect_format(path)
    trajectory = read_tum(path) if fmt == "tum" else read_kitti(path)
    if len(trajectory) == 0:
        raise TrajectoryError(f"{path}: no poses in the file")
    return trajectory


def detect_format(path: str | Path) -> str:
    """``"tum"`` or ``"kitti"`` by the number of values on the first data line of a trajectory
    file (8 or 12); raises TrajectoryError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise TrajectoryError(f"trajectory file not found: {path}")
    for line in read_text(path).splitlines():
        fields = line.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) == 8:
            return "tum"
        if len(fields) == 12:
            return "kitti"
        raise TrajectoryError(
            f"{path}: {len(fields)} values on a line; expected 8 (TUM: timestamp tx ty tz "
            "qx qy qz qw) or 12 (KITTI: a 3x4 pose matrix)"
        )
    raise TrajectoryError(f"{path}: no poses in the file")
