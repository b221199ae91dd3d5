"""The frontend: cold-start initialisation, tracking of every frame against the newest keyframe
(the motion module in keyframe mode), keyframe selection, new keyframe depth, tracking loss
and recovery.

Poses are world-to-camera SE3 (``G``). A tracked frame is stored relative to its keyframe
(``T = G_frame G_keyframe^-1``), so it follows the keyframe when the backend moves it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from networks.deepv2d import AlternationConfig, DeepV2D
from networks.interfaces import DepthModule, MotionModule
from slam.config.schema import FrontendConfig
from slam.geometry.lie import SE3
from slam.geometry.projection import (
    MIN_DEPTH,
    backproject,
    pixel_grid,
    project,
    reproject,
)
from slam.geometry.resize import resize_depth
from slam.geometry.solver import gauss_newton_step, pool_correspondences
from slam.io.frame import Frame
from slam.system.bundle import BundleAdjuster
from slam.system.map import FrameRecord, Keyframe, MapState

log = logging.getLogger(__name__)

#: depth confidence above which a new keyframe's own estimate replaces the propagated depth
CONFIDENT_DEPTH = 0.3


def image_tensor(frame: Frame, device: torch.device) -> torch.Tensor:
    """(3, H, W) float32 RGB in [0, 1] of a frame's image."""
    return torch.from_numpy(frame.image).to(device).permute(2, 0, 1).float().div_(255.0)


def propagate_depth(depth: torch.Tensor, T_ji: SE3, intrinsics: torch.Tensor) -> torch.Tensor:
    """Forward-splat (H, W) depth of camera i into camera j (``T_ji``: SE3 (), i to j; both with
    (4,) intrinsics at this resolution): (H, W) depth of j, the nearest surface per pixel, 0 where
    nothing lands."""
    height, width = depth.shape
    points = T_ji.view(1, 1, 1).act(backproject(depth[None], intrinsics[None]))[0]
    coords = project(points, intrinsics, extra_dims=2)
    z = points[..., 2]
    valid = (z > MIN_DEPTH) & (depth > 0)
    u, v = coords[..., 0].round().long(), coords[..., 1].round().long()
    keep = valid & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    flat = torch.full((height * width,), float("inf"), dtype=depth.dtype, device=depth.device)
    flat.scatter_reduce_(0, (v[keep] * width + u[keep]), z[keep], reduce="amin")
    out = flat.view(height, width)
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def fill_invalid(depth: torch.Tensor, fallback: float) -> torch.Tensor:
    """Replace invalid (<= 0) depths by the median of the valid ones (``fallback`` if none)."""
    valid = depth > 0
    value = depth[valid].median() if valid.any() else depth.new_tensor(fallback)
    return torch.where(valid, depth, value)


def induced_flow(depth: torch.Tensor, T_ji: SE3, intrinsics: torch.Tensor) -> tuple[float, float]:
    """Mean flow that the motion ``T_ji`` (SE3 (), camera i to camera j) induces on camera i's
    pixels with (h, w) ``depth`` (> 0 where known; (4,) intrinsics at that size), in its pixels,
    and the parallax: the mean of the part of it that the translation causes (the flow less
    that of the rotation alone), which a turn on the spot leaves at zero. (0, 0) when no pixel
    with depth stays in front of camera j."""
    rotation = SE3(torch.cat([torch.zeros_like(T_ji.data[:3]), T_ji.data[3:]]))
    coords, valid, _, _ = reproject(depth[None].expand(2, -1, -1), SE3.stack([T_ji, rotation]),
                                    intrinsics[None].expand(2, -1))
    valid = valid[0]
    if not valid.any():
        return 0.0, 0.0
    grid = pixel_grid(*depth.shape, dtype=depth.dtype, device=depth.device)
    return (float((coords[0] - grid).norm(dim=-1)[valid].mean()),
            float((coords[0] - coords[1]).norm(dim=-1)[valid].mean()))


@dataclass
class _Recent:
    """A tracked frame kept as a candidate neighbour for the next keyframe's depth."""

    record: FrameRecord
    image: torch.Tensor


