"""One SLAM run from a source to the output folder: trajectory.txt (TUM, camera-to-world, every
input frame; none when the run stopped before its first), trajectory_kitti.txt for KITTI
sources, groundtruth.txt where the source has ground truth, points.ply, mesh.ply, stats.json
and tracking.csv (each frame's status).

Whatever was computed is written even when the run stops early (Ctrl-C, SIGTERM, SIGHUP, a
camera unplugged, a corrupt file, a stop from the viewer): the error is re-raised after the
outputs are saved. Every file is written atomically (whole or absent); stats.json is written
first as a placeholder marked incomplete and last with ``completed`` and ``stopped_by``, so a
run killed while saving leaves a folder marked incomplete, never a truncated file.

A viewer steers a run from another thread through a :class:`RunControl`: pause and resume, stop
(the run ends as if the source had ended, outputs saved) and export now (outputs written from a
snapshot while the run goes on). It also reads the run's live state there (the newest frame and
its tracking status) without ever blocking the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import cast

import numpy as np

from slam import __version__
from slam.config.loader import to_dict
from slam.config.schema import SystemConfig, processing_size, upscale_warning
from slam.errors import ExportError, V2DError
from slam.io.atomic import write_text_atomic
from slam.io.depth_maps import write_depth_npy
from slam.io.frame import Frame
from slam.io.run_folder import STATS_FILE, prepare_output_folder
from slam.io.sources.base import Source
from slam.io.sources.prefetch import Prefetcher
from slam.io.trajectory import Trajectory, write_kitti, write_tum
from slam.mapping.export import write_mesh_ply, write_point_cloud_ply
from slam.mapping.point_cloud import PointCloud
from slam.mapping.posed_views import TRANSFORMS, write_posed_views, write_view_image
from slam.mapping.streaming import StreamingFusion
from slam.system.machine import machine_summary, peak_memory_mb
from slam.system.map import KeyframeView, MapSnapshot
from slam.system.slam_system import ExportMap, SlamSystem, full_trajectory
from slam.system.stop_signals import SavingGuard, Terminated

log = logging.getLogger(__name__)

#: the folder of the output folder that --save-depth writes keyframe depth maps to
DEPTH_FOLDER = "depth"

#: the folder of the output folder that --save-views writes the keyframes as posed views to
#: (:mod:`slam.mapping.posed_views`)
VIEWS_FOLDER = "views"


@dataclasses.dataclass
class RunRecord:
    """What the loop saw of every input frame: index, timestamp, ground truth (camera-to-world)."""

    indices: list[int] = dataclasses.field(default_factory=list)
    timestamps: list[float] = dataclasses.field(default_factory=list)
    poses_gt: list[np.ndarray | None] = dataclasses.field(default_factory=list)
    dropped: int = 0

    def copy(self) -> RunRecord:
        """A copy whose lists the loop no longer appends to."""
        return RunRecord(list(self.indices), list(self.timestamps), list(self.poses_gt), self.dropped)


@dataclasses.dataclass(frozen=True)
class Elapsed:
    """What a run has taken so far: ``wall`` seconds and ``cpu`` seconds of the process (every
    thread's, user and system), which depend less than the wall time on how busy the machine
    was."""

    wall: float
    cpu: float


class RunClock:
    """Started with the run: :meth:`elapsed` since then."""

    def __init__(self) -> None:
        self.wall_start = time.perf_counter()
        self.cpu_start = time.process_time()

    def elapsed(self) -> Elapsed:
        return Elapsed(time.perf_counter() - self.wall_start, time.process_time() - self.cpu_start)


class RunControl:
    """Steering and live state of one :func:`run_slam` loop, shared with another thread (a viewer).

    Requests (from any thread): :meth:`pause` / :meth:`resume` (the loop waits between frames),
    :meth:`request_stop` (the loop ends before its next frame as if the source had ended: the
    system finishes and every output is written, with no error), :meth:`request_export` (the
    outputs are written now to the output folder, in a background thread while tracking goes
    on, from the map as finishing would leave it: see :meth:`SlamSystem.export_map`; a request
    while an export is running is ignored).

    Live state (written by the loop, one reference assignment per frame, so reading never blocks
    it): ``system`` and ``record`` (set when the loop starts), ``frame`` (the newest processed
    :class:`Frame`, at the processing resolution) and ``status`` (its tracking status:
    ``tracked``, ``keyframe``, ``lost``, ``blank``, or ``initialising`` while the cold start gathers frames),
    ``started`` (``time.perf_counter()`` at the start), ``exports`` (exports written so far) and
    ``done`` (set when the loop has ended and the outputs are written, or the run failed).
    """

    def __init__(self):
        self._condition = threading.Condition()
        self._paused = False
        self._stop = False
        self.stop_reason = "stop requested"
        self._export = False
        self.system: SlamSystem | None = None
        self.record: RunRecord | None = None
        self.frame: Frame | None = None
        self.status = "starting"
        self.started: float | None = None
        self.exports = 0
        self.done = threading.Event()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stop_requested(self) -> bool:
        return self._stop

    def pause(self) -> None:
        with self._condition:
            self._paused = True

    def resume(self) -> None:
        with self._condition:
            self._paused = False
            self._condition.notify_all()

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to end (``reason``: stats.json's ``stopped_by``, e.g. viewer closed,
        SIGTERM)."""
        with self._condition:
            if not self._stop:
                self.stop_reason = reason
            self._stop = True
            self._condition.notify_all()

    def request_export(self) -> None:
        with self._condition:
            self._export = True
            self._condition.notify_all()

    def next_step(self) -> tuple[bool, bool]:
        """For the loop, between frames: waits while paused (until a resume, stop or export
        request), then returns (go on with the next frame, export now), clearing the export
        request."""
        with self._condition:
            while self._paused and not self._stop and not self._export:
                self._condition.wait()
            export, self._export = self._export, False
            return not self._stop, export

    def observe(self, frame: Frame, system: SlamSystem) -> None:
        """For the loop, after ``frame`` was processed: publish it and its tracking status."""
        frames = system.map.frames
        last = frames[-1] if frames else None
        self.status = last.status if last is not None and last.index == frame.index else "initialising"
        self.frame = frame


class _Exporter:
    """Export-now requests of a run: one background writer at a time."""

    def __init__(
        self,
        system: SlamSystem,
        source: Source,
        out: Path,
        clock: RunClock,
        save_depth: bool,
        save_views: bool,
        control: RunControl,
    ):
        self._system, self._source, self._out = system, source, out
        self._clock, self._save_depth, self._save_views, self._control = clock, save_depth, save_views, control
        self._thread: threading.Thread | None = None

    def start(self, record: RunRecord) -> None:
        """Write the outputs of the frames in ``record`` so far, in a background thread."""
        if self._thread is not None and self._thread.is_alive():
            log.info("an export is already being written; request ignored")
            return
        snapshot_record, elapsed = record.copy(), self._clock.elapsed()
        self._thread = threading.Thread(
            target=self._write, args=(snapshot_record, elapsed), name="v2d-export", daemon=True
        )
        self._thread.start()

    def _write(self, record: RunRecord, elapsed: Elapsed) -> None:
        try:
            write_outputs(
                self._system, record, self._source, self._out, elapsed, self._save_depth, save_views=self._save_views
            )
            self._control.exports += 1
            log.info("exported the outputs of %d frames to %s", len(record.indices), self._out)
        except Exception as err:  # an export failing must not stop tracking
            log.error("export failed: %s", err)

    def join(self) -> None:
        """Wait for a running export (the final outputs must not be overwritten by it)."""
        if self._thread is not None:
            self._thread.join()


def run_slam(
    source: Source,
    config: SystemConfig,
    out_dir: str | Path,
    realtime: bool = False,
    save_depth: bool = False,
    control: RunControl | None = None,
    overwrite: bool = False,
    save_views: bool = False,
) -> dict:
    """Run the system on ``source`` and write the outputs to ``out_dir``, a new or empty folder,
    or one holding a previous run when ``overwrite`` (its files are removed first: see
    :mod:`slam.io.run_folder`). The source's resize option is replaced by the processing
    resolution. ``realtime`` drops frames whose timestamp the processing has fallen behind.
    ``save_depth``: the keyframes' depth maps too; ``save_views``: the keyframes as posed views
    for splatting and NeRF (see :func:`write_outputs`).
    ``control`` lets another thread pause, stop and export the run, and watch it (see
    :class:`RunControl`). Returns the stats written to stats.json.

    Whatever ends the run (the source's end, a stop request, SIGINT, SIGTERM, SIGHUP, an error)
    goes through one shutdown: the system finishes and every output is written, then an error
    or signal is re-raised. While saving, the first signal is only reported (see
    :class:`~slam.system.stop_signals.SavingGuard`). An output that cannot be written does not
    stop the others; :class:`~slam.errors.ExportError` is raised after them."""
    out = Path(out_dir)
    try:
        with SavingGuard() as guard:
            return _run(source, config, out, realtime, save_depth, save_views, control, overwrite, guard)
    finally:
        if control is not None:
            control.done.set()


def _stop_reason(err: BaseException | None, control: RunControl | None) -> str:
    """How a run ended, for stats.json's ``stopped_by``."""
    if isinstance(err, Terminated):
        return str(err)
    if isinstance(err, KeyboardInterrupt):
        return "SIGINT"
    if err is not None:
        return f"error: {err}"
    if control is not None and control.stop_requested:
        return control.stop_reason
    return "end of source"


def _run(
    source: Source,
    config: SystemConfig,
    out: Path,
    realtime: bool,
    save_depth: bool,
    save_views: bool,
    control: RunControl | None,
    overwrite: bool,
    guard: SavingGuard,
) -> dict:
    assert source.camera is not None  # an opened source knows its camera, and its size
    assert source.camera.width is not None and source.camera.height is not None
    size = processing_size(source.camera.width, source.camera.height, config.frontend.pixels)
    if (warning := upscale_warning(source.camera.width, source.camera.height, config.frontend.pixels)) is not None:
        log.warning(warning)
    source.options = dataclasses.replace(source.options, resize=size, depth=False)  # frames' depth unused
    system = SlamSystem(
        config,
        source.output_camera,
        depth_folder=out / DEPTH_FOLDER if save_depth else None,
        views_folder=out / VIEWS_FOLDER if save_views else None,
    )
    record = RunRecord()
    try:
        prepare_output_folder(out, overwrite)
        write_text_atomic(out / STATS_FILE, json.dumps(_placeholder_stats(source), indent=2) + "\n")
    except BaseException:
        system.fusion.close()
        raise
    clock = RunClock()
    start = clock.wall_start
    exporter = None
    if control is not None:
        control.system, control.record, control.started = system, record, start
        exporter = _Exporter(system, source, out, clock, save_depth, save_views, control)
    stopped_by: BaseException | None = None
    try:
        with contextlib.nullcontext(source) if source.live else Prefetcher(source) as frames:
            _track(frames, system, record, start, realtime, control, exporter)
    except (KeyboardInterrupt, Exception) as err:  # saved below, then re-raised
        guard.saving()
        stopped_by = err
        log.warning("run stopped early (%s); saving what was computed", _stop_reason(err, control))
    guard.saving()
    if exporter is not None:  # its outputs must not overwrite the final ones, nor its map work beside finish's
        exporter.join()
    finish_error: Exception | None = None
    try:
        system.finish()
    except Exception as err:  # the frontend's results are still saved
        log.error("finishing the run failed: %s", err)
        finish_error = err
    try:
        stats = write_outputs(
            system,
            record,
            source,
            out,
            clock.elapsed(),
            save_depth,
            stopped_by=_stop_reason(stopped_by or finish_error, control),
            save_views=save_views,
        )
    except KeyboardInterrupt:
        log.warning("saving aborted: %s holds what was written so far, marked incomplete in its %s", out, STATS_FILE)
        raise
    finally:
        system.fusion.close()
    if stopped_by is not None:
        log.warning("saved the outputs of %d frames to %s", len(record.indices), out)
        raise stopped_by
    if finish_error is not None:
        raise finish_error
    if stats["write_errors"]:
        errors = stats["write_errors"]
        more = f" (and {len(errors) - 1} more: see {out / STATS_FILE})" if len(errors) > 1 else ""
        raise ExportError(errors[0] + more)
    return stats


def _placeholder_stats(source: Source) -> dict:
    """The stats.json a run writes before its first frame: it marks the folder as a run's, and
    as incomplete until the final stats replace it."""
    return {
        "software_version": __version__,
        "source": source.describe(),
        "completed": False,
        "stopped_by": None,
        "note": "the run was still going or was killed before its outputs were saved",
    }


def _track(
    frames: Iterable[Frame],
    system: SlamSystem,
    record: RunRecord,
    start: float,
    realtime: bool,
    control: RunControl | None,
    exporter: _Exporter | None,
) -> None:
    """Feed ``frames`` to ``system`` until they end or ``control`` asks to stop, recording each
    frame in ``record`` (see :func:`run_slam` for ``realtime``)."""
    first_timestamp = None
    for frame in frames:
        if control is not None:
            go_on, export = control.next_step()
            while export:  # then wait again if paused
                assert exporter is not None  # made along with control (see run_slam)
                exporter.start(record)
                go_on, export = control.next_step()
            if not go_on:
                log.info("run stopped on request after %d frames", len(record.indices))
                return
        if realtime:
            first_timestamp = frame.timestamp if first_timestamp is None else first_timestamp
            if frame.timestamp - first_timestamp < time.perf_counter() - start - 0.1 and record.indices:
                record.dropped += 1
                continue
        record.indices.append(frame.index)
        record.timestamps.append(frame.timestamp)
        record.poses_gt.append(frame.pose_gt)
        system.process(frame)
        if control is not None:
            control.observe(frame, system)


def _not_fused_yet(fusion: StreamingFusion, snapshot: MapSnapshot) -> list[KeyframeView]:
    """The snapshot's keyframes that hold their pixels and are not in ``fusion`` yet: the ones
    whose depth map and image were not written as they were fused."""
    return [kf for kf in snapshot.keyframes if kf.has_pixels and not fusion.fused(kf.id)]


def write_keyframe_depths(export: ExportMap, out: Path) -> None:
    """``depth/NNNNNN.npy`` for each keyframe of the export's snapshot not in its fusion (see
    :func:`slam.io.depth_maps.write_depth_npy`; the others were written as they were fused) and
    ``keyframes.txt`` (TUM format: every keyframe's camera-to-world pose)."""
    snapshot = export.snapshot
    for keyframe in _not_fused_yet(export.fusion, snapshot):
        assert keyframe.depth is not None  # has_pixels
        write_depth_npy(out / DEPTH_FOLDER, keyframe.frame_index, keyframe.depth)
    if snapshot.keyframes:
        write_tum(
            out / "keyframes.txt",
            Trajectory(
                np.array([kf.timestamp for kf in snapshot.keyframes]),
                np.stack([kf.pose_c2w for kf in snapshot.keyframes]),
            ),
            header="keyframes (depth maps in depth/), camera-to-world\ntimestamp tx ty tz qx qy qz qw",
        )


def _alignment_stats(factors: list[float]) -> dict[str, float | int]:
    """How many depth factors (:attr:`KeyframeArchive.scale_corrections`) and their median and
    largest departure from 1, in percent."""
    changes = np.abs(np.asarray(factors, dtype=np.float64) - 1.0) * 100 if factors else np.zeros(1)
    return {
        "keyframes": len(factors),
        "median_percent": round(float(np.median(changes)), 2),
        "max_percent": round(float(changes.max()), 2),
    }


def write_keyframe_views(system: SlamSystem, snapshot: MapSnapshot, folder: Path, cloud: PointCloud) -> list[int]:
    """The snapshot's keyframes as posed views in ``folder`` (see
    :mod:`slam.mapping.posed_views`): the images of keyframes not fused yet (the system wrote
    the others as it fused them), then the models, with the map's ``cloud``. Returns the frame
    indices of the views written."""
    for keyframe in _not_fused_yet(system.fusion, snapshot):
        assert keyframe.image is not None  # has_pixels
        write_view_image(folder, keyframe.frame_index, keyframe.image)
    views = [(keyframe.frame_index, keyframe.pose_c2w) for keyframe in snapshot.keyframes]
    return write_posed_views(folder, system.processing_camera, views, cloud)


class _Writer:
    """Writes a run's output files one by one: a file that cannot be written is reported and
    does not stop the others."""

    def __init__(self, out: Path):
        self.out = out
        self.written: list[str] = []
        self.errors: list[str] = []

    def __call__(self, name: str, write: Callable[[Path], object]) -> None:
        """``write(out / name)``, recording ``name`` as written or the error's message."""
        try:
            write(self.out / name)
        except V2DError as err:
            log.error("%s", err)
            self.errors.append(str(err))
        else:
            self.written.append(name)


def write_outputs(
    system: SlamSystem,
    record: RunRecord,
    source: Source,
    out: Path,
    elapsed: Elapsed,
    save_depth: bool = False,
    stopped_by: str | None = None,
    save_views: bool = False,
) -> dict:
    """Write every output file of the contract (and the keyframe depths with ``save_depth``, the
    keyframes as posed views in ``views/`` with ``save_views``: see
    :mod:`slam.mapping.posed_views`), all from one map (:meth:`SlamSystem.export_map`: while
    the run goes on, the map as finishing would leave it), each atomically, stats.json last,
    and return the stats.
    ``stopped_by``: how the run ended (None while it goes on: an export of a running run). An
    output that cannot be written is listed in the stats' ``write_errors``; only stats.json
    failing raises."""
    export = system.export_map()
    try:
        return _write_export(system, export, record, source, out, elapsed, save_depth, stopped_by, save_views)
    finally:
        export.close()


def _write_export(
    system: SlamSystem,
    export: ExportMap,
    record: RunRecord,
    source: Source,
    out: Path,
    elapsed: Elapsed,
    save_depth: bool,
    stopped_by: str | None,
    save_views: bool,
) -> dict:
    """:func:`write_outputs` of ``export``."""
    snapshot = export.snapshot
    write = _Writer(out)
    if save_depth and snapshot.keyframes:
        write("keyframes.txt", lambda _path: write_keyframe_depths(export, out))
    indices, timestamps = np.array(record.indices, dtype=int), np.array(record.timestamps, dtype=np.float64)
    trajectory, tracked = full_trajectory(snapshot, indices, timestamps)
    if len(indices):  # a run stopped before its first frame has no trajectory to write
        write(
            "trajectory.txt",
            lambda path: write_tum(
                path,
                trajectory,
                header="v2d estimate, camera-to-world, arbitrary scale (monocular)\ntimestamp tx ty tz qx qy qz qw",
            ),
        )
        if source.kind == "kitti":
            write("trajectory_kitti.txt", lambda path: write_kitti(path, trajectory))
    with_gt = [k for k, pose in enumerate(record.poses_gt) if pose is not None]
    if with_gt:
        ground_truth = Trajectory(
            timestamps[with_gt], np.stack([cast(np.ndarray, record.poses_gt[k]) for k in with_gt])
        )
        write(
            "groundtruth.txt",
            lambda path: write_tum(
                path,
                ground_truth,
                header="ground truth at the frame times, camera-to-world\ntimestamp tx ty tz qx qy qz qw",
            ),
        )
    statuses = {**snapshot.untracked_status, **dict(zip(snapshot.frame_indices.tolist(), snapshot.frame_status))}
    write(
        "tracking.csv",
        lambda path: write_text_atomic(
            path,
            "index,timestamp,status\n"
            + "".join(
                f"{i},{t:.6f},{statuses.get(i, 'lost')}\n" for i, t in zip(indices.tolist(), timestamps.tolist())
            ),
        ),
    )

    fusion_start = time.perf_counter()
    cloud = export.fusion.cloud(export.held)
    write("points.ply", lambda path: write_point_cloud_ply(path, cloud))
    mesh_triangles = 0
    if system.config.fusion.mesh:
        mesh = export.fusion.mesh(export.held)
        write("mesh.ply", lambda path: write_mesh_ply(path, mesh))
        mesh_triangles = len(mesh.triangles)
    fusion_seconds = time.perf_counter() - fusion_start
    views_written: list[int] = []
    if save_views and snapshot.keyframes:
        write(
            f"{VIEWS_FOLDER}/{TRANSFORMS}",
            lambda _path: views_written.extend(write_keyframe_views(system, snapshot, out / VIEWS_FOLDER, cloud)),
        )

    frames = len(indices)
    counts = system.frontend.counts
    loops = system.loop_closer
    camera_size = system.processing_camera.size
    assert camera_size is not None  # SlamSystem requires a camera with its size
    stats = {
        "software_version": __version__,
        "source": source.describe(),
        # every output written, for every frame processed; false in the placeholder a run starts
        # with, in an export of a running run, and when an output could not be written
        "completed": stopped_by is not None and not write.errors,
        # end of source, stop requested (a viewer), SIGINT, SIGTERM, SIGHUP or error: MESSAGE
        "stopped_by": stopped_by,
        "outputs": [*write.written, STATS_FILE],
        "write_errors": write.errors,
        "frames_read": frames + record.dropped,
        "frames_processed": frames,
        # frames not used, by reason (blank: black, saturated or textureless; never keyframes or map points)
        "frames_skipped": {"behind real time": record.dropped, "blank image": counts["blank"]},
        "frames_dropped_realtime": record.dropped,
        "frames_tracked": int(tracked.sum()),
        "frames_lost": int(frames - tracked.sum()),
        "keyframes": len(snapshot.keyframes),
        # map segments started by a cold start (the first included), and losses recovered in the same map
        "initialisations": counts["initialisations"],
        "relocalizations": counts["relocalizations"],
        # frames that asked for a new keyframe and were tracked against an old one of the map instead
        "reused_keyframes": counts["reused_keyframes"],
        "blank_frames": counts["blank"],
        # keyframe depths dropped and backend passes not applied for NaN or infinite values
        "nonfinite_depths": counts["nonfinite_depths"],
        "rejected_backend_passes": system.backend.rejected_passes,
        "backend_passes": system.backend.passes,
        "covisible_passes": system.backend.covisible_passes,
        # keyframes looked at for a loop; loops accepted (verified) and rejected, pose-graph
        # corrections and their mean time
        "loop_checks": system.backend.loop_checks,
        "loops_accepted": len(loops.edges),
        "loops_rejected": loops.rejected,
        "loop_corrections": loops.corrections,
        "loop_correction_s": round(float(np.mean(loops.correction_seconds)), 3) if loops.correction_seconds else None,
        # final keyframes whose depth was brought to the map's scale (backend.align_final_scales),
        # and the median and largest change, percent
        "depth_scale_alignments": _alignment_stats(system.archive.scale_corrections),
        # map segments after the first that a loop joined to the one before
        "segments_joined": loops.segments_joined(),
        # the global bundle adjustment at the run's end (backend.final_bundle_adjustment): keyframes,
        # edges by kind, seconds, how far camera centres moved; None when it did not run
        "final_bundle_adjustment": export.global_bundle.as_stats() if export.global_bundle is not None else None,
        "frontend_fps": round(frames / system.frontend_seconds, 2) if system.frontend_seconds > 0 else None,
        # reading, tracking and the backend; the final fusion is timed on its own
        "end_to_end_fps": round(frames / elapsed.wall, 2) if elapsed.wall > 0 else None,
        "wall_time_s": round(elapsed.wall, 3),
        # CPU seconds of every thread over the same span, and per frame: the work, which moves less
        # with the machine's load than the wall time (two busy cores give at most twice it)
        "cpu_time_s": round(elapsed.cpu, 3),
        "cpu_ms_per_frame": round(1000 * elapsed.cpu / frames, 1) if frames else None,
        # of the wall time: finishing (the last backend pass, fusing the last keyframes, and the
        # whole map again after loop corrections), then the exported cloud and mesh
        "finish_time_s": round(system.finish_seconds, 3),
        "fusion_time_s": round(fusion_seconds, 3),
        # wall time per stage (see SlamSystem.stage_seconds), and the exported cloud and mesh
        "stage_time_s": system.stage_seconds() | {"export_fusion": round(fusion_seconds, 3)},
        # the CPU time of the thread that ran each stage (its own work; a wait takes almost none)
        "stage_cpu_time_s": system.stage_seconds(cpu=True),
        "points": len(cloud),
        # keyframes written as posed views (--save-views), None when not asked for
        "posed_views": len(views_written) if save_views else None,
        "mesh_triangles": mesh_triangles,
        "peak_memory_mb": round(peak_memory_mb(), 1),
        "device": str(system.device),
        "processing_size": list(camera_size),
        "machine": machine_summary(),
        "config": to_dict(system.config),
    }
    write_text_atomic(out / STATS_FILE, json.dumps(stats, indent=2) + "\n")
    return stats
