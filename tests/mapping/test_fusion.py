"""Fusion and geometry exports: consistency-filtered coloured point clouds (batch and
incremental), TSDF meshes, PLY writers and depth PNGs, on the synthetic room with exact depth."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import open3d as o3d
import pytest
from scipy.spatial import cKDTree

from slam.config.schema import FusionConfig
from slam.errors import ExportError
from slam.io.depth_maps import read_depth, write_depth_png
from slam.mapping.export import write_mesh_ply, write_point_cloud_ply
from slam.mapping.fusion import (
    AUTO_VOXELS_PER_MEDIAN_DEPTH,
    EDGE_STEP,
    FusionKeyframe,
    PointCloudFuser,
    TsdfVolume,
    consistency_masks,
    depth_edges,
    depth_scale_against,
    nearest_neighbours,
)
from slam.mapping.point_cloud import PointCloud, VoxelSums, subsample, voxel_downsample
from slam.mapping.streaming import StreamingFusion
from slam.synthetic import SyntheticSequence
from tests.mapping.reference_fusion import fuse_mesh, fuse_point_cloud

#: Frames of the 60-frame room sequence used as keyframes.
KEYFRAME_FRAMES = range(0, 60, 4)


@pytest.fixture(scope="module")
def room() -> SyntheticSequence:
    return SyntheticSequence("room", seed=0, num_frames=60)


@pytest.fixture(scope="module")
def keyframes(room) -> list[FusionKeyframe]:
    """15 keyframes with exact depth and camera-to-world poses, no confidence."""
    intrinsics = np.array([room.camera.fx, room.camera.fy, room.camera.cx, room.camera.cy])
    result = []
    for keyframe_id, index in enumerate(KEYFRAME_FRAMES):
        image, depth = room.render(index)
        result.append(
            FusionKeyframe(image, depth, None, room.poses[index], intrinsics, room.timestamps[index], keyframe_id)
        )
    return result


@pytest.fixture(scope="module")
def surface(keyframes) -> cKDTree:
    """Nearest-neighbour search over every back-projected pixel of the exact depths."""
    return cKDTree(
        np.concatenate([fuse_point_cloud([kf], consistency_views=0, max_points=None).points for kf in keyframes])
    )


def surface_distance(surface: cKDTree, points: np.ndarray, bound: float = 0.15) -> np.ndarray:
    """Distance of each point to the nearest point of ``surface``, inf beyond ``bound`` metres
    (the search is slow for far points without a bound)."""
    distance, _ = surface.query(points, distance_upper_bound=bound)
    return distance


def rescaled(keyframe: FusionKeyframe, scale: float) -> FusionKeyframe:
    """The keyframe in a world ``scale`` times larger (depth and camera position scaled), as a
    monocular system may see it."""
    pose = keyframe.pose_c2w.copy()
    pose[:3, 3] *= scale
    return replace(keyframe, depth=keyframe.depth * scale, pose_c2w=pose)


def rigid_motion(angle: float, translation: tuple[float, float, float]) -> np.ndarray:
    """(4, 4) rotation by ``angle`` about z, then ``translation``."""
    c, s = np.cos(angle), np.sin(angle)
    motion = np.eye(4)
    motion[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    motion[:3, 3] = translation
    return motion


def corrupt(keyframe: FusionKeyframe, fraction: float, seed: int) -> tuple[FusionKeyframe, np.ndarray]:
    """The keyframe with ``fraction`` of its depths scaled by 1.25-2 or 0.5-0.8 (outliers) and the
    rest perturbed by 0.5 % noise (well within tolerance); also the outlier mask."""
    rng = np.random.default_rng(seed)
    bad = rng.random(keyframe.depth.shape) < fraction
    outlier = np.where(rng.random(bad.shape) < 0.5, rng.uniform(1.25, 2.0, bad.shape), rng.uniform(0.5, 0.8, bad.shape))
    factor = np.where(bad, outlier, 1.0 + rng.normal(0.0, 0.005, bad.shape))
    return replace(keyframe, depth=(keyframe.depth * factor).astype(np.float32)), bad


def ply_header(path) -> tuple[list[str], int]:
    """The header lines of a PLY file and the number of bytes after them."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:end].decode("ascii").splitlines(), len(data) - end