class Frontend:
    """Feeds frames to the map. ``on_keyframe`` is called (in the frontend's thread) after each
    new keyframe is added to the map."""

    def __init__(self, depth_module: DepthModule, motion_module: MotionModule, map_state: MapState,
                 config: FrontendConfig, intrinsics: torch.Tensor, image_size: tuple[int, int],
                 device: torch.device, bundle: BundleAdjuster, on_keyframe: Callable[[Keyframe], None] | None = None):
        self.depth_module = depth_module
        self.bundle = bundle
        self.motion_module = motion_module
        self.map = map_state
        self.config = config
        self.intrinsics = intrinsics.to(device)          # (4,) at the processing resolution
        self.image_size = image_size                      # (H, W)
        self.device = device
        self.on_keyframe = on_keyframe
        self.keyframe: Keyframe | None = None
        self._keyframe_small_depth: tuple[torch.Tensor, ...] | None = None  # (source depth, resized, pooled)
        self._pending: list[tuple[Frame, torch.Tensor]] = []   # frames awaiting initialisation
        self._recent: deque[_Recent] = deque(maxlen=4 * config.neighbours)
        # (last good pose relative to the current keyframe, G_last G_keyframe^-1; velocity G_last G_before^-1)
        self._last: tuple[SE3, SE3 | None] | None = None
        self._anchor = SE3.identity(device=device)           # world pose of the next initialisation
        self._lost = 0
        self.counts = {"tracked": 0, "lost": 0, "keyframes": 0, "initialisations": 0}
        self._ii = torch.zeros(1, dtype=torch.long, device=device)
        self._jj = torch.ones(1, dtype=torch.long, device=device)

    # ------------------------------------------------------------------ public
    def process(self, frame: Frame) -> None:
        """Track one frame (or buffer it until initialisation), updating the map."""
        image = image_tensor(frame, self.device)
        if self.keyframe is None:
            self._pending.append((frame, image))
            if len(self._pending) >= self.config.init_frames:
                self._initialise()
            return
        self._track_and_record(frame, image)

    def finish(self) -> None:
        """Flush frames still waiting for initialisation (a short sequence)."""
        if self.keyframe is None and len(self._pending) >= 2:
            self._initialise()
        for frame, _ in self._pending:
            self._record_lost(frame, "not initialised")
        self._pending.clear()

    # ------------------------------------------------------------------ initialisation
    def _initialise(self) -> None:
        """Cold start: DeepV2D's alternation from constant depth on the pending frames (the first
        is the keyframe, the neighbours spread over the rest), then track the others."""
        frames = self._pending
        self._pending = []
        count = min(self.config.neighbours, len(frames) - 1)
        picks = [0] + [round(1 + k * (len(frames) - 2) / max(count - 1, 1)) for k in range(count)]
        images = torch.stack([frames[k][1] for k in picks])[None]
        alternation = DeepV2D(self.depth_module, self.motion_module,
                              AlternationConfig(rounds=self.config.init_rounds, init="constant",
                                                constant_depth=self.config.init_depth))
        with torch.no_grad():
            result = alternation(images, self.intrinsics[None])
        depth = fill_invalid(result.depth[0], self.config.init_depth)
        confidence = result.depth_estimates[-1].confidence[0]
        first, image = frames[0]
        keyframe = self._add_keyframe(first, image, self._anchor, depth, confidence)
        self.map.add_frame(FrameRecord(first.index, first.timestamp, keyframe.id, SE3.identity(device=self.device),
                                       "keyframe"))
        self.counts["initialisations"] += 1
        self.counts["tracked"] += 1
        self._last = (SE3.identity(device=self.device), None)
        self._lost = 0
        log.info("initialised at frame %d from %d frames", first.index, len(frames))
        for k in range(1, len(frames)):
            if self.keyframe is None:  # lost again while catching up: the rest wait for the next start
                self._pending = frames[k:]
                break
            self._track_and_record(*frames[k])

    # ------------------------------------------------------------------ tracking
    def _small_keyframe_depth(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The keyframe's depth at the motion module's feature resolution and at the tracking
        solve's ``config.tracking_pool`` times coarser grid (both recomputed when the backend
        replaces the keyframe's depth)."""
        depth = self.keyframe.depth
        if self._keyframe_small_depth is None or self._keyframe_small_depth[0] is not depth:
            height, width = self.keyframe.motion_features.shape[-2:]
            pool = self.config.tracking_pool
            small = resize_depth(depth[None, None], (height, width))[0, 0]
            self._keyframe_small_depth = (depth, small, resize_depth(small, (height // pool, width // pool)))
        return self._keyframe_small_depth[1:]

    def track(self, features: torch.Tensor, start: SE3) -> tuple[SE3, float, float, float]:
        """Pose of a frame with motion ``features`` (C, h, w) against the current keyframe, from
        ``start``; both relative to the keyframe (``T = G_frame G_keyframe^-1``, world-to-camera
        ``G``), because the backend may move the keyframe at any time. Returns (pose; quality;
        mean induced flow; mean parallax), flows in processing pixels: the parallax is the part
        of the flow that the translation induces (the flow less that of the rotation alone).
        Quality is the mean flow confidence over the keyframe's pixels with depth."""
        keyframe = self.keyframe
        depth, pooled_depth = self._small_keyframe_depth()
        depths = torch.stack([depth, torch.zeros_like(depth)])[None]
        pooled_depths = torch.stack([pooled_depth, torch.zeros_like(pooled_depth)])[None]
        keyframe_pose = keyframe.pose_w2c  # read once
        poses = SE3.stack([keyframe_pose, start * keyframe_pose]).view(1, 2)
        stacked = torch.stack([keyframe.motion_features, features])[None]
        scale = self.image_size[1] / depth.shape[1]  # processing pixels per feature pixel
        has_depth = depth > 0
        any_depth = bool(has_depth.any())
        with torch.no_grad():
            for _ in range(self.config.tracking_steps):
                flow = self.motion_module.flow(stacked, depths, poses, self.intrinsics[None], self._ii, self._jj,
                                               self.image_size)
                targets, weights, intrinsics = pool_correspondences(flow.targets, flow.weights, flow.intrinsics,
                                                                    self.config.tracking_pool)
                poses = gauss_newton_step(poses, pooled_depths, intrinsics, self._ii, self._jj, targets, weights)
                quality = float(flow.weights[0, 0, ..., 0][has_depth].mean()) if any_depth else 0.0
                if self.config.tracking_confident is not None and quality >= self.config.tracking_confident:
                    break  # reliable correspondences: the step has solved the pose
        relative = poses[0, 1] * poses[0, 0].inv()
        induced, parallax = induced_flow(depth, relative, flow.intrinsics[0])
        return relative, quality, induced * scale, parallax * scale

    def _track_and_record(self, frame: Frame, image: torch.Tensor) -> None:
        features = self.motion_module.encode(image[None, None])[0, 0]
        last, velocity = self._last
        start = velocity * last if velocity is not None else last
        relative, quality, induced, parallax = self.track(features, start)
        if quality < self.config.min_quality or not torch.isfinite(relative.data).all():
            self._record_lost(frame, f"quality {quality:.3f}")
            return
        self._lost = 0
        self._last = (relative, relative * last.inv())  # both relative to the same keyframe
        self.counts["tracked"] += 1
        if (parallax > self.config.keyframe_parallax or induced > self.config.keyframe_flow
                or quality < self.config.keyframe_quality):
            self._new_keyframe(frame, image, relative, features)
            return
        record = FrameRecord(frame.index, frame.timestamp, self.keyframe.id, relative)
        self.map.add_frame(record)
        self._recent.append(_Recent(record, image))

    def _record_lost(self, frame: Frame, why: str) -> None:
        self.map.add_frame(FrameRecord(frame.index, frame.timestamp, -1 if self.keyframe is None else self.keyframe.id,
                                       None, "lost"))
        self.counts["lost"] += 1
        self._lost += 1
        log.debug("frame %d lost (%s)", frame.index, why)
        if self.keyframe is not None and self._lost > self.config.max_lost:
            log.warning("tracking lost for %d frames at frame %d: re-initialising from the last good pose",
                        self._lost, frame.index)
            self._anchor = self._last[0] * self.keyframe.pose_w2c
            self.keyframe = None
            self._recent.clear()

    # ------------------------------------------------------------------ keyframes
    def _add_keyframe(self, frame: Frame, image: torch.Tensor, pose: SE3, depth: torch.Tensor,
                      confidence: torch.Tensor, motion_features: torch.Tensor | None = None,
                      depth_features: torch.Tensor | None = None) -> Keyframe:
        """Add a keyframe to the map (features computed here where not given, (C, h, w) each)."""
        images = image[None, None]
        if motion_features is None:
            motion_features = self.motion_module.encode(images)[0, 0]
        if depth_features is None:
            depth_features = self.depth_module.encode(images)[0, 0]
        keyframe = Keyframe(self.map.new_keyframe_id(), frame.index, frame.timestamp, image, pose, depth, confidence,
                            depth_features=depth_features, motion_features=motion_features)
        self.map.add_keyframe(keyframe)
        self.keyframe = keyframe
        self._keyframe_small_depth = None
        self.counts["keyframes"] += 1
        if self.on_keyframe is not None:
            self.on_keyframe(keyframe)
        return keyframe

    def _refine(self, relative: SE3, depth: torch.Tensor, motion_features: torch.Tensor) -> tuple[SE3, torch.Tensor]:
        """A new keyframe's pose relative to the current keyframe (``G_new G_keyframe^-1``, in
        and out) and its (H, W) depth, refined by a dense bundle adjustment against the newest
        ``config.refine_keyframes`` keyframes (held fixed): their correspondences correct the
        depth where the depth module is wrong, before any frame is tracked on it."""
        with self.map.lock:  # one consistent read: the backend writes a pass's poses under this lock
            anchor = self.keyframe.pose_w2c
            newest = [(kf.pose_w2c, kf.motion_features, kf.depth)
                      for kf in self.map.keyframe_list()[-self.config.refine_keyframes:]]
        previous = [item for item in newest if item[1] is not None]
        if not previous:
            return relative, depth
        count = len(previous) + 1
        poses = SE3.stack([item[0] for item in previous] + [relative * anchor])
        features = torch.stack([item[1] for item in previous] + [motion_features])
        depths = torch.stack([item[2].float() for item in previous] + [depth])
        ii = torch.full((count - 1,), count - 1, dtype=torch.long, device=self.device)
        jj = torch.arange(count - 1, device=self.device)
        poses, depths = self.bundle.refine(features, depths, poses, ii, jj, num_fixed=count - 1, flow_steps=1)
        return poses[-1] * anchor.inv(), depths[-1]

    def _new_keyframe(self, frame: Frame, image: torch.Tensor, relative: SE3, motion_features: torch.Tensor) -> None:
        """Make the frame (its pose ``relative`` to the current keyframe, ``G_frame
        G_keyframe^-1``) a keyframe: depth from the depth module with the previous keyframe and
        recent frames as neighbours, falling back to the previous keyframe's depth carried over
        (forward-splatted) where the new estimate is not confident; then pose and depth refined
        against the newest keyframes (:meth:`_refine`)."""
        previous = self.keyframe
        previous_pose = previous.pose_w2c  # read once: the backend may move it meanwhile
        pose = relative * previous_pose
        neighbours = [(previous.image, previous_pose)]
        recent = list(self._recent)[::-1]
        step = max(1, len(recent) // max(self.config.neighbours - 1, 1))
        for item in recent[::step][: self.config.neighbours - 1]:  # tracked against ``previous``, all of them
            neighbours.append((item.image, item.record.frame_from_keyframe * previous_pose))
        # the previous keyframe's features are in the map already; the others are computed once
        images = torch.stack([image] + [n[0] for n in neighbours[1:]])[None]
        poses = SE3.stack([pose] + [n[1] for n in neighbours]).view(1, -1)
        with torch.no_grad():
            encoded = self.depth_module.encode(images)
            features = torch.cat([encoded[:, :1], previous.depth_features[None, None], encoded[:, 1:]], dim=1)
            estimate = self.depth_module.depth(features, poses, self.intrinsics[None], self.image_size)
        carried = propagate_depth(previous.depth, relative, self.intrinsics)
        confident = (estimate.confidence[0] > CONFIDENT_DEPTH) & (estimate.depth[0] > 0)
        depth = torch.where(confident | (carried <= 0), estimate.depth[0], carried)
        depth = fill_invalid(depth, self.config.init_depth)
        confidence = torch.where(confident, estimate.confidence[0], torch.zeros_like(depth))
        if self.config.refine_keyframes > 0:
            relative, depth = self._refine(relative, depth, motion_features)
        pose = relative * previous.pose_w2c  # anchored to the previous keyframe as it is now
        keyframe = self._add_keyframe(frame, image, pose, depth, confidence, motion_features, encoded[0, 0])
        self.map.add_frame(FrameRecord(frame.index, frame.timestamp, keyframe.id, SE3.identity(device=self.device),
                                       "keyframe"))
        self._recent.clear()
        self._last = (SE3.identity(device=self.device), self._last[1])  # the frame is the keyframe now
