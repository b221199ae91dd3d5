"""Fusion as the run goes: keyframes whose pose and depth are final are fused into a
voxel-averaged point cloud and a TSDF volume one at a time, so that the map can drop their
pixels. Memory then grows with the volume mapped, not with the length of the run.

The cloud and the mesh of the whole map are what has been fused so far plus the keyframes not yet
final ("live"), fused on request without changing the stored state (:meth:`StreamingFusion.cloud`
and :meth:`StreamingFusion.mesh`). At the end of a run every keyframe is final and fused.

Scale: the map's scale is arbitrary (monocular). The first keyframes fused fix the scene scale,
the median of their median depths; the voxel sizes and the TSDF's depth limit are set from it
then and kept (a volume cannot change its voxels), see :class:`~slam.config.schema.FusionConfig`.

Every method is thread-safe: the backend adds keyframes while an export or the viewer reads.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from slam.config.schema import FusionConfig
from slam.mapping.fusion import (
    AUTO_TRUNCATION_VOXELS,
    FusionKeyframe,
    TsdfVolume,
    keyframe_points,
)
from slam.mapping.point_cloud import PointCloud, VoxelSums, subsample

if TYPE_CHECKING:
    import open3d

log = logging.getLogger(__name__)

#: keyframes each keyframe's points are checked against (the nearest viewpoints among those given)
NUM_NEIGHBOURS = 6
#: the newest keyframes' voxel sums are added to the rest once they pass this share of the
#: cloud's budget (each addition copies the rest once)
PENDING_SHARE = 16
#: keyframes between two prunings of the TSDF volume, and the keyframes a block must have gone
#: unseen for to be pruned (see TsdfVolume.prune)
PRUNE_EVERY = 10


@dataclass(frozen=True)
class FusionScale:
    """Sizes fixed by the first keyframes fused, in the map's units: the scene scale (median
    keyframe depth), the point cloud's voxel (which doubles when the cloud outgrows its budget),
    and the TSDF's voxel, truncation and depth limit."""

    scene: float
    point_voxel: float
    tsdf_voxel: float
    tsdf_truncation: float
    depth_max: float

    @classmethod
    def of(cls, keyframes: Sequence[FusionKeyframe], config: FusionConfig) -> FusionScale:
        """The sizes for a map whose first keyframes are ``keyframes`` (at least one)."""
        scene = float(np.median([kf.median_depth for kf in keyframes]))
        point_voxel = config.voxel_size if config.voxel_size is not None else scene / config.point_resolution
        tsdf_voxel = scene / config.mesh_resolution
        return cls(scene, point_voxel, tsdf_voxel, AUTO_TRUNCATION_VOXELS * tsdf_voxel, config.mesh_depth_limit * scene)