# ---------------------------------------------------------------------------------------------- keyframes


def test_keyframe_rejects_mismatched_arrays(keyframes):
    kf = keyframes[0]
    with pytest.raises(ValueError, match="image"):
        replace(kf, image=kf.image[:-1])
    with pytest.raises(ValueError, match="confidence"):
        replace(kf, confidence=np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match="pose"):
        replace(kf, pose_c2w=np.eye(3))
    with pytest.raises(ValueError, match="intrinsics"):
        replace(kf, intrinsics=np.array([0.0, 1.0, 2.0, 3.0]))


def test_neighbours_are_the_closest_viewpoints_at_any_scale(keyframes):
    neighbours = nearest_neighbours(keyframes, 2)
    assert neighbours[0] == [1, 2]
    assert sorted(neighbours[7]) == [6, 8]
    scaled = [rescaled(kf, 7.0) for kf in keyframes]
    assert nearest_neighbours(scaled, 4) == nearest_neighbours(keyframes, 4)


# ---------------------------------------------------------------------------------------------- point clouds


def test_fused_points_lie_on_the_room_surfaces(keyframes, room, surface):
    cloud = fuse_point_cloud(keyframes, voxel_size=None, max_points=None)
    pixels = sum(kf.depth.size for kf in keyframes)
    assert len(cloud) > 0.9 * pixels  # exact depths are consistent almost everywhere
    assert cloud.points.dtype == np.float32 and cloud.colours.dtype == np.uint8
    size = np.array(room.layout.size)
    assert np.all(cloud.points > -0.01) and np.all(cloud.points < size + 0.01)

    voxel = 0.02
    downsampled = fuse_point_cloud(keyframes, voxel_size=voxel)
    assert 0.02 * len(cloud) < len(downsampled) < 0.2 * len(cloud)
    distance = surface_distance(surface, downsampled.points)
    assert np.percentile(distance, 99) < 0.5 * voxel
    assert distance.max() < voxel


def test_point_colours_are_the_pixels_colours(keyframes):
    kf = keyframes[3]
    cloud = fuse_point_cloud([kf], consistency_views=0, max_points=None)
    kept = ~_edges(kf.depth).reshape(-1)  # exact depth: a few pixels where three surfaces meet
    assert kept.mean() > 0.999 and np.array_equal(cloud.colours, kf.image.reshape(-1, 3)[kept])


def test_consistency_filter_removes_corrupted_depths(keyframes, surface):
    corrupted, bad = corrupt(keyframes[7], 0.3, seed=1)
    frames = keyframes[:7] + [corrupted] + keyframes[8:]
    masks = consistency_masks(frames, consistency_views=2)
    assert masks[7][bad].mean() < 0.02  # outliers removed
    assert masks[7][~bad].mean() > 0.9  # good pixels of the same keyframe kept
    assert np.mean([mask.mean() for k, mask in enumerate(masks) if k != 7]) > 0.9

    def outlier_fraction(cloud: PointCloud) -> float:
        distance = surface_distance(surface, cloud.points)
        return float(np.mean(distance > 0.05))

    assert outlier_fraction(fuse_point_cloud(frames, consistency_views=0, max_points=200_000)) > 0.01
    assert outlier_fraction(fuse_point_cloud(frames, consistency_views=2, max_points=200_000)) < 0.001


def test_averaging_the_agreeing_views_thins_surfaces_that_each_keyframe_misplaces(keyframes, surface):
    """Each keyframe's depth off by its own 1-3% (too near or too far, as a depth network errs
    per view) and 0.5% noise: every view's points confirm one another within the tolerance, so
    without averaging each wall is a slab as thick as the errors; with the agreeing views
    averaged the points lie several times nearer the true surfaces, and as many are kept."""
    rng = np.random.default_rng(3)
    errors = rng.choice([-1, 1], len(keyframes)) * rng.uniform(0.01, 0.03, len(keyframes))
    noisy = [
        replace(kf, depth=(kf.depth * (1 + e) * (1 + rng.normal(0, 0.005, kf.depth.shape))).astype(np.float32))
        for kf, e in zip(keyframes, errors)
    ]
    own = fuse_point_cloud(noisy, consistency_views=1, max_points=200_000)
    averaged = fuse_point_cloud(noisy, consistency_views=1, max_points=200_000, average_views=True)
    assert len(averaged) == len(own) > 100_000
    distances = [np.median(surface_distance(surface, cloud.points)) for cloud in (own, averaged)]
    assert distances[1] < 0.5 * distances[0], distances


