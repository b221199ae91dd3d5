"""The full DeepV2D: initialise, then alternate motion and depth updates (block coordinate
descent), with any pair of depth and motion modules (learned, classical, or mixed).

Frame 0 of a clip is the keyframe. Poses are world-to-camera SE3 (B, N); the keyframe's pose
is held fixed (it sets the gauge), so poses come out relative to the keyframe's initial pose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from networks.interfaces import DepthEstimate, DepthModule, MotionModule
from slam.geometry.lie import SE3
from slam.geometry.resize import resize_depth
from slam.geometry.solver import all_pairs_edges, gauss_newton_step, keyframe_edges


@dataclass(frozen=True)
class AlternationConfig:
    """How the full system runs.

    - ``rounds``: motion-then-depth rounds (the paper uses 5-8).
    - ``motion_steps``: Gauss-Newton steps per motion update; the flow is recomputed before
      each (the paper uses 2).
    - ``mode``: "keyframe" (each frame against the keyframe, keyframe fixed) or "global"
      (all frame pairs jointly, which needs a depth map for every frame).
    - ``init``: "constant" (depth ``constant_depth`` everywhere) or "depth_network" (the depth
      module run with identity poses).
    """

    rounds: int = 5
    motion_steps: int = 2
    mode: str = "keyframe"
    init: str = "constant"
    constant_depth: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in ("keyframe", "global") or self.init not in ("constant", "depth_network"):
            raise ValueError(f"invalid alternation config: mode={self.mode!r} init={self.init!r}")
        if self.rounds < 1 or self.motion_steps < 1:
            raise ValueError("rounds and motion_steps must be at least 1")


@dataclass
class AlternationResult:
    """``poses`` SE3 (B, N) world-to-camera; ``depth`` (B, H, W) keyframe depth; ``depths``
    (B, N, H, W) every frame's depth in global mode (None in keyframe mode); ``history``: the
    poses after every round (for losses and diagnostics); ``depth_estimates``: every depth
    module output, in order."""

    poses: SE3
    depth: torch.Tensor
    depths: torch.Tensor | None
    history: list[SE3] = field(default_factory=list)
    depth_estimates: list[DepthEstimate] = field(default_factory=list)


def _rotate_to_front(tensor: torch.Tensor, index: int) -> torch.Tensor:
    """Reorder dim 1 so that ``index`` comes first (the keyframe slot), others in order."""
    order = [index] + [k for k in range(tensor.shape[1]) if k != index]
    return tensor[:, order]


class DeepV2D:
    """Alternates ``motion`` (pose) and ``depth`` updates on a clip."""

    def __init__(self, depth_module: DepthModule, motion_module: MotionModule, config: AlternationConfig | None = None):
        self.depth_module = depth_module
        self.motion_module = motion_module
        self.config = config or AlternationConfig()

    def _depths_for_every_frame(
        self,
        depth_features: torch.Tensor,
        poses: SE3,
        intrinsics: torch.Tensor,
        size: tuple[int, int],
        estimates: list[DepthEstimate],
    ) -> torch.Tensor:
        """(B, N, H, W): each frame's depth with the others as its neighbours (global mode)."""
        depths = []
        for k in range(depth_features.shape[1]):
            estimate = self.depth_module.depth(
                _rotate_to_front(depth_features, k), SE3(_rotate_to_front(poses.data, k)), intrinsics, size
            )
            estimates.append(estimate)
            depths.append(estimate.depth)
        return torch.stack(depths, dim=1)

    def __call__(self, images: torch.Tensor, intrinsics: torch.Tensor, poses: SE3 | None = None) -> AlternationResult:
        """Run the alternation on (B, N, 3, H, W) images in [0, 1] with (B, 4) intrinsics, from
        initial world-to-camera ``poses`` (default: identity)."""
        batch, num_frames, _, height, width = images.shape
        size = (height, width)
        if poses is None:
            poses = SE3.identity(batch, num_frames, dtype=images.dtype, device=images.device)
        depth_features = self.depth_module.encode(images)
        motion_features = self.motion_module.encode(images)
        feature_size = (motion_features.shape[-2], motion_features.shape[-1])
        estimates: list[DepthEstimate] = []
        global_mode = self.config.mode == "global"
        ii, jj = (all_pairs_edges if global_mode else keyframe_edges)(num_frames, device=images.device)

        if self.config.init == "constant":
            depths = torch.full(
                (batch, num_frames, height, width), self.config.constant_depth, dtype=images.dtype, device=images.device
            )
        elif global_mode:
            depths = self._depths_for_every_frame(depth_features, poses, intrinsics, size, estimates)
        else:
            estimates.append(self.depth_module.depth(depth_features, poses, intrinsics, size))
            depths = estimates[-1].depth.unsqueeze(1).expand(batch, num_frames, height, width)

        history = []
        for _ in range(self.config.rounds):
            small_depths = resize_depth(depths, feature_size)
            for _ in range(self.config.motion_steps):
                flow = self.motion_module.flow(motion_features, small_depths, poses, intrinsics, ii, jj, size)
                poses = gauss_newton_step(poses, small_depths, flow.intrinsics, ii, jj, flow.targets, flow.weights)
            history.append(poses)
            if global_mode:
                depths = self._depths_for_every_frame(depth_features, poses, intrinsics, size, estimates)
            else:
                estimates.append(self.depth_module.depth(depth_features, poses, intrinsics, size))
                depths = estimates[-1].depth.unsqueeze(1).expand(batch, num_frames, height, width)
        return AlternationResult(poses, depths[:, 0], depths if global_mode else None, history, estimates)
