"""A new keyframe's depth: the depth module's estimate with the previous keyframe and recent frames
as neighbours, the previous keyframe's depth carried over where the estimate is not confident,
then pose and depth refined by a dense bundle adjustment against the newest keyframes.

Poses are world-to-camera SE3 (``G``); depths are in the map's units."""

from __future__ import annotations

from typing import cast

import torch

from networks.interfaces import DepthModule
from slam.config.schema import FrontendConfig
from slam.geometry.lie import SE3
from slam.geometry.projection import backproject, project, projectable
from slam.geometry.resize import resize_depth
from slam.system.bundle import BundleAdjuster
from slam.system.covisibility import overlaps
from slam.system.map import CONFIDENT_DEPTH, Keyframe, MapState

#: confidence given to depth carried over from an older keyframe to a relocalized one (what the
#: map already knew, seen again): enough for fusion and to be kept over a doubtful estimate
CARRIED_CONFIDENCE = 0.5

#: a new keyframe whose anchor is an old keyframe (tracking came back to it) is refined only
#: against the newest keyframes that see at least this share of its pixels with depth
MIN_REFINE_OVERLAP = 0.5

#: holes left by forward-splatting depth are filled from a grid this many times coarser
CARRY_FILL_STRIDE = 4


def propagate_depth(depth: torch.Tensor, T_ji: SE3, intrinsics: torch.Tensor) -> torch.Tensor:
    """Forward-splat (H, W) depth of camera i into camera j (``T_ji``: SE3 (), i to j; both with
    (4,) intrinsics at this resolution): (H, W) depth of j, the nearest surface per pixel, 0 where
    nothing lands."""
    height, width = depth.shape
    points = T_ji.view(1, 1, 1).act(backproject(depth[None], intrinsics[None]))[0]
    coords = project(points, intrinsics, extra_dims=2)
    z = points[..., 2]
    valid = projectable(points, depth)
    u, v = coords[..., 0].round().long(), coords[..., 1].round().long()
    keep = valid & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    flat = torch.full((height * width,), float("inf"), dtype=depth.dtype, device=depth.device)
    flat.scatter_reduce_(0, (v[keep] * width + u[keep]), z[keep], reduce="amin")
    out = flat.view(height, width)
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def all_finite(*tensors: torch.Tensor) -> bool:
    """Whether every value of ``tensors`` (any shapes, one device) is finite: no NaN from a
    degenerate solve or a network, no infinity. One host sync for all of them."""
    return bool(torch.stack([torch.isfinite(tensor).all() for tensor in tensors]).all())


def fill_invalid(depth: torch.Tensor, fallback: float) -> torch.Tensor:
    """Replace invalid (<= 0) depths by the median of the valid ones (``fallback`` if none)."""
    valid = depth > 0
    value = depth[valid].median() if valid.any() else depth.new_tensor(fallback)
    return torch.where(valid, depth, value)