def test_a_keyframe_s_scale_against_its_neighbours_undoes_its_depth_error(keyframes):
    """A keyframe whose depth is 8% too deep (its pose exact) measures 1 / 1.08 against exact
    neighbours, with noise on its depth; one with no shared view measures nothing."""
    rng = np.random.default_rng(5)
    deep = replace(keyframes[7], depth=(keyframes[7].depth * 1.08 * rng.normal(1, 0.01, keyframes[7].depth.shape)))
    factor = depth_scale_against(deep, keyframes[5:7] + keyframes[8:10], 0.0)
    assert factor == pytest.approx(1 / 1.08, rel=0.005)
    assert depth_scale_against(keyframes[7], keyframes[6:7], 0.0) == pytest.approx(1.0, abs=1e-3)
    far = np.eye(4)
    far[:3, 3] = (100.0, 0.0, 0.0)  # looks at nothing the keyframe sees
    assert depth_scale_against(deep, [replace(keyframes[6], pose_c2w=far)], 0.0) is None


def test_confidence_filter(keyframes):
    rng = np.random.default_rng(2)
    kf = replace(keyframes[0], confidence=rng.random(keyframes[0].depth.shape).astype(np.float32))
    confident = kf.confidence >= 0.5
    assert len(fuse_point_cloud([kf], min_confidence=0.5)) == np.count_nonzero(confident & ~_edges(kf.depth, confident))
    assert len(fuse_point_cloud([kf], min_confidence=0.0)) == kf.depth.size - _edges(kf.depth).sum()

    # unconfident pixels cannot vouch for others: one confident keyframe among unconfident ones
    # has no witnesses left
    zero = np.zeros(kf.depth.shape, np.float32)
    frames = [keyframes[0]] + [replace(other, confidence=zero) for other in keyframes[1:]]
    assert len(fuse_point_cloud(frames, consistency_views=2)) == 0
    assert len(fuse_point_cloud(frames, consistency_views=0)) == kf.depth.size - _edges(kf.depth).sum()


def test_invalid_depths_give_no_points(keyframes):
    depth = keyframes[0].depth.copy()
    depth[:100] = 0.0
    depth[100:110] = np.nan
    cloud = fuse_point_cloud([replace(keyframes[0], depth=depth)])
    assert len(cloud) == depth.size - 110 * depth.shape[1] - _edges(depth, np.isfinite(depth)).sum()
    assert np.all(np.isfinite(cloud.points))


def test_normals_face_the_camera_and_match_the_floor(keyframes):
    cloud = fuse_point_cloud(keyframes[:4], estimate_normals=True, voxel_size=0.02)
    assert cloud.normals is not None and cloud.normals.shape == cloud.points.shape
    floor = cloud.normals[cloud.points[:, 2] < 0.005]
    assert len(floor) > 100
    assert np.median(floor[:, 2]) > 0.99  # floor normals point up, towards the cameras


def test_voxel_downsample_averages_each_voxel():
    points = np.array([[0.01, 0.01, 0.01], [0.03, 0.05, 0.07], [0.15, 0.0, 0.0]], np.float32)
    colours = np.array([[0, 100, 200], [10, 110, 211], [255, 255, 255]], np.uint8)
    normals = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    result = voxel_downsample(PointCloud(points, colours, normals), 0.1)
    assert len(result) == 2
    np.testing.assert_allclose(result.points[0], [0.02, 0.03, 0.04], atol=1e-6)
    np.testing.assert_array_equal(result.colours, [[5, 105, 206], [255, 255, 255]])  # 205.5 rounds to even
    np.testing.assert_allclose(result.normals[0], [np.sqrt(0.5), np.sqrt(0.5), 0], atol=1e-6)


def test_voxel_sums_of_parts_merge_into_the_whole(keyframes):
    cloud = fuse_point_cloud(keyframes[:3], consistency_views=0, max_points=None, estimate_normals=True)
    whole = voxel_downsample(cloud, 0.04)
    cut = [0, 1000, 50_000, len(cloud)]
    parts = [
        VoxelSums.of(PointCloud(cloud.points[a:b], cloud.colours[a:b], cloud.normals[a:b]), 0.04)
        for a, b in zip(cut[:-1], cut[1:])
    ]
    merged = VoxelSums.merge(parts).means()
    np.testing.assert_allclose(merged.points, whole.points, atol=1e-6)
    assert np.abs(merged.colours.astype(int) - whole.colours).max() <= 1  # sums in another order
    np.testing.assert_allclose(merged.normals, whole.normals, atol=1e-5)
    with pytest.raises(ValueError, match="too small"):
        VoxelSums.of(cloud, 1e-6)
    added = parts[1].plus(parts[0]).plus(parts[2])  # each added to a larger one: the same sums
    np.testing.assert_array_equal(added.keys, VoxelSums.merge(parts).keys)
    np.testing.assert_allclose(added.means().points, whole.points, atol=1e-6)
    np.testing.assert_allclose(added.means().normals, whole.normals, atol=1e-5)
    assert np.abs(added.means().colours.astype(int) - whole.colours).max() <= 1
    assert parts[0].plus(VoxelSums.of(PointCloud.empty(), 0.04)).keys.tolist() == parts[0].keys.tolist()
    coarse = VoxelSums.of(cloud, 0.01).coarsened(4).means()  # re-binned sums: the cloud at 4x the voxel
    np.testing.assert_allclose(coarse.points, whole.points, atol=1e-5)
    assert np.abs(coarse.colours.astype(int) - whole.colours).max() <= 1
    nothing = VoxelSums.of(PointCloud.empty(), 0.04)  # a keyframe with no confident pixel
    assert len(nothing.keys) == 0 and len(VoxelSums.merge([nothing, parts[0]]).means()) == len(parts[0].keys)


def test_max_points_caps_the_cloud_reproducibly(keyframes):
    cloud = fuse_point_cloud(keyframes[:3], max_points=1000)
    assert len(cloud) == 1000
    again = fuse_point_cloud(keyframes[:3], max_points=1000)
    assert np.array_equal(cloud.points, again.points)
    assert subsample(cloud, 5000) is cloud


def test_empty_input_gives_an_empty_cloud():
    cloud = fuse_point_cloud([])
    assert len(cloud) == 0 and cloud.points.shape == (0, 3)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="num_neighbours"):
        PointCloudFuser(consistency_views=4, num_neighbours=3)
    with pytest.raises(ValueError, match="voxel_size"):
        PointCloudFuser(voxel_size=0.0)


# ---------------------------------------------------------------------------------------------- incremental


def test_incremental_fuser_equals_batch(keyframes):
    settings = dict(voxel_size=0.05, estimate_normals=True)
    fuser = PointCloudFuser(**settings)
    chosen = keyframes[::2]
    for k in np.random.default_rng(3).permutation(len(chosen)):
        fuser.add(chosen[k])
        fuser.cloud()
    incremental = fuser.cloud()
    batch = fuse_point_cloud(chosen, **settings)
    assert np.array_equal(incremental.points, batch.points)
    assert np.array_equal(incremental.colours, batch.colours)
    assert np.array_equal(incremental.normals, batch.normals)

    fuser.sync(chosen[:3])
    assert fuser.ids == [0, 2, 4]
    assert np.array_equal(fuser.cloud().points, fuse_point_cloud(chosen[:3], **settings).points)


def test_fuser_recomputes_only_what_changed(keyframes):
    fuser = PointCloudFuser(num_neighbours=4)
    fuser.sync(keyframes)
    first = fuser.cloud()
    assert fuser.recomputed == len(keyframes)

    fuser.sync([replace(kf) for kf in keyframes])  # equal copies change nothing
    assert fuser.cloud() is first and fuser.recomputed == 0

    corrupted, _ = corrupt(keyframes[7], 0.5, seed=4)
    fuser.add(corrupted)
    changed = fuser.cloud()
    assert 1 < fuser.recomputed < len(keyframes) // 2  # the keyframe and those that test against it
    assert len(changed) < len(first)


