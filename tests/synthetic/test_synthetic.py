"""The synthetic renderer: determinism, exact depth, multi-view consistency, camera paths, the
source wrapper and its options."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slam.errors import SourceError
from slam.geometry.camera import Camera
from slam.io.sources.base import SourceOptions
from slam.io.sources.synthetic import SyntheticSource
from slam.synthetic import (
    Photometric,
    SyntheticSequence,
    build_room,
    default_camera,
    render,
)
from slam.synthetic.paths import DRIVING_CAMERA_HEIGHT, DrivingPath, HandheldPath
from slam.synthetic.textures import get_texture, texture_names

KINDS = ("room", "road")


@pytest.fixture(scope="module")
def sequences() -> dict[str, SyntheticSequence]:
    """Small sequences of both kinds, shared by the tests of this module."""
    return {
        "room": SyntheticSequence("room", seed=3, num_frames=60, height=120, width=160),
        "road": SyntheticSequence("road", seed=4, num_frames=30, height=96, width=320),
    }


def backproject(depth: np.ndarray, camera: Camera, pose_c2w: np.ndarray) -> np.ndarray:
    """World points (H, W, 3) of the pixels of a depth map seen from ``pose_c2w``."""
    v, u = np.mgrid[0 : depth.shape[0], 0 : depth.shape[1]].astype(np.float64)
    rays = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], axis=-1)
    return (rays * depth[..., None]) @ pose_c2w[:3, :3].T + pose_c2w[:3, 3]


def project(points: np.ndarray, camera: Camera, pose_c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates u, v and depth z of world points in the camera at ``pose_c2w``."""
    cam = (points - pose_c2w[:3, 3]) @ pose_c2w[:3, :3]
    z = cam[..., 2]
    return camera.fx * cam[..., 0] / z + camera.cx, camera.fy * cam[..., 1] / z + camera.cy, z