class StreamingFusion:
    """The map's fused geometry, built keyframe by keyframe (see the module docstring).

    Points: each keyframe's confident pixels that at least ``config.consistency_views`` of its
    :data:`NUM_NEIGHBOURS` nearest witnesses confirm (see :func:`slam.mapping.fusion.keyframe_points`),
    averaged per voxel of ``point_voxel``; when the cloud outgrows ``config.max_points`` voxels,
    the voxel doubles (the sums are re-binned exactly), so that a long run's noise and drift
    cannot grow it without bound. Mesh: each keyframe's confident depth integrated into the TSDF
    volume (when ``config.mesh``), whose blocks that stay too light to reach the mesh are pruned
    once out of sight (see :meth:`TsdfVolume.prune`). Memory: 36 bytes per point voxel, at most
    ``config.max_points`` of them plus the newest keyframes' (added to the rest once they pass
    1/:data:`PENDING_SHARE` of the budget), and the TSDF's blocks (10 KB each; they grow with the
    surface seen by several keyframes).
    """

    def __init__(self, config: FusionConfig):
        if config.mesh:  # Open3D takes seconds to import: now, rather than in the middle of a run
            importlib.import_module("open3d")
        self.config = config
        self.scale: FusionScale | None = None
        self._lock = threading.Lock()
        self._fused_ids: set[int] = set()
        self._merged: VoxelSums | None = None  # sums of most of the fused points
        self._pending: list[VoxelSums] = []  # sums of the newest keyframes, not yet in _merged
        self._volume: TsdfVolume | None = None

    def __len__(self) -> int:
        """Keyframes fused so far."""
        with self._lock:
            return len(self._fused_ids)

    def fused(self, keyframe_id: int) -> bool:
        """Whether keyframe ``keyframe_id`` is fused into the stored state."""
        with self._lock:
            return keyframe_id in self._fused_ids

    def add(self, keyframe: FusionKeyframe, witnesses: Sequence[FusionKeyframe]) -> None:
        """Fuse ``keyframe`` (its pose and depth final), its points checked against its nearest
        ``witnesses`` (other keyframes, final or not). Adding a keyframe twice raises ValueError."""
        with self._lock:
            if keyframe.id in self._fused_ids:
                raise ValueError(f"keyframe {keyframe.id} is fused already")
            self._add(keyframe, witnesses)

    def _add(self, keyframe: FusionKeyframe, witnesses: Sequence[FusionKeyframe]) -> None:
        if self.scale is None:
            self.scale = FusionScale.of([keyframe, *(kf for kf in witnesses if kf.id != keyframe.id)], self.config)
            if self.config.mesh:
                self._volume = TsdfVolume(self.scale.tsdf_voxel, self.scale.tsdf_truncation, self.scale.depth_max)
        self._pending.append(VoxelSums.of(self._points(keyframe, witnesses), self.scale.point_voxel))
        if sum(len(p.keys) for p in self._pending) > self.config.max_points // PENDING_SHARE:
            self._merge_pending()
        if self._volume is not None:
            if self._integrate(self._volume, keyframe) and self._volume.integrated % PRUNE_EVERY == 0:
                pruned = self._volume.prune(stale_after=PRUNE_EVERY)
                log.debug("TSDF: %d blocks pruned, %d held", pruned, self._volume.blocks)
        self._fused_ids.add(keyframe.id)

    def _merge_pending(self) -> None:
        """Add the newest keyframes' sums to the rest; beyond the budget, a twice coarser grid
        (the caller holds the lock)."""
        pending = VoxelSums.merge(self._pending)
        self._merged = pending if self._merged is None else self._merged.plus(pending)
        self._pending = []
        while len(self._merged.keys) > self.config.max_points:  # over budget: a twice coarser grid
            self._merged = self._merged.coarsened(2)
            assert self.scale is not None  # fixed by the first _add, before anything was pending
            self.scale = replace(self.scale, point_voxel=self._merged.voxel_size)
            log.info(
                "the point cloud outgrew %d points: voxel now %.4g", self.config.max_points, self.scale.point_voxel
            )

    def _integrate(self, volume: TsdfVolume, keyframe: FusionKeyframe) -> bool:
        return volume.integrate(keyframe, keyframe.masked_depth(self.config.min_confidence))

    def _points(self, keyframe: FusionKeyframe, witnesses: Sequence[FusionKeyframe]) -> PointCloud:
        config = self.config
        return keyframe_points(
            keyframe,
            witnesses,
            config.min_confidence,
            config.consistency_views,
            NUM_NEIGHBOURS,
            average_views=config.average_views,
        )

    def close(self) -> None:
        """Free the TSDF volume (the mesh of what was fused is empty afterwards). Call it when
        the run's outputs are written: Open3D counts memory still held when the interpreter
        exits as a leak, and makes the process exit with status 1."""
        with self._lock:
            self._volume = None

    def _live(self, keyframes: Sequence[FusionKeyframe]) -> list[FusionKeyframe]:
        """Those of ``keyframes`` not fused yet (the caller holds the lock)."""
        return [kf for kf in keyframes if kf.id not in self._fused_ids]

    def _sizes(self, live: Sequence[FusionKeyframe]) -> FusionScale | None:
        """The sizes fixed so far, or those the ``live`` keyframes would fix when nothing is
        fused yet; None when there is neither (the caller holds the lock)."""
        return self.scale or (FusionScale.of(live, self.config) if live else None)

    def cloud(self, keyframes: Sequence[FusionKeyframe] = (), max_points: int | None = None) -> PointCloud:
        """The fused cloud (world frame, one point per voxel) plus the points of ``keyframes``
        not fused yet, each checked against all of ``keyframes`` (pass the map's keyframes that
        still hold their pixels); at most ``max_points`` points (None: ``config.max_points``; a
        fixed pseudo-random subset beyond). The stored state is unchanged."""
        with self._lock:
            live = self._live(keyframes)
            scale = self._sizes(live)
            if scale is None:
                return PointCloud.empty()
            parts = ([] if self._merged is None else [self._merged]) + self._pending
            parts += [VoxelSums.of(self._points(kf, keyframes), scale.point_voxel) for kf in live]
        return subsample(VoxelSums.merge(parts).means(), max_points or self.config.max_points)

    def mesh(self, keyframes: Sequence[FusionKeyframe] = ()) -> open3d.geometry.TriangleMesh:
        """The TSDF mesh of the fused keyframes plus ``keyframes`` not fused yet (see
        :class:`~slam.mapping.fusion.TsdfVolume`; surfaces seen by fewer than 3 keyframes are dropped).
        The stored state is unchanged (the live keyframes go into a copy of the volume)."""
        import open3d as o3d

        with self._lock:
            live = self._live(keyframes)
            volume = self._volume
            if volume is None:
                if not live or not self.config.mesh:
                    return o3d.geometry.TriangleMesh()
                scale = self._sizes(live)
                assert scale is not None  # live is not empty here
                volume = TsdfVolume(scale.tsdf_voxel, scale.tsdf_truncation, scale.depth_max)
            elif live:
                volume = volume.copy()
            for keyframe in live:
                self._integrate(volume, keyframe)
            return volume.mesh()