def test_moving_poses_moves_the_points(keyframes):
    fuser = PointCloudFuser()
    fuser.sync(keyframes)
    before = fuser.cloud()
    motion = rigid_motion(0.3, (1.0, -2.0, 0.5))  # e.g. the backend re-anchoring the map
    fuser.sync([replace(kf, pose_c2w=motion @ kf.pose_c2w) for kf in keyframes])
    after = fuser.cloud()
    assert fuser.recomputed == len(keyframes)
    expected = before.points @ motion[:3, :3].T + motion[:3, 3]
    assert abs(len(after) - len(before)) < 1e-4 * len(before)  # rounding may flip a borderline pixel
    distance = surface_distance(cKDTree(after.points), expected, bound=1e-3)
    assert np.mean(distance < 1e-4) > 0.9999

    lone = PointCloudFuser(consistency_views=0)
    lone.add(keyframes[2])
    start = lone.cloud().points
    lone.add(replace(keyframes[2], pose_c2w=rigid_motion(0.0, (0.5, 0.0, 0.0)) @ keyframes[2].pose_c2w))
    np.testing.assert_allclose(lone.cloud().points - start, np.tile([0.5, 0.0, 0.0], (len(start), 1)), atol=1e-5)


# ---------------------------------------------------------------------------------------------- meshes


def test_mesh_lies_on_the_surfaces_and_has_colours(keyframes, surface):
    mesh = fuse_mesh(keyframes)
    vertices = np.asarray(mesh.vertices)
    assert len(vertices) > 5000 and len(mesh.triangles) > 5000
    voxel = np.median(np.concatenate([kf.depth.ravel() for kf in keyframes])) / AUTO_VOXELS_PER_MEDIAN_DEPTH
    distance = surface_distance(surface, vertices)
    assert np.median(distance) < 0.25 * voxel
    assert np.mean(distance < voxel) > 0.9
    assert np.percentile(distance, 99) < 4 * voxel  # within the truncation distance
    assert mesh.has_vertex_colors() and mesh.has_vertex_normals()
    colours = np.asarray(mesh.vertex_colors)
    assert colours.shape == vertices.shape and colours.min() >= 0.0 and colours.max() <= 1.0 + 1e-6
    assert colours.std(axis=0).min() > 0.05


def test_mesh_voxel_size_follows_the_scene_scale(keyframes):
    """Monocular depth has an arbitrary scale: the same scene 10 times larger gives the same mesh,
    10 times larger."""
    scale = 10.0
    scaled = [rescaled(kf, scale) for kf in keyframes[:6]]
    small, large = fuse_mesh(keyframes[:6]), fuse_mesh(scaled)
    assert abs(len(large.vertices) - len(small.vertices)) < 0.02 * len(small.vertices)
    extent_small = np.ptp(np.asarray(small.vertices), axis=0)
    np.testing.assert_allclose(np.ptp(np.asarray(large.vertices), axis=0), scale * extent_small, rtol=0.02)


