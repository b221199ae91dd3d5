"""One SLAM run from a source to the output folder: trajectory.txt (TUM, camera-to-world, every
input frame), trajectory_kitti.txt for KITTI sources, groundtruth.txt where the source has
ground truth, points.ply, mesh.ply, stats.json and tracking.csv (each frame's status).

Whatever was computed is written even when the run stops early (Ctrl-C, a camera unplugged, a
corrupt file): the error is re-raised after the outputs are saved.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from slam import __version__
from slam.config import SystemConfig, processing_size
from slam.configuration import to_dict
from slam.export import write_mesh_ply, write_point_cloud_ply
from slam.fusion import fuse_mesh, fuse_point_cloud
from slam.sources.base import Source
from slam.map import MapSnapshot
from slam.system import SlamSystem, full_trajectory
from slam.system_info import machine_summary, peak_memory_mb
from slam.trajectory import Trajectory, write_kitti, write_tum

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunRecord:
    """What the loop saw of every input frame: index, timestamp, ground truth (camera-to-world)."""

    indices: list[int] = dataclasses.field(default_factory=list)
    timestamps: list[float] = dataclasses.field(default_factory=list)
    poses_gt: list[np.ndarray | None] = dataclasses.field(default_factory=list)
    dropped: int = 0


def run_slam(source: Source, config: SystemConfig, out_dir: str | Path, realtime: bool = False,
             on_frame: Callable[[SlamSystem], None] | None = None, save_depth: bool = False) -> dict:
    """Run the system on ``source`` and write the outputs to ``out_dir``. The source's resize
    option is replaced by the processing resolution. ``realtime`` drops frames whose timestamp
    the processing has fallen behind. ``on_frame`` is called after each frame (viewers).
    Returns the stats written to stats.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = processing_size(source.camera.width, source.camera.height, config.frontend.pixels)
    source.options = dataclasses.replace(source.options, resize=size)
    system = SlamSystem(config, source.output_camera)
    record = RunRecord()
    start = time.perf_counter()
    first_timestamp = None
    stopped_by: BaseException | None = None
    try:
        for frame in source:
            if realtime:
                first_timestamp = frame.timestamp if first_timestamp is None else first_timestamp
                if frame.timestamp - first_timestamp < time.perf_counter() - start - 0.1 and record.indices:
                    record.dropped += 1
                    continue
            record.indices.append(frame.index)
            record.timestamps.append(frame.timestamp)
            record.poses_gt.append(frame.pose_gt)
            system.process(frame)
            if on_frame is not None:
                on_frame(system)
    except (KeyboardInterrupt, Exception) as err:  # saved below, then re-raised
        stopped_by = err
        log.warning("run stopped early (%s); saving what was computed", err.__class__.__name__)
    try:
        system.finish()
    except Exception as err:  # the frontend's results are still saved
        log.error("finishing the run failed: %s", err)
        stopped_by = stopped_by or err
    stats = write_outputs(system, record, source, out, time.perf_counter() - start, save_depth)
    if stopped_by is not None:
        raise stopped_by
    return stats


def write_keyframe_depths(snapshot: MapSnapshot, out: Path) -> None:
    """``depth/NNNNNN.npy`` for each keyframe (float32 (H, W) depth in map units at the
    processing resolution, 0 = unknown; NNNNNN = the frame index) and ``keyframes.txt`` (TUM
    format: the keyframes' camera-to-world poses)."""
    folder = out / "depth"
    folder.mkdir(parents=True, exist_ok=True)
    for keyframe in snapshot.keyframes:
        np.save(folder / f"{keyframe.frame_index:06d}.npy", keyframe.depth.astype(np.float32))
    if snapshot.keyframes:
        write_tum(out / "keyframes.txt", Trajectory(np.array([kf.timestamp for kf in snapshot.keyframes]),
                                                    np.stack([kf.pose_c2w for kf in snapshot.keyframes])),
                  header="keyframes (depth maps in depth/), camera-to-world\ntimestamp tx ty tz qx qy qz qw")


def write_outputs(system: SlamSystem, record: RunRecord, source: Source, out: Path, wall_seconds: float,
                  save_depth: bool = False) -> dict:
    """Write every output file of the contract (and the keyframe depths with ``save_depth``), all
    from one snapshot of the map, and return the stats."""
    snapshot = system.snapshot()
    if save_depth:
        write_keyframe_depths(snapshot, out)
    indices, timestamps = np.array(record.indices, dtype=int), np.array(record.timestamps, dtype=np.float64)
    trajectory, tracked = full_trajectory(snapshot, indices, timestamps)
    write_tum(out / "trajectory.txt", trajectory,
              header="v2d estimate, camera-to-world, arbitrary scale (monocular)\ntimestamp tx ty tz qx qy qz qw")
    if source.kind == "kitti":
        write_kitti(out / "trajectory_kitti.txt", trajectory)
    with_gt = [k for k, pose in enumerate(record.poses_gt) if pose is not None]
    if with_gt:
        write_tum(out / "groundtruth.txt", Trajectory(timestamps[with_gt], np.stack([record.poses_gt[k] for k in with_gt])),
                  header="ground truth at the frame times, camera-to-world\ntimestamp tx ty tz qx qy qz qw")
    statuses = dict(zip(snapshot.frame_indices.tolist(), snapshot.frame_status))
    (out / "tracking.csv").write_text("index,timestamp,status\n" + "".join(
        f"{i},{t:.6f},{statuses.get(i, 'lost')}\n" for i, t in zip(indices.tolist(), timestamps.tolist())))

    fusion_start = time.perf_counter()
    keyframes = system.fusion_keyframes(snapshot)
    fusion = system.config.fusion
    cloud = fuse_point_cloud(keyframes, min_confidence=fusion.min_confidence, consistency_views=fusion.consistency_views,
                             voxel_size=fusion.voxel_size)
    write_point_cloud_ply(out / "points.ply", cloud)
    mesh_triangles = 0
    if fusion.mesh:
        median = float(np.median([kf.median_depth for kf in keyframes])) if keyframes else None
        mesh = fuse_mesh(keyframes, min_confidence=fusion.min_confidence, voxels_per_median_depth=fusion.mesh_resolution,
                         depth_max=None if median is None else fusion.mesh_depth_limit * median)
        write_mesh_ply(out / "mesh.ply", mesh)
        mesh_triangles = len(mesh.triangles)
    fusion_seconds = time.perf_counter() - fusion_start

    frames = len(indices)
    counts = system.frontend.counts
    stats = {
        "software_version": __version__,
        "source": source.describe(),
        "frames_read": frames + record.dropped,
        "frames_processed": frames,
        "frames_dropped_realtime": record.dropped,
        "frames_tracked": int(tracked.sum()),
        "frames_lost": int(frames - tracked.sum()),
        "keyframes": len(snapshot.keyframes),
        "initialisations": counts["initialisations"],
        "backend_passes": system.backend.passes,
        "frontend_fps": round(frames / system.frontend_seconds, 2) if system.frontend_seconds > 0 else None,
        # reading, tracking and the backend; the final fusion is timed on its own
        "end_to_end_fps": round(frames / wall_seconds, 2) if wall_seconds > 0 else None,
        "wall_time_s": round(wall_seconds, 3),
        "fusion_time_s": round(fusion_seconds, 3),
        "points": len(cloud),
        "mesh_triangles": mesh_triangles,
        "peak_memory_mb": round(peak_memory_mb(), 1),
        "device": str(system.device),
        "processing_size": list(system.processing_camera.size),
        "machine": machine_summary(),
        "config": to_dict(system.config),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats
