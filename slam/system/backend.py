"""The backend: on a sliding window of the newest keyframes, global pose optimization (the motion
module on every keyframe pair, one joint Gauss-Newton solve with the oldest keyframe fixed) and
depth updates, written back to the map. Older keyframes that see what the newest one sees
(:mod:`slam.system.covisibility`) join the window, held fixed, with edges to the newest
keyframes: a camera that lingers or returns is optimised against the map it built before.
Depth is updated by a dense bundle adjustment in the same solve (each keyframe's per-pixel depth
moves with the poses to fit the motion module's correspondences, on a coarser grid; the change is
applied to the full-resolution depth as a ratio), and/or by the depth module with the other window
keyframes as neighbours. After each pass, loop closure (:mod:`slam.system.loop_closure`) at each
keyframe a pass has optimised since it last looked, which tracking does not wait for. Runs in its
own thread, or inline after each keyframe.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import cast

import torch

from networks.interfaces import DepthModule, MotionModule
from slam.config.schema import BackendConfig
from slam.geometry.lie import SE3
from slam.geometry.resize import resize_depth
from slam.geometry.solver import all_pairs_edges, gauss_newton_step
from slam.system.bundle import BundleAdjuster, view_confidence
from slam.system.covisibility import covisible_keyframes
from slam.system.keyframe_depth import all_finite
from slam.system.loop_closure import LoopCloser
from slam.system.machine import pin_torch_threads
from slam.system.map import CONFIDENT_DEPTH, Keyframe, MapState

log = logging.getLogger(__name__)

#: scheduling niceness of the backend thread (and of the threads it starts): tracking comes first
#: on a machine with few cores, the backend takes the time left over
BACKEND_NICENESS = 10


class Backend:
    """Window optimisation over the map's newest keyframes (see the module docstring)."""

    def __init__(
        self,
        depth_module: DepthModule,
        motion_module: MotionModule,
        map_state: MapState,
        config: BackendConfig,
        intrinsics: torch.Tensor,
        image_size: tuple[int, int],
        bundle: BundleAdjuster,
        loop_closer: LoopCloser | None = None,
    ):
        self.depth_module = depth_module
        self.loop_closer = loop_closer
        self.bundle = bundle
        self.motion_module = motion_module
        self.map = map_state
        self.config = config
        self.intrinsics = intrinsics  # (4,) at the processing resolution
        self.image_size = image_size  # (H, W)
        self.passes = 0
        self.covisible_passes = 0  # passes that joined older covisible keyframes
        self.rejected_passes = 0  # passes whose poses or depths held NaN or inf: the map kept its own
        self.seconds = 0.0
        self.loops_checked_through = -1  # id of the newest keyframe loop closure has looked at
        self.optimised_through = -1  # id of the newest keyframe a pass has optimised
        self.loop_checks = 0  # keyframes loop closure has looked for a loop at

    def window(self) -> list[Keyframe]:
        """The newest ``config.window`` keyframes; older ones are compacted (bounded memory)."""
        keyframes = self.map.keyframe_list()
        with self.map.lock:  # readers copy keyframes under the lock: never half compacted
            for old in keyframes[: -self.config.window - 1]:
                old.compact()
        return keyframes[-self.config.window :]

    def covisible(self, window: list[Keyframe]) -> list[Keyframe]:
        """Up to ``config.covisible`` keyframes at least ``config.window`` keyframes older than
        the window that see ``config.covisible_overlap`` of what its newest keyframe sees."""
        if self.config.covisible == 0 or not window:
            return []
        older = [kf for kf in self.map.keyframe_list() if kf.id < window[0].id - self.config.window]
        return covisible_keyframes(
            window[-1], older, self.config.covisible, self.config.covisible_overlap, self.intrinsics, self.image_size
        )

    def _ready_window(self) -> list[Keyframe] | None:
        """The window (see :meth:`window`) when it can be optimised: at least 3 keyframes, all
        with their motion features; else None."""
        window = self.window()
        if len(window) < 3 or any(kf.motion_features is None for kf in window):
            return None
        return window

    def close_loops(self) -> bool:
        """Loop closure (:meth:`LoopCloser.close`, when a ``loop_closer`` is given) at every
        keyframe it has not looked at yet that a pass has optimised (keyframes that came during
        the last pass wait for the next), oldest first, each as the newest of the
        ``config.window`` keyframes that end at it: a pass that took several new keyframes
        together (the thread fell behind) leaves none of them unchecked. A keyframe that lost its
        motion features first (compacted: it left the window's reach), or with fewer than 2
        before it, is passed over; the count of those looked at is kept in ``loop_checks``.
        Returns whether a loop was accepted. Separate from :meth:`optimise` so that tracking need
        not wait for it (see :class:`BackendThread`)."""
        if self.loop_closer is None:
            return False
        start = time.perf_counter()
        keyframes = self.map.keyframe_list()
        accepted = False
        for k, keyframe in enumerate(keyframes):
            if keyframe.id > self.optimised_through:
                break
            if keyframe.id <= self.loops_checked_through:
                continue
            self.loops_checked_through = keyframe.id
            window = keyframes[max(0, k + 1 - self.config.window) : k + 1]
            if len(window) >= 3 and keyframe.motion_features is not None and keyframe.depth is not None:
                self.loop_checks += 1
                accepted = self.loop_closer.close(window) is not None or accepted
        self.seconds += time.perf_counter() - start
        return accepted

    def optimise(self) -> bool:
        """One pass: the optimisation of the current window and the keyframes covisible with it
        (held fixed, see :meth:`covisible`); returns False when the window holds fewer than 3
        keyframes. A result with NaN or infinite poses, depths or confidences is not written to
        the map (counted in ``rejected_passes``, a warning the first time)."""
        window = self._ready_window()
        if window is None:
            return False
        start = time.perf_counter()
        fixed = self.covisible(window) if self.config.bundle_adjustment else []
        count, extra = len(window), len(fixed)
        all_poses = SE3.stack([kf.pose_w2c for kf in fixed + window])
        started_from = SE3(all_poses.data[extra:])
        # window keyframes have their features (checked above) and depths (see Keyframe)
        features = torch.stack([cast(torch.Tensor, kf.motion_features) for kf in window])
        depths = torch.stack([cast(torch.Tensor, kf.depth) for kf in window])
        ii, jj = all_pairs_edges(count, device=features.device, max_span=self.config.edge_span)
        new_depths = new_confidences = None
        if self.config.bundle_adjustment:
            if fixed:
                self.covisible_passes += 1
                features, depths, ii, jj = self._with_fixed(fixed, features, depths, ii, jj)
            poses, new_depths, support = self.bundle.refine(
                features,
                depths,
                all_poses,
                ii,
                jj,
                num_fixed=extra + 1,
                flow_steps=self.config.pose_steps,
                ids=[kf.id for kf in fixed + window],
            )
            poses, new_depths = SE3(poses.data[extra:]), new_depths[extra:]
            # window keyframes are not compacted: their confidence is set (see Keyframe)
            new_confidences = torch.stack(
                [
                    view_confidence(cast(torch.Tensor, kf.confidence), support[extra + k], kf.confidence_from_views)
                    for k, kf in enumerate(window)
                ]
            )
        else:
            poses = self._optimise_poses(features, depths, started_from, ii, jj)
        if self.config.depth_updates > 0:
            with torch.no_grad():
                new_depths, new_confidences = self._update_depths(window, poses, new_depths, new_confidences)
        results = [t for t in (poses.data, new_depths, new_confidences) if t is not None]
        if all_finite(*results):
            self.map.update_keyframes(
                [kf.id for kf in window],
                poses,
                new_depths,
                new_confidences,
                started_from,
                # the depth module's new depths come with its own confidence
                confidences_from_views=self.config.bundle_adjustment and self.config.depth_updates == 0,
            )
            self.optimised_through = window[-1].id
        else:
            self.rejected_passes += 1
            if self.rejected_passes == 1:
                log.warning(
                    "a backend pass gave NaN or infinite poses or depths: the map keeps its own "
                    "(later ones are only counted)"
                )
        self.passes += 1
        self.seconds += time.perf_counter() - start
        return True

    def _with_fixed(
        self,
        fixed: list[Keyframe],
        features: torch.Tensor,
        depths: torch.Tensor,
        ii: torch.Tensor,
        jj: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The window's (N, C, h, w) features, (N, H, W) depths and edges ``ii -> jj`` with the
        ``fixed`` keyframes (M) put first: their features and depths (from what they keep for
        matching, depth resized to the processing size) and edges both ways between each of them
        and the window's newest ``config.covisible_edges`` keyframes, window indices shifted by M."""
        matching = [cast(tuple[torch.Tensor, torch.Tensor], kf.matching()) for kf in fixed]  # checked by covisible
        extra = len(fixed)
        features = torch.cat([torch.stack([m[0] for m in matching]).to(features.dtype), features])
        held = torch.stack([resize_depth(m[1], self.image_size) for m in matching]).to(depths.dtype)
        depths = torch.cat([held, depths])
        count = features.shape[0]
        newest = torch.arange(max(extra, count - self.config.covisible_edges), count, device=ii.device)
        old = torch.arange(extra, device=ii.device)
        pairs_old, pairs_new = torch.meshgrid(old, newest, indexing="ij")
        ii = torch.cat([ii + extra, pairs_old.flatten(), pairs_new.flatten()])
        jj = torch.cat([jj + extra, pairs_new.flatten(), pairs_old.flatten()])
        return features, depths, ii, jj

    def _optimise_poses(
        self, features: torch.Tensor, depths: torch.Tensor, poses: SE3, ii: torch.Tensor, jj: torch.Tensor
    ) -> SE3:
        """Pose-only global optimization of the window (depths held): SE3 (N,) world-to-camera
        from (N, C, h, w) motion features, (N, H, W) depths and SE3 (N,) poses."""
        small = resize_depth(depths[None], (features.shape[-2], features.shape[-1]))
        poses = poses[None]
        with torch.no_grad():
            for _ in range(self.config.pose_steps):
                flow = self.motion_module.flow(
                    features[None], small, poses, self.intrinsics[None], ii, jj, self.image_size
                )
                poses = gauss_newton_step(poses, small, flow.intrinsics, ii, jj, flow.targets, flow.weights)
        return poses[0]

    def _update_depths(
        self,
        window: list[Keyframe],
        poses: SE3,
        current: torch.Tensor | None,
        current_confidences: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The newest ``config.depth_updates`` window keyframes' depths with the other window
        keyframes as neighbours; where the new estimate is not confident the ``current`` (K, H, W)
        depth and confidence stay (None: the keyframes' own), and the older keyframes keep theirs."""
        # window keyframes are not compacted: features, depths and confidences are set (see Keyframe)
        features = torch.stack([cast(torch.Tensor, kf.depth_features) for kf in window])
        depths = list(current) if current is not None else [cast(torch.Tensor, kf.depth) for kf in window]
        confidences = (
            list(current_confidences)
            if current_confidences is not None
            else [cast(torch.Tensor, kf.confidence) for kf in window]
        )
        for k in range(max(0, len(window) - self.config.depth_updates), len(window)):
            keyframe = window[k]
            assert keyframe.depth is not None and keyframe.confidence is not None  # in the window
            order = [k] + [m for m in range(len(window)) if m != k]
            estimate = self.depth_module.depth(
                features[order][None], SE3(poses.data[order][None]), self.intrinsics[None], self.image_size
            )
            confident = (estimate.confidence[0] > CONFIDENT_DEPTH) & (estimate.depth[0] > 0)
            depths[k] = torch.where(confident, estimate.depth[0], depths[k])
            confidences[k] = torch.maximum(
                torch.where(confident, estimate.confidence[0], torch.zeros_like(keyframe.depth)), confidences[k]
            )
        return torch.stack(depths), torch.stack(confidences)


class BackendThread(threading.Thread):
    """Runs ``work`` (a backend pass: :meth:`Backend.optimise` and what follows it), then
    ``follow_up`` (work tracking need not wait for: loop closure), whenever a new keyframe
    arrives, until stopped; errors are kept in ``error`` for the main thread to report.
    Keyframes that arrive during a pass are taken together by the next one. A pass counts as
    finished (see :attr:`lag`) when ``work`` returns, before ``follow_up``. The thread runs
    torch with ``torch_threads`` threads of its own."""

    def __init__(
        self, work: Callable[[], object], follow_up: Callable[[], object] | None = None, torch_threads: int = 1
    ):
        super().__init__(name="v2d-backend", daemon=True)
        self.work = work
        self.follow_up = follow_up
        self.torch_threads = torch_threads
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._progress = threading.Condition()
        self._notified = 0  # keyframes notified so far
        self._covered = 0  # of those, the ones notified before the last finished pass began
        self.error: BaseException | None = None

    def notify(self) -> None:
        """A new keyframe is in the map."""
        with self._progress:
            self._notified += 1
        self._wake.set()

    @property
    def lag(self) -> int:
        """Keyframes notified that no finished pass has seen yet."""
        with self._progress:
            return self._notified - self._covered

    def wait_for_lag(self, max_lag: int) -> None:
        """Block until at most ``max_lag`` keyframes are left that no finished pass has seen
        (at once when the thread has stopped or failed)."""
        with self._progress:
            while self._notified - self._covered > max_lag and self.is_alive() and self.error is None:
                self._progress.wait(timeout=0.1)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKEND_NICENESS)
        except (AttributeError, OSError):  # no per-thread priorities here (e.g. Windows): run as is
            log.debug("could not lower the backend thread's priority")
        pin_torch_threads(self.torch_threads)  # this thread's own: tracking keeps its count
        try:
            while not self._stopping.is_set():
                if not self._wake.wait(timeout=0.1):
                    continue
                self._wake.clear()
                if not self._stopping.is_set():
                    with self._progress:
                        seen = self._notified
                    self.work()
                    with self._progress:
                        self._covered = seen
                        self._progress.notify_all()
                    if self.follow_up is not None:
                        self.follow_up()
        except BaseException as err:  # reported by the main thread; the frontend's work is kept
            self.error = err
            log.exception("backend failed")
        finally:
            with self._progress:
                self._progress.notify_all()
