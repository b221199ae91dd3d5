"""Reference fusion for the tests: a whole set of keyframes fused at once, into a point cloud
(through :class:`slam.mapping.fusion.PointCloudFuser`) and into a TSDF mesh (through
:class:`slam.mapping.fusion.TsdfVolume`). The product fuses keyframes as they become final
(slam.mapping.streaming); the tests check it against these."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import open3d

from slam.mapping.fusion import (
    AUTO_TRUNCATION_VOXELS,
    AUTO_VOXELS_PER_MEDIAN_DEPTH,
    FusionKeyframe,
    PointCloudFuser,
    TsdfVolume,
    consistency_masks,
)
from slam.mapping.point_cloud import PointCloud

log = logging.getLogger(__name__)


def fuse_point_cloud(
    keyframes: Sequence[FusionKeyframe],
    min_confidence: float = 0.5,
    consistency_views: int = 2,
    num_neighbours: int = 6,
    max_reprojection_depth_error: float = 0.05,
    voxel_size: float | None = None,
    max_points: int | None = 2_000_000,
    estimate_normals: bool = False,
    average_views: bool = False,
) -> PointCloud:
    """The coloured world-frame cloud of the keyframes' confident, geometrically consistent
    pixels (see the module's docstring and :class:`PointCloudFuser` for the settings). Empty
    input gives an empty cloud."""
    ids = [kf.id for kf in keyframes]
    if len(set(ids)) != len(ids):
        raise ValueError(f"keyframe ids must be unique, got {ids}")
    fuser = PointCloudFuser(
        min_confidence,
        consistency_views,
        num_neighbours,
        max_reprojection_depth_error,
        voxel_size,
        max_points,
        estimate_normals,
        average_views,
    )
    for keyframe in keyframes:
        fuser.add(keyframe)
    return fuser.cloud()


def fuse_mesh(
    keyframes: Sequence[FusionKeyframe],
    voxel_length: float | None = None,
    sdf_trunc: float | None = None,
    voxels_per_median_depth: float = AUTO_VOXELS_PER_MEDIAN_DEPTH,
    depth_max: float | None = None,
    min_confidence: float = 0.5,
    min_weight: float = 3.0,
    consistency_views: int = 0,
    num_neighbours: int = 6,
    max_reprojection_depth_error: float = 0.05,
) -> open3d.geometry.TriangleMesh:
    """A coloured triangle mesh (world frame, vertex colours in [0, 1], vertex normals) from
    TSDF fusion of the keyframes' depths in an Open3D ``t.geometry.VoxelBlockGrid``.

    - ``voxel_length``: metres; None = median valid depth / ``voxels_per_median_depth``,
      so that a monocular map of any scale gets the same relative detail.
    - ``sdf_trunc``: truncation distance in metres; None = :data:`AUTO_TRUNCATION_VOXELS` voxels.
    - ``depth_max``: depths beyond it are ignored; None = no limit (the largest valid depth).
    - Pixels with confidence below ``min_confidence`` are masked out before integration; with
      ``consistency_views`` > 0, so are pixels failing the point cloud's consistency test.
    - ``min_weight``: surfaces seen by fewer keyframes are dropped (capped at the number of
      keyframes integrated, so that one keyframe still gives a mesh; a keyframe whose depth
      touches no voxel block is left out, as Open3D refuses it). Each keyframe adds weight 1 to the
      voxels it sees, and Open3D keeps voxels whose weight is strictly above its threshold, so
      the threshold passed is ``min_weight - 0.5``.

    Runs headless on the CPU. No valid depth gives an empty mesh.
    """
    import open3d as o3d

    if consistency_views > 0:
        masks = consistency_masks(
            keyframes, min_confidence, consistency_views, num_neighbours, max_reprojection_depth_error
        )
        depths = [np.where(mask, kf.depth, np.float32(0.0)) for kf, mask in zip(keyframes, masks)]
    else:
        depths = [kf.masked_depth(min_confidence) for kf in keyframes]
    valid = np.concatenate([d[d > 0] for d in depths]) if depths else np.zeros(0, np.float32)
    if valid.size == 0:
        log.debug("no valid depth to fuse into a mesh")
        return o3d.geometry.TriangleMesh()
    if voxel_length is None:
        voxel_length = float(np.median(valid)) / voxels_per_median_depth
    if sdf_trunc is None:
        sdf_trunc = AUTO_TRUNCATION_VOXELS * voxel_length
    volume = TsdfVolume(
        voxel_length, sdf_trunc, float(valid.max()) * 1.001 if depth_max is None else depth_max, min_weight
    )
    for keyframe, depth in zip(keyframes, depths):
        volume.integrate(keyframe, depth)
    return volume.mesh()
