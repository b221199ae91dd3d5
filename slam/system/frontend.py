"""The frontend: feeds every frame to the map. It gathers frames for the cold start
(:mod:`.initializer`), tracks each later frame against the current keyframe (:mod:`.tracker`),
decides what the frame is (:mod:`.keyframe_policy`). A frame that asks for a new keyframe is
first tracked against keyframes of the map that see its view (``reuse_keyframes``): one that
tracks it well becomes the current keyframe, and the map is reused instead of extended.
Otherwise the frame gets its depth (:mod:`.keyframe_depth`): in a worker thread while the next
frames are tracked against the previous keyframe (``keyframe_lag``), so that a keyframe does
not stall the camera. When
tracking is lost for longer than ``max_lost`` frames, each new frame is registered against the
map's keyframes (:mod:`.relocalizer`) and tracking resumes in the same map, at the same scale,
from the first that matches; only after ``relocalize_frames`` frames that match nothing does a
new map segment start from a cold start.

Poses are world-to-camera SE3 (``G``). A tracked frame is stored relative to its keyframe
(``frame_from_keyframe = G_frame G_keyframe^-1``), so it follows the keyframe when the backend
moves it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast

import torch

from networks.interfaces import DepthModule, MotionModule
from slam.config.schema import FrontendConfig
from slam.geometry.lie import SE3
from slam.io.frame import Frame
from slam.system.bundle import BundleAdjuster, view_confidence
from slam.system.covisibility import reusable_keyframes
from slam.system.initializer import cold_start, initial_picks
from slam.system.keyframe_depth import KeyframeDepth
from slam.system.keyframe_policy import is_lost, keyframe_reason
from slam.system.machine import pin_torch_threads, torch_threads
from slam.system.map import FrameRecord, Keyframe, MapState, segment_roots, translation_scaled
from slam.system.places import appearance
from slam.system.relocalizer import Relocalization, Relocalizer
from slam.system.stage_times import StageTimes
from slam.system.tracker import Tracker, TrackingResult

log = logging.getLogger(__name__)

#: a keyframe of the map is tried in place of a new one when at least this share of its pixels
#: with depth land inside the frame at the current poses
REUSE_OVERLAP = 0.5


def image_tensor(frame: Frame, device: torch.device) -> torch.Tensor:
    """(3, H, W) float32 RGB in [0, 1] of a frame's image."""
    return torch.from_numpy(frame.image).to(device).permute(2, 0, 1).float().div_(255.0)


@dataclass
class _Recent:
    """A tracked frame kept as a candidate neighbour for the next keyframe's depth."""

    record: FrameRecord
    image: torch.Tensor


@dataclass
class _Built:
    """A new keyframe's depth work: its pose relative to the previous keyframe (``G_new
    G_previous^-1``, refined), depth and confidence (H, W) and depth features (C, h, w); depth
    None when the depth module's was not finite (no keyframe is made). ``refinement_failed``:
    the refinement was not finite and was dropped (the depth module's depth and the tracked pose
    stay). ``confidence_from_views``: the confidence is the refinement's view support (see
    :attr:`Keyframe.confidence`)."""

    frame_from_previous: SE3
    depth: torch.Tensor | None
    confidence: torch.Tensor | None
    depth_features: torch.Tensor | None
    confidence_from_views: bool = False
    refinement_failed: bool = False


@dataclass
class _Building:
    """A keyframe whose depth is being computed in the worker thread: its frame (recorded as
    tracked against ``previous`` until the keyframe joins the map), image (3, H, W), motion
    features (C, h, w), the frames that arrived since (``waited``), and the records and motion
    features of those tracked (against ``previous``: tracked again against the new keyframe
    when it joins); ``previous_rescaled_by``: the previous keyframe's
    :attr:`Keyframe.rescaled_by` when the work began."""

    result: Future[_Built]
    frame: Frame
    image: torch.Tensor
    previous: Keyframe
    motion_features: torch.Tensor
    record: FrameRecord
    previous_rescaled_by: float
    waited: int = 0
    tracked: list[tuple[FrameRecord, torch.Tensor]] = field(default_factory=list)


