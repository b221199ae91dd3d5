"""Short clips with ground truth for module benchmarks: a keyframe (frame 0) with ground-truth
depth, and neighbours on both sides of it, all with ground-truth poses.

Real clips come from sequences in the TUM layout with depth maps (``tum_fr1_rpy``,
``hololens_000``); synthetic clips from the built-in scenes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slam.frame import Frame
from slam.lie import SE3
from slam.sources.base import SourceOptions
from slam.sources.tum import TumSource
from slam.synthetic import SyntheticSequence


@dataclass
class Clip:
    """``images`` (N, 3, H, W) float32 RGB in [0, 1]; ``poses`` SE3 (N,) world-to-camera;
    ``intrinsics`` (4,) float32 of the images; ``depth_gt`` (H, W) float32 metres of frame 0
    (the keyframe), 0 where unknown; ``name`` says where it comes from."""

    images: torch.Tensor
    poses: SE3
    intrinsics: torch.Tensor
    depth_gt: torch.Tensor
    name: str


def neighbour_offsets(neighbours: int, spacing: int) -> list[int]:
    """Offsets of the neighbours around the keyframe: -s, +s, -2s, +2s, ... (``neighbours`` of them)."""
    return [sign * spacing * (k // 2 + 1) for k, sign in zip(range(neighbours), (-1, 1) * neighbours)]


def _clip(images: list[np.ndarray], poses_c2w: list[np.ndarray], depth: np.ndarray, intrinsics: np.ndarray,
          name: str) -> Clip:
    tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    world_to_camera = torch.from_numpy(np.linalg.inv(np.stack(poses_c2w))).float()
    return Clip(tensor, SE3.from_matrix(world_to_camera), torch.from_numpy(np.asarray(intrinsics, np.float32)),
                torch.from_numpy(depth.astype(np.float32)), name)


def synthetic_clips(kind: str, count: int, neighbours: int = 4, spacing: int = 3, height: int = 240,
                    width: int = 320, seed: int = 0) -> list[Clip]:
    """``count`` clips of synthetic ``kind`` ("room"/"road") scenes, one scene per clip (seeds
    ``seed``, ``seed + 1``, ...), keyframe in the middle of a short stretch of its camera path."""
    offsets = neighbour_offsets(neighbours, spacing)
    reach = max(abs(o) for o in offsets)
    clips = []
    for c in range(count):
        sequence = SyntheticSequence(kind, seed=seed + c, num_frames=4 * reach + 1, height=height, width=width)
        key = 2 * reach
        indices = [key] + [key + o for o in offsets]
        renders = [sequence.render(i) for i in indices]
        clips.append(_clip([r[0] for r in renders], [sequence.poses[i] for i in indices], renders[0][1],
                           sequence.camera.intrinsics, f"synthetic {kind} seed {seed + c} frame {key}"))
    return clips


def real_clips(folder: str | Path, count: int, neighbours: int = 4, spacing: int = 3, height: int = 240,
               width: int = 320) -> list[Clip]:
    """``count`` clips from a sequence in the TUM layout with depth and ground truth, images
    resized to ``height`` x ``width`` (undistorted first). Keyframes are spread evenly over the
    frames that have ground-truth depth and pose and whose neighbours all have poses."""
    folder = Path(folder)
    with TumSource(folder, options=SourceOptions(resize=(width, height))) as source:
        frames: list[Frame] = list(source)
    offsets = neighbour_offsets(neighbours, spacing)

    def usable(k: int) -> bool:
        if frames[k].depth_gt is None or frames[k].pose_gt is None:
            return False
        return all(0 <= k + o < len(frames) and frames[k + o].pose_gt is not None for o in offsets)

    candidates = [k for k in range(len(frames)) if usable(k)]
    if len(candidates) < count:
        raise ValueError(f"{folder}: only {len(candidates)} usable keyframes for {count} clips")
    picks = [candidates[int(round(i))] for i in np.linspace(0, len(candidates) - 1, count)]
    clips = []
    for key in picks:
        chosen = [frames[key]] + [frames[key + o] for o in offsets]
        clips.append(_clip([f.image for f in chosen], [f.pose_gt for f in chosen], frames[key].depth_gt,
                           frames[key].camera.intrinsics, f"{folder.name} frame {key}"))
    return clips
