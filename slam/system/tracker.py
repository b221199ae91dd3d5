"""Tracking: the pose of a frame against a keyframe (the motion module in keyframe mode and the
Gauss-Newton layer on a pooled grid), with the flow the motion induces.

Poses are relative to the keyframe (``frame_from_keyframe = G_frame G_keyframe^-1``, world-to-camera
``G``), because the backend may move the keyframe at any time."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from networks.interfaces import MotionModule
from slam.config.schema import FrontendConfig
from slam.geometry.lie import SE3
from slam.geometry.projection import backproject, pixel_grid, project, projectable
from slam.geometry.resize import resize_depth
from slam.geometry.solver import pool_correspondences, relative_pose_step
from slam.system.map import Keyframe


@dataclass(frozen=True)
class TrackingResult:
    """A frame tracked against a keyframe.

    - ``frame_from_keyframe``: SE3 (), ``G_frame G_keyframe^-1`` (keyframe camera to frame camera).
    - ``quality``: mean flow confidence over the keyframe's pixels with depth, in [0, 1].
    - ``flow``: mean flow the motion induces on the keyframe's pixels, processing pixels.
    - ``parallax``: the part of ``flow`` the translation induces (the flow less that of the
      rotation alone), processing pixels: zero for a turn on the spot.
    - ``residual``: the confidence-weighted mean residual flow of the last flow computation
      (how far the correspondences were from the reprojection before the last step), processing
      pixels: small once the pose has converged.
    """

    frame_from_keyframe: SE3
    quality: float
    flow: float
    parallax: float
    residual: float

    @property
    def finite(self) -> bool:
        """Whether the pose is finite (a degenerate solve gives NaN)."""
        return bool(torch.isfinite(self.frame_from_keyframe.data).all())


def induced_flow(depth: torch.Tensor, T_ji: SE3, intrinsics: torch.Tensor) -> tuple[float, float]:
    """Mean flow that the motion ``T_ji`` (SE3 (), camera i to camera j) induces on camera i's
    pixels with (h, w) ``depth`` (> 0 where known; (4,) intrinsics at that size), in its pixels,
    and the parallax: the mean of the part of it that the translation causes (the flow less that
    of the rotation alone), which a turn on the spot leaves at zero. (0, 0) when no pixel with
    depth stays in front of camera j."""
    rotated = SE3(torch.cat([torch.zeros_like(T_ji.data[:3]), T_ji.data[3:]])).act(backproject(depth, intrinsics))
    moved = rotated + T_ji.translation()
    valid = projectable(moved, depth)
    count = valid.sum()
    if not bool(count):
        return 0.0, 0.0
    # one projection of both point sets (rotation alone and the whole motion)
    coords = project(torch.stack([moved, rotated]), intrinsics[None], extra_dims=2)
    grid = pixel_grid(depth.shape[0], depth.shape[1], dtype=depth.dtype, device=depth.device)
    flows = torch.stack([coords[0] - grid, coords[0] - coords[1]]).norm(dim=-1)
    means = torch.where(valid, flows, 0.0).sum(dim=(1, 2)) / count  # a NaN where invalid stays out
    return float(means[0]), float(means[1])


class Tracker:
    """Tracks frames against a keyframe with ``motion_module`` (see the module docstring)."""

    def __init__(
        self,
        motion_module: MotionModule,
        config: FrontendConfig,
        intrinsics: torch.Tensor,
        image_size: tuple[int, int],
        device: torch.device,
    ):
        """``intrinsics``: (4,) at the processing resolution ``image_size`` (H, W)."""
        self.motion_module = motion_module
        self.config = config
        self.intrinsics = intrinsics.to(device)
        self.image_size = image_size
        self._ii = torch.zeros(1, dtype=torch.long, device=device)
        self._jj = torch.ones(1, dtype=torch.long, device=device)
        # (depth tensor the keyframe held, keyframe, features, resized depth, pooled depth)
        self._small_depth: tuple[torch.Tensor | None, Keyframe, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def reference(self, keyframe: Keyframe) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The keyframe's motion features (C, h, w), its depth at their resolution (h, w) and on
        the tracking solve's ``config.tracking_pool`` times coarser grid, from what it holds for
        matching (:meth:`Keyframe.matching`: the window's depth, or a compacted keyframe's place
        record); computed again when the depth tensor the keyframe holds changes (a new
        keyframe, the backend's update, a compaction, a loop correction's rescale). ValueError
        for a keyframe that holds nothing to match against."""
        # keyed on the tensor the keyframe holds, not on matching()'s result: a compacted
        # keyframe's place record is converted anew by every call
        held = keyframe.depth if keyframe.motion_features is not None else keyframe.place_depth
        cached = self._small_depth
        if cached is None or cached[0] is not held or cached[1] is not keyframe:
            matching = keyframe.matching()
            if matching is None:
                raise ValueError(f"keyframe {keyframe.id} holds nothing to track against")
            features, depth = matching
            height, width = features.shape[-2:]
            pool = self.config.tracking_pool
            small = resize_depth(depth[None, None], (height, width))[0, 0]
            cached = (held, keyframe, features, small, resize_depth(small, (height // pool, width // pool)))
            self._small_depth = cached
        return cached[2], cached[3], cached[4]

    def track(
        self,
        keyframe: Keyframe,
        features: torch.Tensor,
        start: SE3,
        steps: int | None = None,
        stop_when_confident: bool = True,
    ) -> TrackingResult:
        """Track a frame with motion ``features`` (C, h, w) against ``keyframe`` from ``start``
        (``G_frame G_keyframe^-1``): at most ``steps`` (None: ``config.tracking_steps``)
        Gauss-Newton steps, the flow computed again before each, stopping after a step whose flow
        quality reached ``config.tracking_confident`` when ``stop_when_confident``. ValueError for
        fewer than one step."""
        steps = self.config.tracking_steps if steps is None else steps
        if steps < 1:
            raise ValueError(f"tracking needs at least one step, got {steps}")
        keyframe_features, depth, pooled_depth = self.reference(keyframe)
        depths = torch.stack([depth, torch.zeros_like(depth)])[None]
        frame_from_keyframe = start
        stacked = torch.stack([keyframe_features, features])[None]
        scale = self.image_size[1] / depth.shape[1]  # processing pixels per feature pixel
        has_depth = depth > 0
        with_depth = int(has_depth.sum())
        confident = self.config.tracking_confident if stop_when_confident else None
        origin = SE3.identity(dtype=start.dtype, device=start.device)  # the keyframe: only the relative pose matters
        with torch.no_grad():
            for _ in range(steps):
                poses = SE3.stack([origin, frame_from_keyframe]).view(1, 2)
                flow = self.motion_module.flow(
                    stacked, depths, poses, self.intrinsics[None], self._ii, self._jj, self.image_size
                )
                targets, weights, intrinsics = pool_correspondences(
                    flow.targets, flow.weights, flow.intrinsics, self.config.tracking_pool
                )
                frame_from_keyframe = relative_pose_step(
                    frame_from_keyframe, pooled_depth, intrinsics[0], targets[0, 0], weights[0, 0]
                )
                confidence = torch.where(has_depth, flow.weights[0, 0, ..., 0], 0.0)
                quality = float(confidence.sum()) / with_depth if with_depth else 0.0
                if confident is not None and quality >= confident:
                    break  # reliable correspondences: the step has solved the pose
        residual = _weighted_residual(flow.residual[0, 0], flow.weights[0, 0, ..., 0], has_depth)
        induced, parallax = induced_flow(depth, frame_from_keyframe, flow.intrinsics[0])
        return TrackingResult(frame_from_keyframe, quality, induced * scale, parallax * scale, residual * scale)


def _weighted_residual(residual: torch.Tensor, weights: torch.Tensor, has_depth: torch.Tensor) -> float:
    """Confidence-weighted mean length of the (h, w, 2) residual flow over the pixels with depth
    (``weights`` (h, w)), in the flow's pixels; infinite when no pixel has any weight."""
    mask = weights * has_depth
    total = float(mask.sum())
    return float((residual.norm(dim=-1) * mask).sum()) / total if total > 0 else float("inf")