class Frontend:
    """Feeds frames to the map. ``on_keyframe`` is called (in the frontend's thread) after each
    new keyframe is added to the map."""

    def __init__(
        self,
        depth_module: DepthModule,
        motion_module: MotionModule,
        map_state: MapState,
        config: FrontendConfig,
        intrinsics: torch.Tensor,
        image_size: tuple[int, int],
        device: torch.device,
        bundle: BundleAdjuster,
        on_keyframe: Callable[[Keyframe], None] | None = None,
        keyframes_when_ready: bool = True,
        worker_threads: int = 1,
    ):
        """``intrinsics``: (4,) at the processing resolution ``image_size`` (H, W).
        ``keyframes_when_ready``: a keyframe computed in the worker thread joins the map as soon
        as it is ready (False: exactly ``config.keyframe_lag`` frames later, for runs that repeat
        exactly). ``worker_threads``: torch threads of the worker thread."""
        self.depth_module = depth_module
        self.motion_module = motion_module
        self.map = map_state
        self.config = config
        self.intrinsics = intrinsics.to(device)
        self.image_size = image_size
        self.device = device
        self.on_keyframe = on_keyframe
        self.worker_threads = worker_threads
        self.tracker = Tracker(motion_module, config, intrinsics, image_size, device)
        self.keyframe_depth = KeyframeDepth(depth_module, map_state, bundle, config, intrinsics, image_size, device)
        self.relocalizer = Relocalizer(self.tracker, map_state, config)
        self.times = StageTimes()  # tracking, relocalization, waits: the tracking thread's
        self.keyframe_times = StageTimes()  # keyframe depth and refinement: the worker's
        self.keyframes_when_ready = keyframes_when_ready
        self._worker: ThreadPoolExecutor | None = None  # made with the first keyframe it computes
        self._building: _Building | None = None
        self._keyframe: Keyframe | None = None
        self._pending: list[tuple[Frame, torch.Tensor]] = []  # frames awaiting initialisation
        self._recent: deque[_Recent] = deque(maxlen=4 * config.neighbours)
        # the last good pose relative to the current keyframe (G_last G_keyframe^-1), and the
        # velocity G_last G_before^-1 (None until two frames were tracked on one keyframe)
        self._last: tuple[SE3, SE3 | None] | None = None
        self._anchor_w2c = SE3.identity(device=device)  # world pose of the next initialisation
        self._lost = 0
        # while relocalizing: the last tracked world pose, and the frames with texture tried so far
        self._lost_w2c: SE3 | None = None
        self._tried = 0
        self.counts = {
            "tracked": 0,
            "lost": 0,
            "blank": 0,
            "keyframes": 0,
            "initialisations": 0,
            "relocalizations": 0,
            "reused_keyframes": 0,  # frames that asked for a keyframe and were tracked on an old one
            "nonfinite_depths": 0,  # keyframe depths and refinements dropped for NaN or inf values
        }

    # ------------------------------------------------------------------ public
    def process(self, frame: Frame) -> None:
        """Track one frame (or buffer it until initialisation, or relocalize it), updating the
        map. A blank frame (black, saturated, textureless: see :mod:`.places`) is lost: it never
        becomes a keyframe or part of a cold start."""
        image = image_tensor(frame, self.device)
        look = appearance(image)
        if look.blank:  # nothing to track or map in it: lost, whatever else goes on
            self.counts["blank"] += 1
            self._record_lost(frame, "blank image", status="blank")
            return
        if self.relocalizing:
            self._relocalize(frame, image, look.descriptor)
            return
        if self.keyframe is None:
            self._pending.append((frame, image))
            if len(self._pending) >= self.config.init_frames:
                self._initialise()
            return
        self._track_and_record(frame, image)

    def finish(self) -> None:
        """Flush frames still waiting for initialisation (a short sequence), add the keyframe
        being computed to the map (waiting for it; when its computation failed, the error is
        logged and its frame stays a tracked one), stop the worker thread."""
        try:
            if self.keyframe is None and len(self._pending) >= 2:
                self._initialise()
            for frame, _ in self._pending:
                self._record_lost(frame, "not initialised")
            self._pending.clear()
            try:
                self._join_built_keyframe(wait=True)
            except Exception as err:  # the rest of the run is kept
                log.error("the last keyframe's depth failed (%s): its frame stays a tracked one", err)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the worker thread (after the keyframe it computes, if any, which is dropped
        unless :meth:`finish` added it)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        self._building = None

    @property
    def keyframe(self) -> Keyframe | None:
        """The keyframe frames are tracked against (None: none, before a cold start or while
        relocalizing); the map knows it (:attr:`MapState.tracked_keyframe_id`)."""
        return self._keyframe

    @keyframe.setter
    def keyframe(self, keyframe: Keyframe | None) -> None:
        with self.map.lock:
            self._keyframe = keyframe
            self.map.tracked_keyframe_id = None if keyframe is None else keyframe.id

    @property
    def relocalizing(self) -> bool:
        """Whether tracking is lost and frames are being registered against the map."""
        return self._lost_w2c is not None

    def start_pose(self) -> SE3:
        """Where tracking starts the next frame: the last good pose moved on by the constant
        velocity, relative to the current keyframe (``G_frame G_keyframe^-1``). Only once
        initialised."""
        if self._last is None:
            raise RuntimeError("the frontend is not initialised")
        last, velocity = self._last
        return velocity * last if velocity is not None else last

    # ------------------------------------------------------------------ initialisation
    def _initialise(self) -> None:
        """Cold start on the pending frames (the first is the keyframe), then track the others."""
        frames = self._pending
        self._pending = []
        images = torch.stack([frames[k][1] for k in initial_picks(len(frames), self.config.neighbours)])
        # the keyframe worker has nothing to compute before there is a map: its threads help
        with self.times.measure("cold_start"), torch_threads(torch.get_num_threads() + self.worker_threads):
            started = cold_start(self.depth_module, self.motion_module, images, self.intrinsics, self.config)
        first, image = frames[0]
        if started is None:  # no map from a broken depth: the frames are lost, the next ones try again
            self._depth_not_finite(first, "cold start's depth")
            for frame, _ in frames:
                self._record_lost(frame, "cold start depth not finite")
            return
        depth, confidence = started
        keyframe = self._add_keyframe(first, image, self._anchor_w2c, depth, confidence)
        self.map.add_frame(
            FrameRecord(first.index, first.timestamp, keyframe.id, SE3.identity(device=self.device), "keyframe")
        )
        self.counts["initialisations"] += 1
        self.counts["tracked"] += 1
        self._last = (SE3.identity(device=self.device), None)
        self._lost = 0
        log.info("initialised at frame %d from %d frames", first.index, len(frames))
        for k in range(1, len(frames)):
            if self.keyframe is None:  # lost again while catching up: the rest go as new frames go
                for frame, _ in frames[k:]:
                    self.process(frame)
                break
            self._track_and_record(*frames[k])

    # ------------------------------------------------------------------ tracking
    def _track_and_record(self, frame: Frame, image: torch.Tensor) -> None:
        self._join_built_keyframe()
        assert self.keyframe is not None and self._last is not None  # only once initialised
        with self.times.measure("tracking"):
            features = self.motion_module.encode(image[None, None])[0, 0]
            result = self.tracker.track(self.keyframe, features, self.start_pose())
        far = is_lost(result, self.config) or result.quality < self.config.keyframe_quality
        if self._building is not None and far:
            # too far from the previous keyframe: wait for the next one and track against it
            built = self._join_built_keyframe(wait=True)
            if built is not None:
                with self.times.measure("tracking"):
                    again = self.tracker.track(self.keyframe, features, self.start_pose())
                if is_lost(again, self.config) and not is_lost(result, self.config):
                    # the previous keyframe's pose of it stands, relative to the new keyframe
                    relative = result.frame_from_keyframe * built.frame_from_previous.inv()
                    again = dataclasses.replace(result, frame_from_keyframe=relative)
                result = again
        last = self._last[0]
        if is_lost(result, self.config):
            self._record_lost(frame, f"quality {result.quality:.3f}" if result.finite else "pose not finite")
            return
        relative = result.frame_from_keyframe
        self._lost = 0
        self._last = (relative, relative * last.inv())  # both relative to the same keyframe
        self.counts["tracked"] += 1
        if self._building is None and keyframe_reason(result, self.config) is not None:
            if not self._reuse_keyframe(frame, image, result, features):
                self._new_keyframe(frame, image, result, features)
            return
        record = self._record_tracked(frame, image, relative)
        if self._building is not None:  # the next keyframe is on its way: none before it joins
            self._building.tracked.append((record, features))

    def _reuse_keyframe(
        self, frame: Frame, image: torch.Tensor, result: TrackingResult, features: torch.Tensor
    ) -> bool:
        """Track a frame that asks for a new keyframe (``result`` against the current one, its
        motion ``features`` (C, h, w)) against keyframes of the map that see its view at the
        current poses with less flow and parallax than ask for a keyframe
        (:func:`reusable_keyframes`, at most ``config.reuse_keyframes``; of the current
        keyframe's map segment, :func:`segment_roots`); when one tracks it well enough not to ask for a keyframe itself,
        the best of those becomes the keyframe tracking uses and the frame is recorded against
        it. Returns whether one did (no new keyframe is then made)."""
        if self.config.reuse_keyframes == 0:
            return False
        current = self.keyframe
        assert current is not None and self._last is not None  # tracked against it
        with self.times.measure("tracking"):  # the search and its tracking
            keyframes = self.map.keyframe_list()
            roots = segment_roots(keyframes)
            frame_w2c = result.frame_from_keyframe * current.pose_w2c
            found = reusable_keyframes(
                frame_w2c,
                [kf for kf in keyframes if roots[kf.id] == roots[current.id] and kf.id != current.id],
                self.config.keyframe_flow,
                self.config.keyframe_parallax,
                REUSE_OVERLAP,
                self.intrinsics,
                self.image_size,
            )
            best: tuple[Keyframe, TrackingResult] | None = None
            for keyframe in found[: self.config.reuse_keyframes]:
                tracked = self.tracker.track(keyframe, features, frame_w2c * keyframe.pose_w2c.inv())
                good = not is_lost(tracked, self.config) and keyframe_reason(tracked, self.config) is None
                if good and (best is None or tracked.quality > best[1].quality):
                    best = (keyframe, tracked)
        if best is None:
            return False
        keyframe, tracked = best
        self.keyframe = keyframe
        self._last = (tracked.frame_from_keyframe, self._last[1])  # the velocity is frame to frame
        self._record_tracked(frame, image, tracked.frame_from_keyframe)
        self.counts["reused_keyframes"] += 1
        log.debug(
            "frame %d tracked against keyframe %d again (quality %.2f)", frame.index, keyframe.id, tracked.quality
        )
        return True

    def _record_tracked(
        self, frame: Frame, image: torch.Tensor, frame_from_keyframe: SE3, neighbour: bool = True
    ) -> FrameRecord:
        """Add a tracked frame (``image`` (3, H, W)) at ``frame_from_keyframe`` (``G_frame
        G_keyframe^-1``) to the map, and keep it as a neighbour for the next keyframe's depth
        (unless ``neighbour`` is False); returns its record."""
        assert self.keyframe is not None  # tracked against it
        record = FrameRecord(frame.index, frame.timestamp, self.keyframe.id, frame_from_keyframe)
        self.map.add_frame(record)
        if neighbour:
            self._recent.append(_Recent(record, image))
        return record

    def _depth_not_finite(self, frame: Frame, what: str) -> None:
        """Count a depth (``what``) computed at ``frame`` that held NaN or infinite values and was
        dropped; warn the first time only (the count goes on in ``counts``)."""
        self.counts["nonfinite_depths"] += 1
        if self.counts["nonfinite_depths"] == 1:
            log.warning(
                "frame %d: the %s holds NaN or infinite values and is dropped (later ones are only counted)",
                frame.index,
                what,
            )

    def _record_lost(self, frame: Frame, why: str, status: str = "lost") -> None:
        """Record ``frame`` as not tracked (``status``: lost, or blank for a blank image), for
        the reason ``why`` (logged); after ``max_lost`` in a row, tracking gives up its keyframe."""
        self.map.add_frame(
            FrameRecord(frame.index, frame.timestamp, -1 if self.keyframe is None else self.keyframe.id, None, status)
        )
        self.counts["lost"] += 1
        self._lost += 1
        log.debug("frame %d lost (%s)", frame.index, why)
        if self.keyframe is not None and self._lost > self.config.max_lost:
            assert self._last is not None  # set with the first keyframe
            self._join_built_keyframe(wait=True)  # (only blank frames get here with one on its way)
            lost_w2c = self._last[0] * self.keyframe.pose_w2c
            self.keyframe = None
            self._recent.clear()
            if self.config.relocalize_frames > 0:
                log.warning("tracking lost for %d frames at frame %d: relocalizing", self._lost, frame.index)
                self._lost_w2c, self._tried = lost_w2c, 0
            else:
                self._new_segment(lost_w2c, frame.index)

    def _new_segment(self, lost_w2c: SE3, index: int) -> None:
        """Give up on the map: the next frames gather for a cold start, at the last tracked pose."""
        log.warning("a new map segment starts after frame %d, from the last tracked pose", index)
        self._anchor_w2c = lost_w2c
        self._lost_w2c = None

    # ------------------------------------------------------------------ relocalization
    def _relocalize(self, frame: Frame, image: torch.Tensor, descriptor: torch.Tensor) -> None:
        """Register a frame (not blank; appearance ``descriptor`` (D,)) against the map's
        keyframes: tracking resumes from it when one matches; after ``config.relocalize_frames``
        such frames that match nothing, a new map segment starts."""
        assert self._lost_w2c is not None  # relocalizing
        with self.times.measure("relocalization"):
            features = self.motion_module.encode(image[None, None])[0, 0]
            found = self.relocalizer.relocalize(features, descriptor, self._lost_w2c)
        if found is not None:
            self._resume(frame, image, found, features)
            return
        self._tried += 1
        self._record_lost(frame, "not relocalized")
        if self._tried >= self.config.relocalize_frames:
            self._new_segment(self._lost_w2c, frame.index)

    def _resume(self, frame: Frame, image: torch.Tensor, found: Relocalization, features: torch.Tensor) -> None:
        """Tracking resumes at a relocalized frame: it becomes a keyframe, posed against the
        keyframe it matched, with that keyframe's depth carried over (the map's scale)."""
        relative = found.result.frame_from_keyframe
        depth, confidence = self.keyframe_depth.carry(found.keyframe, relative)
        pose_w2c = relative * found.keyframe.pose_w2c
        keyframe = self._add_keyframe(frame, image, pose_w2c, depth, confidence, features, anchor_id=found.keyframe.id)
        self.map.add_frame(
            FrameRecord(frame.index, frame.timestamp, keyframe.id, SE3.identity(device=self.device), "keyframe")
        )
        self._last = (SE3.identity(device=self.device), None)
        self._lost, self._lost_w2c = 0, None
        self.counts["tracked"] += 1
        self.counts["relocalizations"] += 1
        log.info(
            "relocalized at frame %d against keyframe %d (%s match, quality %.2f)",
            frame.index,
            found.keyframe.id,
            found.why,
            found.result.quality,
        )

    # ------------------------------------------------------------------ keyframes
    def _add_keyframe(
        self,
        frame: Frame,
        image: torch.Tensor,
        pose_w2c: SE3,
        depth: torch.Tensor,
        confidence: torch.Tensor,
        motion_features: torch.Tensor | None = None,
        depth_features: torch.Tensor | None = None,
        anchor_id: int | None = None,
        tracked_from_anchor: SE3 | None = None,
        confidence_from_views: bool = False,
    ) -> Keyframe:
        """Add a keyframe to the map (features computed here where not given, (C, h, w) each),
        its pose computed from keyframe ``anchor_id``'s (None: from none); ``tracked_from_anchor``:
        its frame's pose as tracking measured it against that keyframe (see
        :attr:`Keyframe.tracked_from_anchor`); ``confidence_from_views``: ``confidence`` is a view
        support (see :attr:`Keyframe.confidence`)."""
        images = image[None, None]
        if motion_features is None:
            motion_features = self.motion_module.encode(images)[0, 0]
        if depth_features is None:
            depth_features = self.depth_module.encode(images)[0, 0]
        keyframe = Keyframe(
            self.map.new_keyframe_id(),
            frame.index,
            frame.timestamp,
            image,
            pose_w2c,
            depth,
            confidence,
            depth_features=depth_features,
            motion_features=motion_features,
            anchor_id=anchor_id,
            descriptor=appearance(image).descriptor,
            tracked_from_anchor=tracked_from_anchor,
            confidence_from_views=confidence_from_views,
        )
        self.map.add_keyframe(keyframe)
        self.keyframe = keyframe
        self.counts["keyframes"] += 1
        if self.on_keyframe is not None:
            self.on_keyframe(keyframe)
        return keyframe

    def _new_keyframe(
        self, frame: Frame, image: torch.Tensor, result: TrackingResult, motion_features: torch.Tensor
    ) -> None:
        """Make the tracked frame a keyframe: its depth from the depth module with the previous
        keyframe and recent frames as neighbours, then pose and depth refined against the newest
        keyframes (:meth:`_build_keyframe`); in the worker thread when ``config.keyframe_lag`` >
        0 (the frame is recorded as tracked until the keyframe joins the map), else here."""
        previous = self.keyframe
        assert previous is not None  # only once initialised
        recent = list(self._recent)[::-1]
        step = max(1, len(recent) // max(self.config.neighbours - 1, 1))
        with self.map.lock:  # one consistent read: the backend may move the keyframes meanwhile
            previous_w2c, previous_rescaled_by = previous.pose_w2c, previous.rescaled_by
            neighbours = [
                (item.image, self._world_pose(item.record)) for item in recent[::step][: self.config.neighbours - 1]
            ]
        relative = result.frame_from_keyframe
        build = (image, previous, previous_w2c, relative, neighbours, motion_features)
        if self.config.keyframe_lag == 0:
            built = self._build_keyframe(*build)
            if self._add_built_keyframe(frame, image, previous, built, motion_features, relative) is None:
                self._record_tracked(frame, image, built.frame_from_previous)
                return
            self._recent.clear()
            assert self.keyframe is not None and self._last is not None  # the new one; tracked since the first
            identity = SE3.identity(device=self.device)
            self.map.add_frame(FrameRecord(frame.index, frame.timestamp, self.keyframe.id, identity, "keyframe"))
            self._last = (identity, self._last[1])  # the frame is the keyframe now
            return
        self._recent.clear()
        record = self._record_tracked(frame, image, relative, neighbour=False)
        if self._worker is None:
            self._worker = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix="v2d-keyframe",
                initializer=pin_torch_threads,  # per thread: tracking keeps its own count
                initargs=(self.worker_threads,),
            )
        future = self._worker.submit(self._build_keyframe, *build)
        self._building = _Building(future, frame, image, previous, motion_features, record, previous_rescaled_by)

    def _world_pose(self, record: FrameRecord) -> SE3:
        """World-to-camera pose of a tracked frame, from its keyframe's pose now."""
        with self.map.lock:
            keyframe_w2c = self.map.keyframes[record.keyframe_id].pose_w2c
        return cast(SE3, record.frame_from_keyframe) * keyframe_w2c  # tracked: not None

    def _build_keyframe(
        self,
        image: torch.Tensor,
        previous: Keyframe,
        previous_w2c: SE3,
        frame_from_previous: SE3,
        neighbours: list[tuple[torch.Tensor, SE3]],
        motion_features: torch.Tensor,
    ) -> _Built:
        """A new keyframe's depth work (see :class:`_Built`): the depth module's estimate
        (:meth:`KeyframeDepth.estimate`, arguments as there), then the refinement. Any thread."""
        with self.keyframe_times.measure("keyframe_depth"):
            estimated = self.keyframe_depth.estimate(image, previous, previous_w2c, frame_from_previous, neighbours)
        if estimated is None:
            return _Built(frame_from_previous, None, None, None)
        depth, confidence, depth_features = estimated
        if self.config.refine_keyframes == 0:
            return _Built(frame_from_previous, depth, confidence, depth_features)
        with self.keyframe_times.measure("keyframe_refinement"):
            refined = self.keyframe_depth.refine(previous, frame_from_previous, depth, motion_features)
        if refined is None:
            return _Built(frame_from_previous, depth, confidence, depth_features, refinement_failed=True)
        refined_from_previous, refined_depth, support = refined
        if support is None:  # nothing to refine against: the depth module's confidence stays
            return _Built(refined_from_previous, refined_depth, confidence, depth_features)
        confidence = view_confidence(confidence, support, from_views=False)
        return _Built(refined_from_previous, refined_depth, confidence, depth_features, confidence_from_views=True)

    def _join_built_keyframe(self, wait: bool = False) -> _Built | None:
        """Add the keyframe the worker computes to the map once it is ready (and
        ``keyframes_when_ready``), or once ``config.keyframe_lag`` frames have arrived since it
        was started (waiting for it then), or now with ``wait``. Called before each frame is
        tracked. Returns the work of the keyframe that joined (None: none did). An error of the
        worker is raised here (once); an interruption while waiting keeps the keyframe on its
        way."""
        building = self._building
        if building is None:
            return None
        due = building.waited >= self.config.keyframe_lag
        if not (wait or due or (self.keyframes_when_ready and building.result.done())):
            building.waited += 1
            return None
        try:
            with self.times.measure("waiting_for_keyframe"):
                built = building.result.result()
        finally:
            if building.result.done():
                self._building = None
        with self.map.lock:  # its record is in the map, rescaled with the previous keyframe
            tracked = building.record.frame_from_keyframe
            factor = building.previous.rescaled_by / building.previous_rescaled_by
        if factor != 1.0:  # a correction rescaled the previous keyframe meanwhile: the work follows it
            built = dataclasses.replace(
                built,
                frame_from_previous=translation_scaled(built.frame_from_previous, factor),
                depth=None if built.depth is None else built.depth * factor,
            )
        keyframe = self._add_built_keyframe(
            building.frame, building.image, building.previous, built, building.motion_features, tracked
        )
        if keyframe is None:  # its frame stays the tracked one it was recorded as
            return None
        assert self._last is not None  # tracked since the first keyframe
        velocity = self._last[1]
        self._last = (SE3.identity(device=self.device), velocity)  # unless a frame was tracked since
        moves: list[tuple[FrameRecord, SE3]] = []
        with self.times.measure("tracking_again"):
            for record, features in building.tracked:
                assert record.frame_from_keyframe is not None  # tracked
                start = record.frame_from_keyframe * built.frame_from_previous.inv()
                result = self.tracker.track(keyframe, features, start)
                again = result.frame_from_keyframe if not is_lost(result, self.config) else start
                moves.append((record, again))
                self._last = (again, velocity)
        with self.map.lock:  # readers see the keyframe's frame and the frames tracked since move at once
            self.map.make_keyframe_record(building.record, keyframe.id)
            for record, again in moves:
                self.map.move_frame_record(record, keyframe.id, again)
        return built

    def _add_built_keyframe(
        self,
        frame: Frame,
        image: torch.Tensor,
        previous: Keyframe,
        built: _Built,
        motion_features: torch.Tensor,
        tracked_from_previous: SE3 | None,
    ) -> Keyframe | None:
        """Add the keyframe of ``frame`` to the map from its depth work (``built``), posed
        against the ``previous`` keyframe as it is now, and return it; None when its depth was
        not finite (no keyframe: the frame is an ordinary tracked one). The frame's record is
        the caller's; ``tracked_from_previous`` is its tracked pose (``G_frame G_previous^-1``)."""
        if built.depth is None or built.confidence is None:
            self._depth_not_finite(frame, "keyframe depth")
            return None
        if built.refinement_failed:  # the keyframe keeps the depth module's depth and the tracked pose
            self._depth_not_finite(frame, "keyframe refinement")
        pose_w2c = built.frame_from_previous * previous.pose_w2c  # anchored to the previous keyframe as it is now
        return self._add_keyframe(
            frame,
            image,
            pose_w2c,
            built.depth,
            built.confidence,
            motion_features,
            built.depth_features,
            anchor_id=previous.id,
            tracked_from_anchor=tracked_from_previous,
            confidence_from_views=built.confidence_from_views,
        )