# ---------------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_bit_identical_frames(kind, sequences):
    first = sequences[kind]
    second = SyntheticSequence(
        kind, seed=first.seed, num_frames=len(first), height=first.camera.height, width=first.camera.width
    )
    assert np.array_equal(first.poses, second.poses)
    assert np.array_equal(first.timestamps, second.timestamps)
    for index in (0, len(first) // 2, len(first) - 1):
        image_a, depth_a = first.render(index)
        image_b, depth_b = second.render(index)
        assert np.array_equal(image_a, image_b)
        assert np.array_equal(depth_a, depth_b)


@pytest.mark.parametrize("kind", KINDS)
def test_other_seed_gives_another_scene_and_path(kind, sequences):
    first = sequences[kind]
    other = SyntheticSequence(
        kind, seed=first.seed + 1, num_frames=len(first), height=first.camera.height, width=first.camera.width
    )
    assert not np.allclose(first.poses, other.poses)
    assert not np.array_equal(first.render(0)[0], other.render(0)[0])


def test_longer_road_keeps_the_same_beginning():
    short = SyntheticSequence("road", seed=7, num_frames=10, height=64, width=160)
    long = SyntheticSequence("road", seed=7, num_frames=400, height=64, width=160)
    assert long.layout.curve.length > short.layout.curve.length
    assert np.array_equal(short.poses, long.poses[:10])
    pieces = len(short.layout.curve.starts)
    assert np.array_equal(short.layout.curve.starts, long.layout.curve.starts[:pieces])
    assert np.array_equal(short.layout.curve.curvatures, long.layout.curve.curvatures[:pieces])


def test_longer_room_path_keeps_the_same_beginning():
    short = SyntheticSequence("room", seed=7, num_frames=10, height=48, width=64)
    long = SyntheticSequence("room", seed=7, num_frames=100, height=48, width=64)
    assert np.array_equal(short.poses, long.poses[:10])


# ---------------------------------------------------------------------------------------------- exact depth


@pytest.mark.parametrize("kind", KINDS)
def test_depth_lies_on_the_face_drawn_at_each_pixel(kind, sequences):
    sequence = sequences[kind]
    scene = sequence.scene
    for index in (0, len(sequence) - 1):
        result = sequence.render_result(index, face_ids=True)
        assert np.array_equal((result.depth > 0), (result.face_id >= 0))
        valid = result.face_id >= 0
        points = backproject(result.depth, sequence.camera, sequence.poses[index])[valid]
        faces = result.face_id[valid]
        distance = np.abs(scene.plane_distance(faces, points))
        assert np.all(distance <= 1e-5 * result.depth[valid] + 1e-6), distance.max()

        # pixels inside a face's region (all 8 neighbours show it too) lie within its quadrilateral
        same = np.ones_like(valid)
        padded = np.pad(result.face_id, 1, constant_values=-2)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                same &= padded[1 + dy : 1 + dy + valid.shape[0], 1 + dx : 1 + dx + valid.shape[1]] == result.face_id
        inner = same[valid]
        rel = points[inner] - scene.plane_origins[faces[inner]]
        s = np.einsum("ij,ij->i", rel, scene.plane_u[faces[inner]])
        t = np.einsum("ij,ij->i", rel, scene.plane_v[faces[inner]])
        corners = scene.vertices[faces[inner]] - scene.plane_origins[faces[inner]][:, None]
        cs = np.einsum("ikj,ij->ik", corners, scene.plane_u[faces[inner]])
        ct = np.einsum("ikj,ij->ik", corners, scene.plane_v[faces[inner]])
        # inside a convex quad: on the same side of its four edges (margin 1 mm)
        for k in range(4):
            ex, ey = cs[:, (k + 1) % 4] - cs[:, k], ct[:, (k + 1) % 4] - ct[:, k]
            cross = ex * (t - ct[:, k]) - ey * (s - cs[:, k])
            length = np.hypot(ex, ey)
            assert np.all(cross / length >= -1e-3), (cross / length).min()


def test_closed_room_has_depth_at_every_pixel(sequences):
    sequence = sequences["room"]
    for index in range(0, len(sequence), 6):
        image, depth = sequence.render(index)
        assert (depth > 0).all(), f"frame {index}: {(depth <= 0).sum()} pixels without depth"
        assert np.isfinite(depth).all() and depth.max() < 15.0


def test_road_sky_has_no_depth_and_looks_like_sky(sequences):
    sequence = sequences["road"]
    image, depth = sequence.render(0)
    sky = depth == 0
    assert sky.any() and not sky[-sequence.camera.height // 3 :].any()
    colour = image[sky].astype(float).mean(axis=0)
    assert colour[2] > colour[0] and colour.mean() > 120  # bright and blue-ish (or grey when overcast)
    assert np.isfinite(depth).all() and depth.max() < 2000.0


@pytest.mark.parametrize("kind, step", [("room", 4), ("road", 1)])
def test_views_agree_on_depth_and_colour(kind, step, sequences):
    """Pixels of frame i moved with their depth and the relative pose land in frame j on the same
    surface: same depth (interpolated inverse depth, exact on planes) and similar colour."""
    sequence = sequences[kind]
    camera = sequence.camera
    for i in (0, len(sequence) // 2):
        j = i + step
        image_i, depth_i = sequence.render(i)
        image_j, depth_j = sequence.render(j)
        valid = depth_i > 0
        u, v, z = project(backproject(depth_i, camera, sequence.poses[i]), camera, sequence.poses[j])
        inside = valid & (z > 0) & (u >= 0) & (u <= camera.width - 1) & (v >= 0) & (v <= camera.height - 1)
        assert inside.mean() > 0.5
        inv_j = np.where(depth_j > 0, 1.0 / np.maximum(depth_j, 1e-9), 0.0).astype(np.float32)
        maps = (u.astype(np.float32), v.astype(np.float32))
        sampled = cv2.remap(inv_j, *maps, cv2.INTER_LINEAR)[inside]
        agree = np.abs(sampled * z[inside] - 1.0) < 1e-3
        assert agree.mean() > 0.85, agree.mean()

        grey_i = cv2.cvtColor(image_i, cv2.COLOR_RGB2GRAY).astype(np.float32)
        grey_j = cv2.cvtColor(image_j, cv2.COLOR_RGB2GRAY).astype(np.float32)
        seen = cv2.remap(grey_j, *maps, cv2.INTER_LINEAR)[inside][agree]
        difference = np.abs(seen - grey_i[inside][agree])
        assert np.median(difference) < 6.0 and np.mean(difference) < 12.0, (np.median(difference), difference.mean())


# ---------------------------------------------------------------------------------------------- images


@pytest.mark.parametrize("kind", KINDS)
def test_images_are_textured(kind, sequences):
    image, _ = sequences[kind].render(len(sequences[kind]) // 3)
    assert image.dtype == np.uint8 and image.shape == (sequences[kind].camera.height, sequences[kind].camera.width, 3)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    assert grey.std() > 15
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    assert (gradient > 40).mean() > 0.05  # edges and texture across the image, not flat colour


def test_render_from_any_pose():
    scene, layout = build_room(11)
    camera = default_camera("room", 60, 80)
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # looking along +x, level
    pose[:3, 3] = layout.centre
    image, depth = render(scene, pose, camera)
    assert image.shape == (60, 80, 3) and depth.shape == (60, 80) and depth.dtype == np.float32
    assert (depth > 0).all()
    # looking along +x from the middle of the room: the east wall (x = Lx) is Lx / 2 ahead, unless
    # furniture standing against it (at most 0.65 m deep) is in front
    half = layout.size[0] / 2
    assert half - 0.65 <= depth[30, 40] <= half + 1e-4
    with pytest.raises(ValueError):
        render(scene, np.eye(3), camera)


def test_photometric_options_change_images_only(sequences):
    exact = sequences["room"]
    noisy = SyntheticSequence(
        "room",
        seed=exact.seed,
        num_frames=len(exact),
        height=exact.camera.height,
        width=exact.camera.width,
        photometric=Photometric(noise=3.0, vignetting=0.3, motion_blur=0.5),
    )
    image, depth = noisy.render(10)
    exact_image, exact_depth = exact.render(10)
    assert np.array_equal(depth, exact_depth)
    assert not np.array_equal(image, exact_image)
    assert np.abs(image.astype(int) - exact_image).mean() < 25
    assert np.array_equal(image, noisy.render(10)[0])  # deterministic too


def test_every_texture_builds():
    for name in texture_names():
        texture = get_texture(name)
        assert texture.levels[0].dtype == np.uint8 and texture.levels[0].ndim == 3
        sizes = [level.shape[0] * level.shape[1] for level in texture.levels]
        assert sizes == sorted(sizes, reverse=True) and len(sizes) > 2
        assert texture.levels[0].std() > 3, name


# ---------------------------------------------------------------------------------------------- paths


@pytest.mark.parametrize("kind", KINDS)
def test_poses_are_rigid_transforms(kind, sequences):
    poses = sequences[kind].poses
    rotations = poses[:, :3, :3]
    np.testing.assert_allclose(
        rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rotations.shape), atol=1e-9
    )
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-9)
    assert np.array_equal(poses[:, 3], np.broadcast_to([0.0, 0.0, 0.0, 1.0], (len(poses), 4)))
    assert poses.dtype == np.float64


@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_handheld_path_stays_inside_the_room_and_moves_like_a_person(seed):
    _, layout = build_room(seed)
    rate = 30.0
    times = np.arange(0, 60.0, 1 / rate)
    poses = HandheldPath(layout, times[-1], seed).poses(times)
    centres = poses[:, :3, 3]
    assert np.all(centres[:, :2] >= np.array(layout.free_min) - 0.01)
    assert np.all(centres[:, :2] <= np.array(layout.free_max) + 0.01)
    assert np.all(centres[:, 2] >= layout.camera_heights[0] - 0.01)
    assert np.all(centres[:, 2] <= layout.camera_heights[1] + 0.01)
    speed = np.linalg.norm(np.diff(centres, axis=0), axis=1) * rate
    assert 0.2 < speed.mean() < 1.0 and speed.max() < 2.0
    relative = poses[:-1, :3, :3].transpose(0, 2, 1) @ poses[1:, :3, :3]
    angle = np.degrees(np.arccos(np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1, 1))) * rate
    assert angle.mean() > 5.0 and 20.0 < angle.max() < 150.0  # turns, by up to tens of degrees per second
    forward = poses[:, :3, 2]
    assert np.all(forward[:, 2] > np.sin(np.radians(-40))) and np.all(forward[:, 2] < np.sin(np.radians(15)))


@pytest.mark.parametrize("seed", range(6))
def test_room_leaves_the_camera_region_clear(seed):
    """No surface comes within 0.2 m of the region the hand-held camera moves in."""
    scene, layout = build_room(seed)
    a, b = np.meshgrid(np.linspace(0, 1, 9), np.linspace(0, 1, 9))
    a, b = a.ravel()[:, None, None], b.ravel()[:, None, None]
    v = scene.vertices[None]
    points = (
        (1 - a) * (1 - b) * v[:, :, 0] + a * (1 - b) * v[:, :, 1] + a * b * v[:, :, 2] + (1 - a) * b * v[:, :, 3]
    ).reshape(-1, 3)
    lo = np.array([*layout.free_min, layout.camera_heights[0]]) - 0.2
    hi = np.array([*layout.free_max, layout.camera_heights[1]]) + 0.2
    assert not np.all((points > lo) & (points < hi), axis=1).any()


def test_driving_path_moves_forward_along_the_road(sequences):
    sequence = sequences["road"]
    poses = sequence.poses
    steps = np.diff(poses[:, :3, 3], axis=0)
    forward = poses[:-1, :3, 2]
    speed = np.linalg.norm(steps, axis=1) * sequence.rate
    assert np.all(np.einsum("ij,ij->i", steps, forward) > 0.9 * np.linalg.norm(steps, axis=1))
    assert np.all((speed > 4.5) & (speed < 10.5))
    assert np.allclose(poses[:, 2, 3], DRIVING_CAMERA_HEIGHT, atol=0.05)
    assert np.all(np.abs(forward[:, 2]) < 0.06)  # looking ahead, nearly level
    assert sequence.rate == 10.0 and sequence.timestamps[1] == pytest.approx(0.1)


def test_driving_path_needs_a_road_as_long_as_it_drives():
    path = DrivingPath(20.0, seed=3)
    distance = path.distance_at(np.linspace(0, 20.0, 201))
    assert np.all(np.diff(distance) > 0)
    assert 5.0 * 20 <= path.distance - distance[0] <= 10.0 * 20


# ---------------------------------------------------------------------------------------------- source


def test_source_delivers_selected_frames_with_ground_truth():
    options = SourceOptions(start=2, stride=3, max_frames=4, resize=(80, 60))
    source = SyntheticSource("room", seed=1, num_frames=20, height=120, width=160, options=options)
    reference = SyntheticSequence("room", seed=1, num_frames=20, height=120, width=160)
    frames = list(source)
    assert source.has_ground_truth and len(source) == 4 and len(frames) == 4
    assert source.camera.size == (160, 120) and source.output_camera.size == (80, 60)
    assert source.output_camera.fx == pytest.approx(0.9 * 160 / 2)
    assert source.output_camera.cx == pytest.approx(reference.camera.cx / 2 - 0.25)
    for k, frame in enumerate(frames):
        raw = 2 + 3 * k
        assert frame.index == k and frame.timestamp == pytest.approx(raw / 30.0)
        assert np.array_equal(frame.pose_gt, reference.poses[raw])
        assert frame.image.shape == (60, 80, 3) and frame.depth_gt.shape == (60, 80)
        assert frame.camera == source.output_camera
        assert (frame.depth_gt > 0).all()


def test_source_without_options_matches_the_sequence():
    source = SyntheticSource("road", seed=2, num_frames=5, height=64, width=160)
    reference = SyntheticSequence("road", seed=2, num_frames=5, height=64, width=160)
    frames = list(source)
    assert len(frames) == 5
    image, depth = reference.render(4)
    assert np.array_equal(frames[4].image, image) and np.array_equal(frames[4].depth_gt, depth)
    assert source.describe()["scene"] == "road" and source.kind == "synthetic"


@pytest.mark.parametrize(
    "spec, kind, seed, frames, size",
    [
        ("synthetic", "room", 0, 300, (320, 240)),
        ("synthetic:road", "road", 0, 200, (640, 192)),
        ("synthetic:room:seed=3:frames=50", "room", 3, 50, (320, 240)),
        ("synthetic:road:frames=7:size=96x320:seed=2", "road", 2, 7, (320, 96)),
        ("synthetic:frames=4:height=60:width=80", "room", 0, 4, (80, 60)),
    ],
)
def test_spec_strings(spec, kind, seed, frames, size):
    source = SyntheticSource.from_spec(spec, SourceOptions(max_frames=2))
    assert source.scene_kind == kind and source.seed == seed and source.num_raw == frames
    assert source.camera.size == size and len(source) == min(2, frames)


@pytest.mark.parametrize(
    "spec",
    [
        "synthetic:forest",
        "synthetic:seed=x",
        "synthetic:size=240",
        "video:road",
        "synthetic:frames=0",
        "synthetic:seed=-1",
        "synthetic:size=4x4",
    ],
)
def test_bad_spec_strings_raise_source_errors(spec):
    with pytest.raises(SourceError):
        SyntheticSource.from_spec(spec)
