"""Training clips: a keyframe and its neighbours with ground-truth poses (and depth where the data
has it), and their collation into batches for the networks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from slam.geometry.lie import SE3


@dataclass
class Clip:
    """One training example. Frame 0 is the keyframe.

    - ``images``: (N, H, W, 3) uint8 RGB.
    - ``depths``: (N, H, W) float32 metres, 0 = unknown; None when the data has no depth.
    - ``poses_c2w``: (N, 4, 4) float64 camera-to-world.
    - ``intrinsics``: (4,) float64 ``[fx, fy, cx, cy]`` of the images.
    """

    images: np.ndarray
    depths: np.ndarray | None
    poses_c2w: np.ndarray
    intrinsics: np.ndarray


@dataclass
class Batch:
    """Clips stacked for the networks (all tensors on one device).

    - ``images``: (B, N, 3, H, W) float32 RGB in [0, 1].
    - ``depths``: (B, N, H, W) float32 metres, 0 = unknown (all 0 for clips without depth).
    - ``has_depth``: (B,) bool.
    - ``poses``: SE3 (B, N) world-to-camera, with the world frame at the keyframe (the
      keyframe's pose is the identity).
    - ``intrinsics``: (B, 4) float32.
    """

    images: torch.Tensor
    depths: torch.Tensor
    has_depth: torch.Tensor
    poses: SE3
    intrinsics: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.images.to(device),
            self.depths.to(device),
            self.has_depth.to(device),
            SE3(self.poses.data.to(device)),
            self.intrinsics.to(device),
        )

    @property
    def every_frame_has_depth(self) -> bool:
        """Whether every frame of every clip has a depth map (some pixels > 0)."""
        return bool((self.depths.flatten(2) > 0).any(dim=2).all())

    @property
    def size(self) -> int:
        return self.images.shape[0]


def clip_indices(rng: np.random.Generator, length: int, frames: int, max_gap: int, min_gap: int = 1) -> list[int]:
    """Frame indices of a clip from a sequence of ``length`` frames: a keyframe, then
    ``frames - 1`` distinct neighbours between ``min_gap`` and ``max_gap`` frames from it, on
    either side. Gaps are drawn log-uniformly so that small and wide baselines both occur; where
    the sequence is too short for the gaps, any other frames are taken."""
    if length < frames:
        raise ValueError(f"a clip of {frames} frames needs a sequence of at least {frames} frames, got {length}")
    max_gap = max(1, min(max_gap, length - 1))
    keyframe = int(rng.integers(0, length))
    candidates = [
        k for k in range(keyframe - max_gap, keyframe + max_gap + 1) if abs(k - keyframe) >= min_gap and 0 <= k < length
    ]
    if len(candidates) < frames - 1:  # a short sequence: anything but the keyframe
        candidates = [k for k in range(length) if k != keyframe]
    gaps = np.array([abs(k - keyframe) for k in candidates], dtype=np.float64)
    weights = 1.0 / gaps  # log-uniform in the gap
    chosen = rng.choice(len(candidates), size=frames - 1, replace=False, p=weights / weights.sum())
    return [keyframe] + [candidates[k] for k in chosen]


def collate(clips: list[Clip]) -> Batch:
    """Stack clips of equal size into a :class:`Batch` (poses re-expressed with the keyframe as
    the world frame)."""
    images = torch.from_numpy(np.stack([c.images for c in clips])).permute(0, 1, 4, 2, 3).float() / 255.0
    height, width = images.shape[-2:]
    depths = torch.stack(
        [
            torch.from_numpy(c.depths.astype(np.float32))
            if c.depths is not None
            else torch.zeros(len(c.images), height, width)
            for c in clips
        ]
    )
    has_depth = torch.tensor([c.depths is not None for c in clips])
    relative = [np.linalg.inv(c.poses_c2w) @ c.poses_c2w[0] for c in clips]  # world-to-camera, keyframe world
    poses = SE3.from_matrix(torch.from_numpy(np.stack(relative)).float())
    intrinsics = torch.from_numpy(np.stack([c.intrinsics for c in clips])).float()
    return Batch(images, depths, has_depth, poses, intrinsics)