def test_mesh_masks_unconfident_depth(keyframes):
    half = np.zeros(keyframes[0].depth.shape, np.float32)
    half[:, : half.shape[1] // 2] = 1.0
    full = fuse_mesh(keyframes[:4])
    left = fuse_mesh([replace(kf, confidence=half) for kf in keyframes[:4]])
    assert 0 < len(left.vertices) < 0.8 * len(full.vertices)
    nothing = fuse_mesh([replace(kf, confidence=np.zeros_like(half)) for kf in keyframes[:4]])
    assert len(nothing.vertices) == 0 and len(nothing.triangles) == 0


def test_mesh_of_one_keyframe_and_of_none(keyframes):
    single = fuse_mesh(keyframes[:1])  # the weight threshold is capped at the number of keyframes
    assert len(single.triangles) > 1000
    assert len(fuse_mesh([]).vertices) == 0


def test_mesh_leaves_out_a_keyframe_that_touches_no_block(keyframes):
    """Open3D refuses to integrate a view whose few depths touch no TSDF block (a keyframe with a
    single confident pixel, as a driving run produced); the mesh is built from the others."""
    lone = np.zeros(keyframes[1].depth.shape, np.float32)
    lone[10, 10] = 1.0
    with_lone = fuse_mesh([keyframes[0], replace(keyframes[1], confidence=lone)])
    alone = len(fuse_mesh(keyframes[:1]).triangles)
    assert alone > 1000 and abs(len(with_lone.triangles) - alone) < 0.01 * alone  # the voxel size moves a hair


def test_tsdf_prune_erases_only_unseen_light_blocks_and_keeps_the_mesh(keyframes):
    """A phantom surface seen once (a keyframe's depth 60% too far) stays in the volume as light
    blocks; once out of sight for ``stale_after`` integrations, pruning erases them and the mesh
    is the same triangle for triangle."""
    voxel = keyframes[0].median_depth / 50
    volume = TsdfVolume(voxel, 4 * voxel, 10.0)
    for keyframe in keyframes[:10]:
        volume.integrate(keyframe, keyframe.depth)
    assert volume.prune(stale_after=1) > 0  # glimpses of the first keyframes, not seen again
    phantom = replace(keyframes[10], depth=keyframes[10].depth * np.float32(1.6), id=99)
    volume.integrate(phantom, phantom.depth)
    assert volume.prune(stale_after=2) == 0  # the phantom was just seen: it may yet be confirmed
    for keyframe in keyframes[11:]:
        volume.integrate(keyframe, keyframe.depth)
    blocks, mesh = volume.blocks, volume.mesh()
    assert volume.prune(stale_after=len(keyframes)) == 0  # nothing has gone unseen that long
    pruned = volume.prune(stale_after=3)
    assert pruned > 0.1 * blocks and volume.blocks == blocks - pruned
    after = volume.mesh()
    assert len(after.triangles) == len(mesh.triangles) > 5000
    np.testing.assert_array_equal(
        np.sort(np.asarray(after.vertices), axis=0), np.sort(np.asarray(mesh.vertices), axis=0)
    )
    assert volume.prune(stale_after=3) == 0


def test_mesh_consistency_option_drops_outliers(keyframes, surface):
    corrupted, _ = corrupt(keyframes[2], 0.3, seed=5)
    frames = keyframes[:2] + [corrupted] + keyframes[3:6]

    def far_fraction(mesh) -> float:
        distance = surface_distance(surface, np.asarray(mesh.vertices))
        return float(np.mean(distance > 0.03))

    assert far_fraction(fuse_mesh(frames, consistency_views=2, min_weight=1)) < 0.7 * far_fraction(
        fuse_mesh(frames, min_weight=1)
    )


# ---------------------------------------------------------------------------------------------- writers


def test_point_cloud_ply_round_trips_through_open3d(keyframes, tmp_path):
    cloud = fuse_point_cloud(keyframes[:3], voxel_size=0.02, estimate_normals=True)
    path = tmp_path / "out" / "points.ply"
    write_point_cloud_ply(path, cloud)
    header, _ = ply_header(path)
    assert "format binary_little_endian 1.0" in header
    read = o3d.io.read_point_cloud(str(path))
    np.testing.assert_array_equal(np.asarray(read.points), cloud.points.astype(np.float64))
    np.testing.assert_allclose(np.asarray(read.colors) * 255, cloud.colours, atol=1e-6)
    np.testing.assert_allclose(np.asarray(read.normals), cloud.normals, atol=1e-7)

    write_point_cloud_ply(path, PointCloud(cloud.points, cloud.colours))
    assert not o3d.io.read_point_cloud(str(path)).has_normals()


def test_mesh_ply_round_trips_through_open3d(keyframes, tmp_path):
    mesh = fuse_mesh(keyframes[:3])
    path = tmp_path / "mesh.ply"
    write_mesh_ply(path, mesh)
    read = o3d.io.read_triangle_mesh(str(path))
    np.testing.assert_allclose(np.asarray(read.vertices), np.asarray(mesh.vertices), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(read.triangles), np.asarray(mesh.triangles))
    np.testing.assert_allclose(np.asarray(read.vertex_colors), np.asarray(mesh.vertex_colors), atol=0.5 / 255 + 1e-6)


def test_empty_cloud_and_mesh_write_valid_files_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    write_point_cloud_ply(tmp_path / "points.ply", fuse_point_cloud([]))
    write_mesh_ply(tmp_path / "mesh.ply", fuse_mesh([]))
    header, body = ply_header(tmp_path / "points.ply")
    assert header[0] == "ply" and "element vertex 0" in header and body == 0
    header, body = ply_header(tmp_path / "mesh.ply")
    assert "element vertex 0" in header and "element face 0" in header and body == 0
    assert len(o3d.io.read_point_cloud(str(tmp_path / "points.ply")).points) == 0
    assert len(o3d.io.read_triangle_mesh(str(tmp_path / "mesh.ply")).vertices) == 0
    assert sum("empty" in record.message for record in caplog.records) == 2


def test_unwritable_path_raises_export_error(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ExportError, match="taken"):
        write_point_cloud_ply(tmp_path / "taken", fuse_point_cloud([]))
    with pytest.raises(ExportError, match="taken"):
        write_depth_png(tmp_path / "taken", np.ones((4, 4), np.float32))


def test_depth_png_round_trip(keyframes, tmp_path, caplog):
    depth = keyframes[0].depth.copy()
    depth[0, :5] = [0.0, np.nan, -1.0, np.inf, 20.0]  # invalid, and too far for 16 bits at 5000/m
    path = tmp_path / "depth" / "000000.png"
    with caplog.at_level(logging.WARNING):
        write_depth_png(path, depth)
    assert "do not fit" in caplog.text
    read = read_depth(path)
    assert read.shape == depth.shape
    np.testing.assert_array_equal(read[0, :5], 0.0)
    np.testing.assert_allclose(read[1:], depth[1:], atol=0.5 / 5000 + 1e-6)


# ---------------------------------------------------------------------------------------------- streaming


def test_streaming_fusion_equals_batch_fusion_of_the_same_keyframes(keyframes):
    """Keyframes fused one at a time (each checked against all the others) give exactly the
    batch cloud, and the TSDF mesh of the same keyframes at the sizes the first ones fixed."""
    config = FusionConfig(min_confidence=0.5, consistency_views=2, voxel_size=0.02)
    fusion = StreamingFusion(config)
    for keyframe in keyframes:
        fusion.add(keyframe, keyframes)
    assert len(fusion) == len(keyframes) and fusion.fused(3)
    cloud = fusion.cloud(max_points=None)
    batch = fuse_point_cloud(
        keyframes,
        min_confidence=0.5,
        consistency_views=2,
        voxel_size=0.02,
        max_points=None,
        average_views=config.average_views,
    )
    assert len(cloud) > 10_000
    np.testing.assert_allclose(cloud.points, batch.points, atol=1e-6)
    assert np.array_equal(cloud.colours, batch.colours)

    scale = fusion.scale
    assert scale.scene == pytest.approx(np.median([kf.median_depth for kf in keyframes]))
    assert scale.tsdf_voxel == pytest.approx(scale.scene / config.mesh_resolution)
    mesh = fusion.mesh()
    expected = fuse_mesh(
        keyframes,
        voxel_length=scale.tsdf_voxel,
        sdf_trunc=scale.tsdf_truncation,
        depth_max=scale.depth_max,
        min_confidence=0.5,
    )
    assert len(mesh.triangles) > 5000 and len(mesh.triangles) == len(expected.triangles)

    def sorted_rows(vertices) -> np.ndarray:  # Open3D's vertex order follows its hash map
        vertices = np.asarray(vertices)
        return vertices[np.lexsort(vertices.T)]

    np.testing.assert_allclose(sorted_rows(mesh.vertices), sorted_rows(expected.vertices), atol=1e-6)
    with pytest.raises(ValueError, match="fused already"):
        fusion.add(keyframes[0], keyframes)


def test_streaming_reads_of_live_keyframes_leave_the_fused_state_as_it_is(keyframes):
    fusion = StreamingFusion(FusionConfig(point_resolution=100.0))
    assert len(fusion.cloud()) == 0 and len(fusion.mesh().triangles) == 0
    assert len(fusion.cloud(keyframes[:3])) > 1000  # nothing fused yet: the live keyframes alone
    for keyframe in keyframes[:8]:
        fusion.add(keyframe, keyframes[:10])
    fused_points, fused_triangles = len(fusion.cloud()), len(fusion.mesh().triangles)
    assert len(fusion.cloud(keyframes[:8])) == fused_points  # fused keyframes are not added twice
    assert len(fusion.cloud(keyframes)) > fused_points
    assert len(fusion.mesh(keyframes[6:]).triangles) > fused_triangles
    assert len(fusion.cloud()) == fused_points and len(fusion.mesh().triangles) == fused_triangles
    assert len(fusion) == 8
    assert fusion.scale.point_voxel == pytest.approx(fusion.scale.scene / 100.0)


def test_streaming_sizes_follow_the_scene_scale(keyframes):
    small, large = StreamingFusion(FusionConfig()), StreamingFusion(FusionConfig())
    small.add(keyframes[0], keyframes[:4])
    large.add(rescaled(keyframes[0], 10.0), [rescaled(kf, 10.0) for kf in keyframes[:4]])
    for name in ("scene", "point_voxel", "tsdf_voxel", "tsdf_truncation", "depth_max"):
        assert getattr(large.scale, name) == pytest.approx(10.0 * getattr(small.scale, name)), name


def test_streaming_cloud_keeps_to_its_budget_by_coarsening(keyframes, surface):
    fusion = StreamingFusion(FusionConfig(max_points=5000, mesh=False))
    for keyframe in keyframes:
        fusion.add(keyframe, keyframes)
    cloud = fusion.cloud()
    assert 5000 / 8 < len(cloud) <= 5000
    assert fusion.scale.point_voxel >= 2 * fusion.scale.scene / FusionConfig().point_resolution
    assert np.median(surface_distance(surface, cloud.points)) < fusion.scale.point_voxel


# ---------------------------------------------------------------------------------------------- depth edges


def _edges(depth: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The flying pixels fusion leaves out of ``depth`` where ``valid`` (default: everywhere)."""
    valid = np.ones(depth.shape, bool) if valid is None else valid & np.isfinite(depth)
    return depth_edges(np.where(valid, depth, 0).astype(np.float32), EDGE_STEP)


def _edge_keyframe(ramp: int) -> FusionKeyframe:
    """A 60 x 80 keyframe seeing a wall 1 m away on its left half and one 3 m away on its right,
    its depth blending the two over ``ramp`` pixels in inverse depth (as a network's depth does
    at an edge: flying pixels, on neither surface)."""
    inverse = np.where(np.arange(80) < 40, 1.0, 1 / 3).astype(np.float32)
    if ramp:
        inverse[40 - ramp // 2 : 40 + ramp - ramp // 2] = np.linspace(1.0, 1 / 3, ramp + 2)[1:-1]
    depth = np.tile(1.0 / inverse, (60, 1)).astype(np.float32)
    image = np.full((60, 80, 3), 128, np.uint8)
    return FusionKeyframe(image, depth, None, np.eye(4), np.array([60.0, 60.0, 40.0, 30.0]), 0.0, 0)


@pytest.mark.parametrize("ramp", [0, 2, 4])
def test_flying_pixels_at_a_depth_edge_stay_out_of_the_cloud_and_the_surfaces_stay(ramp):
    fuser = PointCloudFuser(consistency_views=0)
    fuser.add(_edge_keyframe(ramp))
    z = fuser.cloud().points[:, 2]
    assert not ((z > 1.02) & (z < 2.9)).any(), np.unique(np.round(z, 2))
    assert (np.abs(z - 1.0) < 0.01).sum() > 0.8 * 60 * 40 - 60 * 6 and (np.abs(z - 3.0) < 0.03).sum() > 0.8 * 60 * 34


def test_depth_edges_are_the_pixels_between_two_surfaces_not_the_surfaces_or_noise():
    for ramp in (2, 4):  # the blend's pixels, and none of the walls'
        edges = depth_edges(_edge_keyframe(ramp).depth, EDGE_STEP)
        assert edges[2:-2, 40 - ramp // 2 : 40 + ramp - ramp // 2].all() and edges.sum() == 60 * ramp, ramp
    assert not depth_edges(_edge_keyframe(0).depth, EDGE_STEP).any()  # a clean step: both sides are surfaces
    slanted = 1.0 / (0.5 + 0.004 * np.arange(80, dtype=np.float32))  # a floor's inverse depth: affine in the pixel
    assert not depth_edges(np.tile(slanted, (60, 1)), EDGE_STEP).any()
    rng = np.random.default_rng(3)  # a wall with 30% of its depths wrong: the outliers' neighbours stay
    noisy = np.ones((60, 80), np.float32)
    bad = rng.random(noisy.shape) < 0.3
    noisy[bad] *= rng.uniform(0.5, 2.0, bad.sum()).astype(np.float32)
    assert depth_edges(noisy, EDGE_STEP)[~bad].mean() < 0.01
