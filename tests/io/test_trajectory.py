"""Trajectory files (TUM and KITTI) and interpolation to other timestamps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slam.errors import TrajectoryError
from slam.io.trajectory import Trajectory, read_kitti, read_tum, write_kitti, write_tum


def random_trajectory(n: int, seed: int = 0) -> Trajectory:
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = Rotation.from_rotvec(rng.normal(scale=0.5, size=(n, 3))).as_matrix()
    poses[:, :3, 3] = rng.normal(size=(n, 3))
    return Trajectory(np.arange(n) * 0.1 + 1000.0, poses)


def test_tum_round_trip(tmp_path):
    trajectory = random_trajectory(10)
    write_tum(tmp_path / "t.txt", trajectory)
    back = read_tum(tmp_path / "t.txt")
    assert np.allclose(back.timestamps, trajectory.timestamps)
    assert np.allclose(back.poses, trajectory.poses, atol=1e-8)


def test_kitti_round_trip(tmp_path):
    trajectory = random_trajectory(5)
    write_kitti(tmp_path / "k.txt", trajectory)
    back = read_kitti(tmp_path / "k.txt")
    assert np.allclose(back.poses, trajectory.poses, atol=1e-8)
    assert np.array_equal(back.timestamps, np.arange(5.0))


def test_tum_reader_on_real_ground_truth(shared_data):
    trajectory = read_tum(shared_data / "tum_fr1_rpy" / "groundtruth.txt")
    assert len(trajectory) > 100
    assert np.all(np.diff(trajectory.timestamps) > 0)
    assert np.allclose(np.linalg.det(trajectory.poses[:, :3, :3]), 1.0)


def test_kitti_reader_on_real_poses(shared_data):
    trajectory = read_kitti(shared_data / "kitti_07" / "poses" / "07.txt")
    assert len(trajectory) == 100
    assert np.allclose(trajectory.poses[0], np.eye(4), atol=1e-6)
    assert 40 < trajectory.path_length() < 70  # the README says 54 m driven


def test_interpolation_is_exact_at_samples_and_halfway_between():
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[1, :3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    poses[1, :3, 3] = [2.0, 0.0, 0.0]
    trajectory = Trajectory([0.0, 1.0], poses)
    out, valid = trajectory.interpolate(np.array([0.0, 0.5, 1.0, 1.5, -0.1]))
    assert valid.tolist() == [True, True, True, False, False]
    assert np.allclose(out[0], poses[0]) and np.allclose(out[2], poses[1])
    assert np.allclose(out[1, :3, 3], [1.0, 0.0, 0.0])
    assert np.isclose(Rotation.from_matrix(out[1, :3, :3]).magnitude(), np.pi / 4)


def test_interpolation_respects_max_gap():
    trajectory = random_trajectory(3)
    trajectory.timestamps = np.array([0.0, 0.01, 1.0])
    _, valid = trajectory.interpolate(np.array([0.005, 0.5, 1.0]), max_gap=0.1)
    assert valid.tolist() == [True, False, True]


@pytest.mark.parametrize("content, message", [("1 2 3\n", "expected 8 numbers"), ("1 2 3 4 5 6 7 x\n", "not a number")])
def test_malformed_tum_file(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(TrajectoryError, match=message):
        read_tum(path)


def test_missing_trajectory_file(tmp_path):
    with pytest.raises(TrajectoryError, match="not found"):
        read_tum(tmp_path / "missing.txt")
