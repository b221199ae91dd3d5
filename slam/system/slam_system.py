"""The SLAM system: modules, map, frontend and backend wired together, fed frame by frame.

Frames arrive at the processing resolution, that of the camera the system is built with (see
:func:`slam.config.schema.processing_size`; :func:`slam.system.run.run_slam` opens sources at
it). The map's scale is arbitrary (monocular): it is set by the constant depth the cold start
begins from.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import weights
from networks.factory import build_depth_module, build_motion_module, load_checkpoint
from slam.config.loader import override
from slam.config.schema import SystemConfig
from slam.errors import V2DError
from slam.geometry.camera import Camera
from slam.io.frame import Frame
from slam.io.trajectory import Trajectory
from slam.mapping.fusion import FusionKeyframe
from slam.mapping.streaming import StreamingFusion
from slam.system.archive import KeyframeArchive
from slam.system.backend import Backend, BackendThread
from slam.system.bundle import BundleAdjuster
from slam.system.flow_cache import FlowCache
from slam.system.frontend import Frontend
from slam.system.global_bundle import GlobalBundleAdjuster, GlobalBundleReport
from slam.system.loop_closure import LoopCloser
from slam.system.machine import limit_library_threads, pin_torch_threads, release_free_memory, torch_threads
from slam.system.map import Keyframe, MapSnapshot, MapState
from slam.system.stage_times import StageTimes, combined
from slam.system.tracker import Tracker

log = logging.getLogger(__name__)

#: frames between hand-backs of freed memory to the system (see release_free_memory)
TRIM_EVERY = 50

#: threads of the BLAS behind numpy and scipy and of OpenCV, each for the whole process (see
#: :func:`slam.system.machine.limit_library_threads`)
LIBRARY_THREADS = 1


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda`` (``cuda:N``); a clear error when CUDA is asked for and absent."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise V2DError(f"--device {name}: no CUDA device is available here (use --device cpu)")
    if not (name == "cpu" or name.startswith("cuda")):
        raise V2DError(f"unknown device {name!r}: use cpu or cuda")
    return torch.device(name)


class SlamSystem:
    """Feed frames with :meth:`process`, then call :meth:`finish`; read results with
    :meth:`snapshot` and :meth:`trajectory` at any time (from any thread)."""

    def __init__(
        self,
        config: SystemConfig,
        camera: Camera,
        depth_folder: Path | None = None,
        views_folder: Path | None = None,
    ):
        """``camera``: intrinsics and size of the frames to come (sides multiples of 16).
        ``depth_folder``: where each keyframe's final depth map is written; ``views_folder``:
        the posed views' folder each keyframe's image is written into
        (:mod:`slam.mapping.posed_views`); None: nowhere."""
        if camera.width is None or camera.height is None or camera.width % 16 or camera.height % 16:
            raise V2DError(f"the SLAM system needs frames whose sides are multiples of 16, got {camera.size}")
        config = self.config = _with_available_modules(config)
        pin_torch_threads(config.modules.threads)
        limit_library_threads(LIBRARY_THREADS)
        self.device = resolve_device(config.modules.device)
        self.processing_camera = camera
        self.image_size = (camera.height, camera.width)
        checkpoint = load_checkpoint(config.modules.weights or weights.LITE) if _learned(config) else None
        self.depth_module = build_depth_module(
            config.modules.depth, self.image_size, config.frontend.depth_range, checkpoint, self.device
        )
        self.motion_module = build_motion_module(config.modules.motion, self.image_size, checkpoint, self.device)
        intrinsics = torch.from_numpy(self.processing_camera.intrinsics).to(self.device)
        self.map = MapState()
        backend = config.backend
        flow_cache = FlowCache(self.motion_module, backend.flow_reuse) if backend.flow_reuse is not None else None
        bundle = BundleAdjuster(
            self.motion_module,
            intrinsics,
            self.image_size,
            backend.depth_prior,
            backend.bundle_pool,
            backend.bundle_iterations,
            backend.huber,
            flow_cache,
        )
        # the backend tracks keyframes against old ones with a tracker of its own (trackers cache)
        backend_tracker = Tracker(self.motion_module, config.frontend, intrinsics, self.image_size, self.device)
        self.loop_closer = LoopCloser(backend_tracker, self.map, backend, intrinsics, self.image_size)
        self.backend = Backend(
            self.depth_module,
            self.motion_module,
            self.map,
            backend,
            intrinsics,
            self.image_size,
            bundle,
            self.loop_closer if backend.loops else None,
        )
        self.fusion = StreamingFusion(config.fusion)
        self.archive = KeyframeArchive(
            self.map,
            self.fusion,
            camera.intrinsics,
            active=backend.window + 1,
            depth_folder=depth_folder,
            views_folder=views_folder,
            # a loop closure or the final bundle adjustment may move fused keyframes
            keep_released=backend.loops or backend.final_bundle_adjustment,
            align_scales=backend.align_final_scales,
            align_live_end=backend.align_live_end,
        )
        final_bundle = BundleAdjuster(
            self.motion_module,
            intrinsics,
            self.image_size,
            backend.depth_prior,
            backend.final_pool,
            backend.bundle_iterations,
            backend.huber,
        )
        self.global_bundle = GlobalBundleAdjuster(final_bundle, backend, intrinsics, self.image_size)
        self.global_bundle_report: GlobalBundleReport | None = None
        self._thread = (
            BackendThread(self._backend_pass, self._close_loops, config.modules.background_threads)
            if config.backend.mode == "thread"
            else None
        )
        self.frontend = Frontend(
            self.depth_module,
            self.motion_module,
            self.map,
            config.frontend,
            intrinsics,
            self.image_size,
            self.device,
            bundle,
            on_keyframe=self._on_keyframe,
            keyframes_when_ready=config.backend.mode == "thread",
            worker_threads=config.modules.background_threads,
        )
        self.frontend_seconds = 0.0
        self.finish_times = StageTimes()  # the run's end (see finish)
        self.backend_times = StageTimes()  # the backend passes' stages (see stage_seconds)
        self.frames_processed = 0
        self.finished = False  # see finish
        if self._thread is not None:
            self._thread.start()

    def _on_keyframe(self, keyframe: Keyframe) -> None:
        if self._thread is not None:
            self._thread.notify()
            if self.config.backend.max_lag is not None:  # tracking waits for a backend fallen behind
                with self.frontend.times.measure("waiting_for_backend"):
                    self._thread.wait_for_lag(self.config.backend.max_lag)
        else:
            self._backend_pass()
            self._close_loops()

    def _backend_pass(self) -> None:
        """The backend's work after a new keyframe: the window optimisation (unless disabled),
        then the keyframes it made final leave the map (fused, see slam.system.archive)."""
        if self.config.backend.mode != "disabled":
            with self.backend_times.measure("backend_optimisation"):
                self.backend.optimise()
        with self.backend_times.measure("fusion_as_the_run_goes"):
            self.archive.update()

    def _close_loops(self) -> None:
        """The backend's work after a pass that tracking does not wait for: loop closure at the
        keyframes a pass has optimised since it last looked (with ``backend.loops``)."""
        if self.config.backend.mode != "disabled":
            with self.backend_times.measure("loop_closure"):
                self.backend.close_loops()

    def stage_seconds(self, cpu: bool = False) -> dict[str, float]:
        """Wall seconds (``cpu``: the CPU seconds of the thread that ran it) per stage so far:
        the frontend's (tracking, relocalization, waiting for the backend and for a keyframe;
        keyframe depth and refinement, in its worker thread), the backend's passes (window
        optimisation, fusion of final keyframes, loop closure: in its own thread, or inline in
        the frontend's time) and ``finish``."""
        stages = combined(
            self.frontend.times, self.frontend.keyframe_times, self.backend_times, self.finish_times, cpu=cpu
        )
        return stages if "finish" in stages else stages | {"finish": 0.0}

    @property
    def finish_seconds(self) -> float:
        """Wall seconds of :meth:`finish` after the frontend's flush (0 before it ran)."""
        return self.finish_times.seconds.get("finish", 0.0)

    def process(self, frame: Frame) -> None:
        """Track one frame (at the processing resolution)."""
        if (frame.width, frame.height) != self.processing_camera.size:
            raise V2DError(
                f"frame {frame.index} is {frame.width}x{frame.height}, expected the processing size "
                f"{self.processing_camera.width}x{self.processing_camera.height}"
            )
        if self._thread is not None and self._thread.error is not None:
            raise V2DError(f"the backend stopped: {self._thread.error}")
        start = time.perf_counter()
        self.frontend.process(frame)
        self.frontend_seconds += time.perf_counter() - start
        self.frames_processed += 1
        if self.frames_processed % TRIM_EVERY == 0:
            release_free_memory()

    def finish(self) -> None:
        """Flush the frontend, stop the backend thread, run a last backend pass (and, with
        ``backend.final_bundle_adjustment``, the global bundle adjustment: see
        :mod:`slam.system.global_bundle`) and fuse every keyframe (all are final now); when loop
        closures or the global bundle adjustment moved keyframes that were fused, fuse the whole
        map again at the final poses (see :meth:`KeyframeArchive.rebuild`); its time after the
        frontend's flush (whose time is in the frontend's stages) is the stage ``finish`` of
        :meth:`stage_seconds` (wall time: :attr:`finish_seconds`). The frontend's
        worker and the backend thread have stopped by then, so this thread takes their torch
        threads too (``modules.threads`` plus ``modules.background_threads``) until it returns."""
        self.frontend.finish()  # its time is in the frontend's stages
        with self.finish_times.measure("finish"):
            if self._thread is not None:
                self._thread.stop()
                self._thread.join()
            modules = self.config.modules
            with torch_threads(modules.threads + modules.background_threads):
                self._finish_map()
        self.finished = True

    def _finish_map(self) -> None:
        """What :meth:`finish` does once tracking has stopped: the last pass, loop closure, the
        optional global bundle adjustment, the last fusion and, when needed, a new one."""
        if self.config.backend.mode != "disabled":
            self.backend.optimise()
            self.backend.close_loops()
            if self.config.backend.final_bundle_adjustment:
                with self.backend_times.measure("final_bundle_adjustment"):
                    self.global_bundle_report = self.global_bundle.run(self.map, self.loop_closer.edges)
        self.archive.update(final=True)
        if self.archive.released is not None and self.archive.moved_since_fusion():
            rebuild_start = time.perf_counter()
            previous, self.fusion = self.fusion, self.archive.rebuild()
            previous.close()
            log.info(
                "fused %d keyframes again at their corrected poses in %.1f s",
                len(self.fusion),
                time.perf_counter() - rebuild_start,
            )

    def export_map(self) -> ExportMap:
        """The map to export now: once finished, the map as it is; while the run goes on, the map
        as :meth:`finish` would leave it without moving the live one, when that differs from it:
        when loop closures moved fused keyframes, or with ``backend.final_bundle_adjustment``, a
        detached copy of the map (:meth:`KeyframeArchive.detached_map`), refined by the global
        bundle adjustment (with that option) and fused anew at its poses (its depth maps written
        to the run's depth folder, if any). The newest keyframes, not final yet, are exported at
        their own depth scale (``finish`` aligns them: ``backend.align_final_scales``). Tracking
        and the backend go on meanwhile. Call it from one thread at a time (an exporter), and
        close the result."""
        final_bundle = self.config.backend.final_bundle_adjustment
        moved = self.archive.released is not None and (final_bundle or self.archive.moved_since_fusion())
        if self.finished or not moved:
            snapshot = self.snapshot()
            return ExportMap(snapshot, self.fusion, self.held_keyframes(snapshot), self.global_bundle_report, False)
        start = time.perf_counter()
        loops = list(self.loop_closer.edges)
        detached = self.archive.detached_map()
        report = self.global_bundle.run(detached, loops) if final_bundle else None
        fusion = self.archive.fuse_map(detached, self.archive.depth_folder)
        log.info(
            "the export's map: %d keyframes%s, fused at their poses there, in %.1f s",
            len(fusion),
            " refined by the global bundle adjustment" if report is not None else "",
            time.perf_counter() - start,
        )
        return ExportMap(detached.snapshot(), fusion, [], report, True)

    def snapshot(self, with_images: bool = True) -> MapSnapshot:
        return self.map.snapshot(with_images)

    def held_keyframes(self, snapshot: MapSnapshot) -> list[FusionKeyframe]:
        """The snapshot's keyframes that still hold their pixels, as fusion input: pass them to
        ``self.fusion.cloud`` and ``self.fusion.mesh`` for the whole map's geometry."""
        return [self.archive.fusion_keyframe(view) for view in snapshot.keyframes if view.has_pixels]


