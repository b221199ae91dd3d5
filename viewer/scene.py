"""What every viewer draws, read from a running SLAM loop without blocking it.

:class:`LiveScene` polls a :class:`slam.system.run.RunControl` (typically 4 times a second, from the
viewer's thread) and returns a :class:`SceneState`: the trajectory, the current camera and the
keyframe poses, the fused coloured point cloud, the ground truth aligned to the estimate, the
newest frame with its tracking status, the newest keyframe's depth and the run's numbers.

Cost on the tracking thread: each poll takes one trajectory-only map snapshot
(``with_images=False``: poses only) under the map's lock, and copies the arrays of keyframes that
are new or whose depth the backend replaced (usually none or one). The cloud is what the run has
fused (final keyframes, see slam.mapping.streaming) and the newest keyframes, fused on the viewer's side
by an incremental :class:`slam.mapping.fusion.PointCloudFuser` at half resolution (every second pixel, a
quarter of the points and of the cost); it is refreshed at most every ``cloud_interval`` seconds
and capped at ``max_points`` for drawing.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal, overload

import numpy as np

from slam.errors import TrajectoryError
from slam.evaluation.trajectory import associate_and_align
from slam.io.trajectory import Trajectory
from slam.mapping.fusion import FusionKeyframe, PointCloudFuser
from slam.mapping.point_cloud import PointCloud, subsample
from slam.system.map import MapSnapshot, MapState
from slam.system.run import RunControl
from viewer.depth_colors import colorize_depth

#: pixel step of the keyframes fused for display (2: every second row and column)
DISPLAY_PIXEL_STEP = 2
#: largest share of the time the viewer's map snapshots may take (they hold the map's lock,
#: which tracking needs): snapshots are spaced out when they grow slow on a long run
MAX_MAP_SHARE = 0.03


@dataclasses.dataclass
class LiveStats:
    """The run's numbers: input frames processed, keyframes, frames lost (blank ones included),
    blank frames (black, saturated or textureless: never tracked or mapped), relocalizations (losses
    recovered in the same map), map segments (cold starts) and those a loop joined to the one
    before, loops closed (accepted), frontend and end-to-end frames per second (None before the
    first frame), points drawn, resident memory of the process in MiB, and whether the run is
    paused or done."""

    frames: int = 0
    keyframes: int = 0
    lost: int = 0
    blank: int = 0
    relocalizations: int = 0
    segments: int = 0
    segments_joined: int = 0
    loops: int = 0
    frontend_fps: float | None = None
    end_to_end_fps: float | None = None
    points: int = 0
    memory_mb: float = 0.0
    paused: bool = False
    done: bool = False

    def lines(self) -> list[str]:
        """Human-readable lines, one number each."""

        def fps(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        state = "finished" if self.done else "paused" if self.paused else "running"
        return [
            f"run        {state}",
            f"frames     {self.frames}",
            f"keyframes  {self.keyframes}",
            f"lost       {self.lost}",
            f"blank      {self.blank}",
            f"recovered  {self.relocalizations}",
            f"segments   {self.segments}" + (f" ({self.segments_joined} joined)" if self.segments_joined else ""),
            f"loops      {self.loops}",
            f"frontend   {fps(self.frontend_fps)} fps",
            f"end to end {fps(self.end_to_end_fps)} fps",
            f"points     {self.points:,}",
            f"memory     {self.memory_mb:,.0f} MB",
        ]


@dataclasses.dataclass
class SceneState:
    """One picture's worth of the run. Positions are in the map's world frame (the first
    keyframe's camera frame, arbitrary monocular scale), poses camera-to-world.

    - ``trajectory``: (N, 3) camera centres of the tracked frames, in frame order.
    - ``current_pose_c2w``: (4, 4) the newest tracked frame's pose, or None.
    - ``keyframe_poses_c2w``: (K, 4, 4).
    - ``cloud``: the fused cloud (at most ``max_points`` points).
    - ``ground_truth``: (M, 3) ground-truth camera centres mapped into the map's frame by the
      Sim3 alignment of the estimate to the ground truth, or None (no ground truth, or too few
      poses to align yet).
    - ``frame``: the newest frame (H, W, 3) RGB at the processing resolution, or None;
      ``status``: its tracking status (tracked, keyframe, lost, blank, initialising, starting).
    - ``depth``: the newest keyframe's depth as (H, W, 3) RGB (turbo on inverse depth), or None.
    - ``intrinsics`` ``[fx, fy, cx, cy]`` and ``image_size`` (W, H): the processing camera.
    - ``scale``: the scene's depth scale (median depth of the newest keyframe), the least
      :meth:`extent`.
    """

    trajectory: np.ndarray
    current_pose_c2w: np.ndarray | None
    keyframe_poses_c2w: np.ndarray
    cloud: PointCloud
    ground_truth: np.ndarray | None
    frame: np.ndarray | None
    status: str
    depth: np.ndarray | None
    intrinsics: np.ndarray | None
    image_size: tuple[int, int] | None
    scale: float
    stats: LiveStats

    @classmethod
    def empty(cls, status: str = "starting") -> SceneState:
        return cls(
            np.zeros((0, 3)),
            None,
            np.zeros((0, 4, 4)),
            PointCloud.empty(),
            None,
            None,
            status,
            None,
            None,
            None,
            1.0,
            LiveStats(),
        )

    def ground_level(self) -> float:
        """World y of the ground grid: below the cameras, at the floor when the cloud shows
        one (the 95th percentile of the points' y; y points down)."""
        below_cameras = (self.trajectory[:, 1].max() if len(self.trajectory) else 0.0) + 0.5 * self.scale
        if len(self.cloud) < 100:
            return float(below_cameras)
        return float(max(below_cameras, np.percentile(self.cloud.points[:, 1], 95)))

    def _cloud_sample(self) -> np.ndarray:
        return self.cloud.points[:: max(1, len(self.cloud) // 5000)]

    def centre(self) -> np.ndarray:
        """(3,) the middle of what is drawn (median of the cloud and the trajectory)."""
        points = np.concatenate([self.trajectory, self._cloud_sample()])
        return np.median(points, axis=0) if len(points) else np.zeros(3)

    def extent(self) -> float:
        """Size of what is drawn: twice the larger of the 80th percentile of the cloud's
        distances to :meth:`centre` and the trajectory's farthest one (at least the scene scale)."""
        centre = self.centre()
        cloud = np.linalg.norm(self._cloud_sample() - centre, axis=1)
        path = np.linalg.norm(self.trajectory - centre, axis=1)
        radius = max(np.percentile(cloud, 80) if len(cloud) else 0.0, path.max() if len(path) else 0.0)
        return float(max(2 * radius, self.scale))

    def frustum_depths(self) -> tuple[float, float]:
        """How deep to draw the keyframes' and the current camera's frustums: a small share of
        :meth:`extent`, so that cameras stay visible at any zoom of the scene."""
        extent = self.extent()
        return 0.035 * extent, 0.06 * extent


class _KeyframeCache:
    """The viewer's copies of the arrays of the keyframes that hold their pixels, at display
    resolution, refreshed when the backend replaces a keyframe's depth (compared by tensor
    identity: the map stores new tensors on every update, it never writes into them) and dropped
    when the map releases a fused keyframe's pixels."""

    def __init__(self, step: int):
        self.step = step
        self.arrays: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # id -> image, depth, confidence
        self.newest_depth: np.ndarray | None = None  # full resolution, for the depth panel
        self._sources: dict[int, object] = {}  # id -> the depth tensor copied

    def refresh(self, map_state: MapState) -> bool:
        """Copy the arrays of keyframes new or changed since the last call and forget released
        ones; True when any was."""
        with map_state.lock:
            keyframes = map_state.keyframe_list()
            released = [kf.id for kf in keyframes if kf.released and kf.id in self._sources]
            changed = [kf for kf in keyframes if not kf.released and self._sources.get(kf.id) is not kf.depth]
            if not changed and not released:
                return False
            views = map_state.keyframe_views(changed)
            for kf in changed:
                self._sources[kf.id] = kf.depth
        for keyframe_id in released:
            del self._sources[keyframe_id], self.arrays[keyframe_id]
        step = self.step
        for view in views:
            # changed keyframes are not released and the views carry their pixels
            assert view.image is not None and view.depth is not None and view.confidence is not None
            self.arrays[view.id] = (
                view.image[::step, ::step],
                view.depth[::step, ::step],
                view.confidence[::step, ::step],
            )
        if views and views[-1].id == keyframes[-1].id:
            self.newest_depth = views[-1].depth
        return True


class LiveScene:
    """Polls a run for :class:`SceneState` pictures (use it from one thread)."""

    def __init__(
        self, control: RunControl, max_points: int = 40_000, cloud_interval: float = 3.0, min_interval: float = 0.1
    ):
        """``max_points``: cap on the cloud drawn. ``cloud_interval``: seconds between cloud
        (and ground-truth alignment) refreshes while the run goes on. ``min_interval``: seconds
        between map snapshots at least (more when a snapshot takes long: the viewer holds the
        map's lock for at most :data:`MAX_MAP_SHARE` of the time)."""
        self.control = control
        self.max_points = max_points
        self.cloud_interval = cloud_interval
        self.min_interval = min_interval
        self._snapshot: MapSnapshot | None = None
        self._snapshot_version = -1
        self._next_snapshot = -np.inf
        self._final_taken = False
        # the newest keyframe's depth, its colours and median
        self._depth_picture: tuple[np.ndarray | None, np.ndarray | None, float | None] = (None, None, None)
        self.state = SceneState.empty()
        self._cache = _KeyframeCache(DISPLAY_PIXEL_STEP)
        self._fuser: PointCloudFuser | None = None
        self._fused: tuple[int, PointCloud] = (0, PointCloud.empty())  # (keyframes fused, their cloud)
        self._key: tuple | None = None
        self._cloud_time = -np.inf
        self._cloud_stale = False
        self._gt_alignment: np.ndarray | None = None  # (4, 4) map-from-ground-truth similarity
        self._ended: float | None = None  # perf_counter() when the run was first seen done

    @overload
    def update(self, force: Literal[True]) -> SceneState: ...
    @overload
    def update(self, force: bool = False) -> SceneState | None: ...
    def update(self, force: bool = False) -> SceneState | None:
        """A new picture, or None when nothing changed since the last one (``force``: always a
        picture, from a fresh snapshot, with the cloud and alignment refreshed)."""
        control = self.control
        system = control.system
        done = control.done.is_set()
        if system is None:
            self.state = dataclasses.replace(self.state, status=control.status, stats=self._stats(0, 0, done))
            return self.state
        now = time.monotonic()
        snapshot_due = system.map.version != self._snapshot_version and now >= self._next_snapshot
        final = done and not self._final_taken  # the finished map, once
        if force or final or snapshot_due:
            self._final_taken |= final
            started = time.perf_counter()
            self._snapshot = system.snapshot(with_images=False)
            self._cloud_stale |= self._cache.refresh(system.map)
            spent = time.perf_counter() - started
            self._snapshot_version = self._snapshot.version
            self._next_snapshot = now + max(self.min_interval, spent / MAX_MAP_SHARE)
        snapshot, frame = self._snapshot, control.frame
        if snapshot is None:
            return None
        key = (snapshot.version, None if frame is None else frame.index, control.paused, done)
        cloud_due = self._cloud_stale and now - self._cloud_time >= self.cloud_interval
        if key == self._key and not force and not cloud_due:
            return None
        self._key = key
        cloud = self.state.cloud
        if force or cloud_due or final:
            cloud = self._fuse(system, snapshot)
            self._align_ground_truth(snapshot)
            self._cloud_time, self._cloud_stale = now, False
        poses = snapshot.frame_poses_c2w
        newest = self._cache.newest_depth
        if newest is not None and self._depth_picture[0] is not newest:
            valid = newest[newest > 0]
            self._depth_picture = (newest, colorize_depth(newest), float(np.median(valid)) if valid.size else None)
        _, depth_picture, scale = self._depth_picture
        self.state = SceneState(
            trajectory=poses[:, :3, 3].copy(),
            current_pose_c2w=poses[-1] if len(poses) else None,
            keyframe_poses_c2w=np.stack([kf.pose_c2w for kf in snapshot.keyframes])
            if snapshot.keyframes
            else np.zeros((0, 4, 4)),
            cloud=cloud,
            ground_truth=self._ground_truth_in_map(),
            frame=None if frame is None else frame.image,
            status=control.status,
            depth=depth_picture,
            intrinsics=system.processing_camera.intrinsics,
            image_size=system.processing_camera.size,
            scale=scale or system.config.frontend.init_depth,
            stats=self._stats(len(snapshot.keyframes), len(cloud), done),
        )
        return self.state

    def _fuse(self, system, snapshot: MapSnapshot) -> PointCloud:
        """The map's cloud: what the run has fused (recomputed only when more keyframes are)
        and the snapshot's keyframes not fused yet (poses from the snapshot, arrays from the
        cache), fused here at display resolution."""
        if self._fuser is None:
            fusion = system.config.fusion
            self._fuser = PointCloudFuser(
                min_confidence=fusion.min_confidence,
                consistency_views=fusion.consistency_views,
                max_points=self.max_points,
                average_views=fusion.average_views,
            )
        if self._fused[0] != len(system.fusion):
            count = len(system.fusion)
            self._fused = (count, system.fusion.cloud(max_points=self.max_points))
        intrinsics = np.asarray(system.processing_camera.intrinsics, dtype=np.float64) / DISPLAY_PIXEL_STEP
        keyframes = []
        for view in snapshot.keyframes:
            arrays = self._cache.arrays.get(view.id)
            if arrays is not None and not system.fusion.fused(view.id):
                keyframes.append(FusionKeyframe(*arrays, view.pose_c2w, intrinsics, view.timestamp, view.id))
        self._fuser.sync(keyframes)
        return subsample(PointCloud.concatenate([self._fused[1], self._fuser.cloud()]), self.max_points)

    def _align_ground_truth(self, snapshot: MapSnapshot) -> None:
        """Sim3-align the estimate to the ground truth seen so far (kept until the next call)."""
        record = self.control.record
        if record is None:  # no ground truth seen yet
            self._gt_alignment = None
            return
        count = min(len(record.timestamps), len(record.poses_gt))
        with_gt = [k for k in range(count) if record.poses_gt[k] is not None]
        if len(with_gt) < 3 or len(snapshot.frame_poses_c2w) < 3:
            self._gt_alignment = None
            return
        gt = Trajectory(
            np.array([record.timestamps[k] for k in with_gt]),
            np.stack([pose for k in with_gt if (pose := record.poses_gt[k]) is not None]),
        )
        try:
            aligned = associate_and_align(gt, Trajectory(snapshot.frame_timestamps, snapshot.frame_poses_c2w), "sim3")
        except TrajectoryError:
            self._gt_alignment = None
            return
        self._gt_alignment = np.linalg.inv(aligned.transform)

    def _ground_truth_in_map(self) -> np.ndarray | None:
        record = self.control.record
        if self._gt_alignment is None or record is None:
            return None
        count = min(len(record.timestamps), len(record.poses_gt))
        centres = np.array([pose[:3, 3] for pose in record.poses_gt[:count] if pose is not None])
        return centres @ self._gt_alignment[:3, :3].T + self._gt_alignment[:3, 3]

    def _stats(self, keyframes: int, points: int, done: bool) -> LiveStats:
        import psutil

        control, system = self.control, self.control.system
        record = control.record
        frames = len(record.indices) if record is not None else 0
        if done and self._ended is None:
            self._ended = time.perf_counter()
        now = self._ended if self._ended is not None else time.perf_counter()
        elapsed = now - control.started if control.started is not None else 0.0
        return LiveStats(
            frames=frames,
            keyframes=keyframes,
            lost=system.frontend.counts["lost"] if system is not None else 0,
            blank=system.frontend.counts["blank"] if system is not None else 0,
            relocalizations=system.frontend.counts["relocalizations"] if system is not None else 0,
            segments=system.frontend.counts["initialisations"] if system is not None else 0,
            segments_joined=system.loop_closer.segments_joined() if system is not None else 0,
            loops=len(system.loop_closer.edges) if system is not None else 0,
            frontend_fps=system.frames_processed / system.frontend_seconds
            if system is not None and system.frontend_seconds > 0
            else None,
            end_to_end_fps=frames / elapsed if frames and elapsed > 0 else None,
            points=points,
            memory_mb=psutil.Process().memory_info().rss / 2**20,
            paused=control.paused,
            done=done,
        )
