"""The map measures: keyframe depth against a reference with per-keyframe and shared scales, the
similarity and ICP that align a cloud, a cloud's accuracy and completeness, and the PLY reader
that reads an exported cloud back."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slam.errors import EvaluationError, ExportError
from slam.evaluation.map import (
    backproject_depth,
    cloud_metrics,
    keyframe_depth_metrics,
    plane_flatness,
    rigid_icp,
    similarity_from_poses,
    similarity_with_scale,
    transform_points,
)
from slam.mapping.export import read_ply_vertices, write_point_cloud_ply
from slam.mapping.point_cloud import PointCloud


def _corner(count: int = 3000, seed: int = 0) -> np.ndarray:
    """``count`` random points on each of three unequal orthogonal walls meeting at the origin (a
    shape ICP can lock on)."""
    rng = np.random.default_rng(seed)
    a, b, zero = rng.uniform(0, 1.0, count), rng.uniform(0, 0.6, count), np.zeros(count)
    return np.concatenate([np.stack([a, b, zero], 1), np.stack([zero, b, a * 0.8], 1), np.stack([a, zero, b * 1.5], 1)])


def test_keyframe_depth_is_scored_with_its_own_scale_and_with_one_for_all():
    rng = np.random.default_rng(0)
    estimate = rng.uniform(0.5, 2.0, (2, 12, 16))
    holes = estimate.copy()
    holes[1, :6] = 0.0  # half the second keyframe has no depth
    metrics = keyframe_depth_metrics([(holes[0], 2.0 * estimate[0]), (holes[1], 3.0 * estimate[1])])
    assert metrics.keyframes == 2
    assert metrics.abs_rel == pytest.approx(0.0, abs=1e-12) and metrics.delta1 == 1.0
    assert metrics.scale == pytest.approx(2.5)  # the median of the keyframes' scales
    assert metrics.abs_rel_one_scale == pytest.approx((0.5 / 2 + 0.5 / 3) / 2)
    assert metrics.scale_spread == pytest.approx(0.5 / 2.5)
    assert metrics.density == pytest.approx(0.75)


def test_keyframe_depth_without_a_pixel_in_common_is_refused():
    with pytest.raises(EvaluationError, match="no keyframe"):
        keyframe_depth_metrics([(np.zeros((4, 4)), np.ones((4, 4)))])
    with pytest.raises(EvaluationError, match="reference is"):
        keyframe_depth_metrics([(np.ones((4, 4)), np.ones((4, 5)))])


def test_backprojected_pixels_land_where_the_pose_puts_the_camera():
    depth = np.full((3, 5), 2.0)
    depth[0, 0] = 0.0
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]
    points = backproject_depth(depth, np.array([10.0, 10.0, 2.0, 1.0]), pose)
    assert len(points) == 14
    np.testing.assert_allclose(points[6], [1.0, 2.0, 5.0])  # pixel (2, 1): the principal point


def test_a_similarity_of_known_scale_and_icp_bring_a_moved_cloud_back():
    reference = _corner(30_000)  # dense: 4-5 mm between neighbours
    rotation = Rotation.from_euler("xyz", [20, -35, 60], degrees=True).as_matrix()
    moved = (reference @ rotation.T + [0.3, -1.0, 2.0]) / 4.0  # another frame, in map units (1 / 4)
    to_reference = similarity_with_scale(moved, reference, 4.0)
    np.testing.assert_allclose(transform_points(to_reference, moved), reference, atol=1e-9)
    nudge = np.eye(4)
    nudge[:3, :3] = Rotation.from_euler("z", 2, degrees=True).as_matrix()
    nudge[:3, 3] = [0.02, -0.01, 0.015]
    scan = transform_points(nudge, _corner(seed=1))  # a sparser sample of the same walls, moved
    assert cloud_metrics(scan, reference, 0.005).precision < 0.5
    aligned = transform_points(rigid_icp(scan, reference, 0.1), scan)
    metrics = cloud_metrics(aligned, reference, 0.005)
    assert metrics.accuracy < 0.003 and metrics.precision > 0.95, metrics
    assert cloud_metrics(aligned, reference, 0.02).completeness > 0.99  # the sparser scan covers it


def test_the_similarity_between_two_trajectories_holds_for_a_camera_that_only_turns():
    turn = Rotation.from_euler("xyz", [10, 80, -30], degrees=True).as_matrix()
    to_target = np.eye(4)
    to_target[:3, :3], to_target[:3, 3] = 3.0 * turn, [1.0, 2.0, -0.5]
    source = np.tile(np.eye(4), (5, 1, 1))
    source[:, :3, :3] = Rotation.from_euler("y", np.linspace(0, 60, 5)[:, None], degrees=True).as_matrix()
    source[:, :3, 3] = [0.2, 0.0, 0.1]  # one centre: it fixes no rotation
    target = source.copy()
    target[:, :3, :3] = turn @ source[:, :3, :3]
    target[:, :3, 3] = transform_points(to_target, source[:, :3, 3])
    np.testing.assert_allclose(similarity_from_poses(source, target, 3.0), to_target, atol=1e-9)


def test_a_cloud_of_one_wall_of_three_is_accurate_but_a_third_complete():
    reference = _corner()
    wall = reference[: len(reference) // 3] + [0.0, 0.0, 0.01]  # the floor, 1 cm too high
    metrics = cloud_metrics(wall, reference, 0.015)
    assert metrics.accuracy == pytest.approx(0.01, abs=1e-9) and metrics.precision == 1.0
    assert 1 / 3 <= metrics.completeness < 0.36  # and the other walls' points within 1.5 cm of it
    with pytest.raises(EvaluationError, match="cannot compare"):
        cloud_metrics(np.zeros((0, 3)), reference, 0.05)


def test_walls_drawn_thick_are_measured_by_their_thickness_not_their_placement():
    """Two walls of a room (x = 0 and y = 0, 4 m long), its floor and a box standing off the first
    wall: a cloud that draws each wall with a normal spread of 2 cm, the second tilted and pushed
    off its place, is 2 cm thick either way (median 0.67, 90th percentile 1.64 of the spread);
    the box's and the floor's points belong to no wall, and no point to two."""
    rng = np.random.default_rng(0)
    count = 20000
    u, v, zero = rng.uniform(0, 4.0, count), rng.uniform(0, 2.5, count), np.zeros(count)
    wall_x, wall_y, floor = np.stack([zero, u, v], 1), np.stack([u, zero, v], 1), np.stack([u, v, zero], 1)
    box = np.stack([np.full(2000, 0.3), rng.uniform(1, 2, 2000), rng.uniform(0, 1, 2000)], 1)
    reference = np.concatenate([wall_x, wall_y, floor, box])
    spread = 0.02
    drawn_x = wall_x + np.stack([rng.normal(0, spread, count), zero, zero], 1)
    tilt = Rotation.from_euler("x", 3, degrees=True).as_matrix()
    drawn_y = (wall_y + np.stack([zero, rng.normal(0, spread, count), zero], 1)) @ tilt.T + [0.0, 0.05, 0.0]
    walls = [(np.array([1.0, 0.0, 0.0]), 0.0), (np.array([0.0, 1.0, 0.0]), 0.0)]
    ground = [(np.array([0.0, 0.0, 1.0]), 0.0)]
    flatness = plane_flatness(np.concatenate([drawn_x, drawn_y, floor, box]), reference, walls, 0.01, ground)
    assert flatness.planes == 2
    assert 2 * count - 1000 < flatness.points < 2 * count  # the rows next to the floor are the floor's
    assert flatness.median == pytest.approx(0.674 * spread, rel=0.1)
    assert flatness.p90 == pytest.approx(1.645 * spread, rel=0.1)
    with pytest.raises(EvaluationError, match="no plane owns"):
        plane_flatness(box, reference, walls, 0.01, ground)
    with pytest.raises(EvaluationError, match="cannot measure"):
        plane_flatness(box, reference[:0], walls, 0.01)


def test_a_narrow_strip_of_wall_is_measured_across_the_wall_not_across_the_strip():
    """A wall seen only in a strip 3 cm tall, drawn with a 2 cm spread off it: its thinnest
    direction is up the strip, but the thickness is taken across the wall."""
    rng = np.random.default_rng(1)
    count = 5000
    u, v = rng.uniform(0, 4.0, count), rng.uniform(1.0, 1.03, count)
    strip = np.stack([np.zeros(count), u, v], 1)
    drawn = strip + np.stack([rng.normal(0, 0.02, count), np.zeros(count), np.zeros(count)], 1)
    flatness = plane_flatness(drawn, strip, [(np.array([1.0, 0.0, 0.0]), 0.0)], 0.01)
    assert flatness.median == pytest.approx(0.674 * 0.02, rel=0.1)


def test_the_exported_cloud_reads_back(tmp_path):
    points = _corner(50).astype(np.float32)
    path = tmp_path / "points.ply"
    write_point_cloud_ply(path, PointCloud(points, np.full_like(points, 7, np.uint8), points * 0 + [0, 0, 1]))
    positions, colours = read_ply_vertices(path)
    np.testing.assert_array_equal(positions, points.astype(np.float64))
    assert colours is not None and colours.shape == points.shape and (colours == 7).all()
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ExportError, match="fewer vertices"):
        read_ply_vertices(path)
    path.write_text("not a ply")
    with pytest.raises(ExportError, match="not a binary"):
        read_ply_vertices(path)