class KeyframeDepth:
    """Depth of new keyframes (see the module docstring)."""

    def __init__(
        self,
        depth_module: DepthModule,
        map_state: MapState,
        bundle: BundleAdjuster,
        config: FrontendConfig,
        intrinsics: torch.Tensor,
        image_size: tuple[int, int],
        device: torch.device,
    ):
        """``intrinsics``: (4,) at the processing resolution ``image_size`` (H, W)."""
        self.depth_module = depth_module
        self.map = map_state
        self.bundle = bundle
        self.config = config
        self.intrinsics = intrinsics.to(device)
        self.image_size = image_size
        self.device = device

    def estimate(
        self,
        image: torch.Tensor,
        previous: Keyframe,
        previous_w2c: SE3,
        frame_from_previous: SE3,
        neighbours: list[tuple[torch.Tensor, SE3]],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Depth and confidence (H, W) of the new keyframe ``image`` (3, H, W), at
        ``frame_from_previous`` from the ``previous`` keyframe (whose pose was ``previous_w2c``
        when it was read), with that keyframe (when it still has its depth features: it is in
        the window, not an old keyframe tracking came back to) and ``neighbours`` (image
        (3, H, W), pose_w2c) as the depth module's neighbours; and the new keyframe's depth
        features (C, h, w). Where the estimate is not confident, the previous keyframe's depth
        carried over (forward-splatted) stays; the confidence there is 0. With nothing to match
        against (no neighbours, and a previous keyframe without its features), the carried depth
        alone, with :meth:`carry`'s confidence (as a relocalized keyframe's). None when any value of the depth
        module's depth or confidence is not finite (the keyframe is not to be made from it)."""
        pose_w2c = frame_from_previous * previous_w2c
        previous_features = previous.depth_features  # read once: the backend may compact it meanwhile
        previous_depth = self.reference_depth(previous)
        # the previous keyframe's features, when it has them (it is in the window), are in the
        # map already; the others are computed once
        images = torch.stack([image] + [n[0] for n in neighbours])[None]
        with torch.no_grad():
            encoded = self.depth_module.encode(images)
        if previous_features is None and not neighbours:  # nothing to match: the map's depth
            depth, confidence = self.carry(previous, frame_from_previous)
            return depth, confidence, encoded[0, 0]
        poses = [pose_w2c] + [n[1] for n in neighbours]
        features = encoded
        if previous_features is not None:
            poses.insert(1, previous_w2c)
            features = torch.cat([encoded[:, :1], previous_features[None, None], encoded[:, 1:]], dim=1)
        with torch.no_grad():
            estimate = self.depth_module.depth(
                features, SE3.stack(poses).view(1, -1), self.intrinsics[None], self.image_size
            )
        if not all_finite(estimate.depth, estimate.confidence):
            return None
        carried = propagate_depth(previous_depth, frame_from_previous, self.intrinsics)
        confident = (estimate.confidence[0] > CONFIDENT_DEPTH) & (estimate.depth[0] > 0)
        depth = torch.where(confident | (carried <= 0), estimate.depth[0], carried)
        depth = fill_invalid(depth, self.config.init_depth)
        confidence = torch.where(confident, estimate.confidence[0], torch.zeros_like(depth))
        return depth, confidence, encoded[0, 0]

    def reference_depth(self, keyframe: Keyframe) -> torch.Tensor:
        """The (H, W) float32 depth of a keyframe at the processing size, in the map's units: the
        window's, or a compacted or released keyframe's place record's, resized. ValueError for a
        keyframe that holds neither."""
        depth = keyframe.depth  # read once: the archive may release the keyframe meanwhile
        source = depth if depth is not None else keyframe.place_depth
        if source is None:
            raise ValueError(f"keyframe {keyframe.id} holds no depth")
        return (
            source.float() if tuple(source.shape) == self.image_size else resize_depth(source.float(), self.image_size)
        )

    def carry(self, reference: Keyframe, frame_from_reference: SE3) -> tuple[torch.Tensor, torch.Tensor]:
        """Depth and confidence (H, W) at the processing size for a frame relocalized at
        ``frame_from_reference`` (``G_frame G_reference^-1``) against the ``reference`` keyframe:
        its depth (the window's, or its place record's) forward-splatted into the frame, holes
        filled from a coarser grid, in the map's scale. :data:`CARRIED_CONFIDENCE` where depth was
        carried, 0 where none was (filled with the median there)."""
        height, width = self.image_size
        moved = propagate_depth(self.reference_depth(reference), frame_from_reference, self.intrinsics)
        coarse = resize_depth(moved, (height // CARRY_FILL_STRIDE, width // CARRY_FILL_STRIDE))
        depth = torch.where(moved > 0, moved, resize_depth(coarse, self.image_size))
        confidence = torch.where(depth > 0, torch.full_like(depth, CARRIED_CONFIDENCE), torch.zeros_like(depth))
        return fill_invalid(depth, self.config.init_depth), confidence

    def refine(
        self, anchor: Keyframe, frame_from_anchor: SE3, depth: torch.Tensor, motion_features: torch.Tensor
    ) -> tuple[SE3, torch.Tensor, torch.Tensor | None] | None:
        """A new keyframe's pose relative to the ``anchor`` keyframe (``G_new G_anchor^-1``, in
        and out) and its (H, W) depth, refined by a dense bundle adjustment against the newest
        ``config.refine_keyframes`` keyframes (held fixed): their correspondences correct the
        depth where the depth module is wrong, before any frame is tracked on it; with the
        depth's (H, W) view support (:mod:`slam.system.bundle`), None where no keyframe overlaps
        it (pose and depth as given). None when the refined pose or depth is not finite (the
        refinement is to be dropped)."""
        with self.map.lock:  # one consistent read: the backend writes a pass's poses under this lock
            anchor_w2c = anchor.pose_w2c
            keyframes = self.map.keyframe_list()[-self.config.refine_keyframes :]
            newest = [(kf.pose_w2c, kf.motion_features, kf.depth) for kf in keyframes]
        # keyframes with features are in the window, so they have their depth too
        previous = [
            (pose, features, cast(torch.Tensor, keyframe_depth))
            for pose, features, keyframe_depth in newest
            if features is not None
        ]
        if previous and anchor.id not in {kf.id for kf in keyframes}:
            # tracking came back to an old keyframe: the newest ones may be elsewhere
            shares = overlaps(
                depth,
                frame_from_anchor * anchor_w2c,
                SE3.stack([p[0] for p in previous]),
                self.intrinsics,
                self.image_size,
            )
            previous = [item for item, share in zip(previous, shares.tolist()) if share >= MIN_REFINE_OVERLAP]
        if not previous:
            return frame_from_anchor, depth, None
        count = len(previous) + 1
        poses = SE3.stack([item[0] for item in previous] + [frame_from_anchor * anchor_w2c])
        features = torch.stack([item[1] for item in previous] + [motion_features])
        depths = torch.stack([item[2].float() for item in previous] + [depth])
        ii = torch.full((count - 1,), count - 1, dtype=torch.long, device=self.device)
        jj = torch.arange(count - 1, device=self.device)
        poses, depths, support = self.bundle.refine(features, depths, poses, ii, jj, num_fixed=count - 1, flow_steps=1)
        if not all_finite(poses.data[-1], depths[-1]):
            return None
        return poses[-1] * anchor_w2c.inv(), depths[-1], support[-1]