@dataclass
class ExportMap:
    """What an export writes (see :meth:`SlamSystem.export_map`): the map's ``snapshot``; its
    geometry, ``fusion`` with the ``held`` keyframes (keyframes with their pixels that ``fusion``
    has not fused: pass them to its ``cloud`` and ``mesh``); the ``global_bundle`` adjustment's
    report (None: it did not run). Close it when done: a fusion made for the export is closed
    (``own_fusion``), the system's is left open."""

    snapshot: MapSnapshot
    fusion: StreamingFusion
    held: list[FusionKeyframe]
    global_bundle: GlobalBundleReport | None
    own_fusion: bool

    def close(self) -> None:
        if self.own_fusion:
            self.fusion.close()


def _learned(config: SystemConfig) -> bool:
    """Whether either module is a learned one (and so needs weights)."""
    return config.modules.depth != "classical" or config.modules.motion != "classical"


def _with_available_modules(config: SystemConfig) -> SystemConfig:
    """``config``, or the classical modules in place of learned ones when no weights are named
    and the shipped ones are absent (a checkout without them): the classical modules are the
    fallback, with a warning."""
    if not _learned(config) or config.modules.weights or weights.LITE.is_file():
        return config
    log.warning("no learned weights at %s: using the classical depth and motion modules", weights.LITE)
    return override(config, "modules.depth=classical", "modules.motion=classical")


def full_trajectory(
    snapshot: MapSnapshot, indices: np.ndarray, timestamps: np.ndarray
) -> tuple[Trajectory, np.ndarray]:
    """A camera-to-world pose for every input frame (``indices``, ``timestamps``): tracked
    frames get theirs; a frame without one (lost, or before initialisation) gets the nearest
    earlier tracked pose (the nearest later one at the start). Returns the trajectory and a
    bool mask of the frames that were really tracked."""
    tracked = dict(zip(snapshot.frame_indices.tolist(), snapshot.frame_poses_c2w))
    mask = np.array([i in tracked for i in indices.tolist()], dtype=bool)
    poses = np.tile(np.eye(4), (len(indices), 1, 1))
    if mask.any():
        last = tracked[indices[np.argmax(mask)]]
        for k, index in enumerate(indices.tolist()):
            last = tracked.get(index, last)
            poses[k] = last
    return Trajectory(timestamps, poses), mask
