"""Short clips with ground truth for module benchmarks: a keyframe (frame 0) and neighbours, all
with ground-truth poses and, where the data has it, ground-truth depth of every frame.

Clip sets (:func:`benchmark_sets`), the same for every module benchmark:

- the synthetic validation set of training (:func:`training.validation.validation_clips` with
  the default :class:`~training.config.TrainConfig`: 192 x 256, a keyframe and 3 neighbours at
  random gaps, rooms and streets, scaled into the 0.2-10 m depth range);
- synthetic rooms as rendered (keyframe and 4 neighbours, spacing 3 frames, 240 x 320);
- real sequences in the TUM layout with depth maps (``tum_fr1_rpy`` at 240 x 320,
  ``hololens_000`` at 240 x 360), keyframe and 4 neighbours at several spacings.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slam.geometry.lie import SE3
from slam.io.frame import Frame
from slam.io.shared_data import SHARED_DATA
from slam.io.sources.base import SourceOptions
from slam.io.sources.tum import TumSource
from slam.synthetic import SyntheticSequence
from training.config import TrainConfig
from training.validation import validation_clips

#: real sequences of the benchmarks: folder in ../shared/data, clip size (H, W) of the camera's
#: aspect ratio, neighbour spacings in frames (TUM fr1 is 30 Hz video; the HoloLens frames are
#: already about 8 cm apart)
REAL_SEQUENCES: tuple[tuple[str, tuple[int, int], tuple[int, ...]], ...] = (
    ("tum_fr1_rpy", (240, 320), (2, 4, 8)),
    ("hololens_000", (240, 360), (1, 2)),
)
#: neighbours of the keyframe in the rendered and real clips
NEIGHBOURS = 4
#: spacing (frames) and size (H, W) of the synthetic room clips
ROOM_SPACING, ROOM_SIZE = 3, (240, 320)


@dataclass
class Clip:
    """``images`` (N, 3, H, W) float32 RGB in [0, 1]; ``poses`` SE3 (N,) world-to-camera;
    ``intrinsics`` (4,) float32 of the images; ``depths`` (N, H, W) float32 metres of every
    frame, 0 where unknown (all 0 for a frame without a depth map); ``name`` says where it
    comes from. Frame 0 is the keyframe."""

    images: torch.Tensor
    poses: SE3
    intrinsics: torch.Tensor
    depths: torch.Tensor
    name: str

    @property
    def depth_gt(self) -> torch.Tensor:
        """(H, W) ground-truth depth of the keyframe, metres, 0 where unknown."""
        return self.depths[0]

    @property
    def every_frame_has_depth(self) -> bool:
        """Whether every frame has a depth map (some known pixels)."""
        return bool((self.depths.flatten(1) > 0).any(dim=1).all())


@dataclass
class ClipSet:
    """A named set of clips of one size; ``clips`` is None where the data is missing, and
    ``missing`` then says why."""

    name: str
    clips: list[Clip] | None
    missing: str = ""


def neighbour_offsets(neighbours: int, spacing: int) -> list[int]:
    """Offsets of the neighbours around the keyframe: -s, +s, -2s, +2s, ... (``neighbours`` of them)."""
    return [sign * spacing * (k // 2 + 1) for k, sign in zip(range(neighbours), (-1, 1) * neighbours)]


def _clip(
    images: Sequence[np.ndarray],
    poses_c2w: Sequence[np.ndarray],
    depths: Sequence[np.ndarray | None],
    intrinsics: np.ndarray,
    name: str,
) -> Clip:
    """A :class:`Clip` from HxWx3 uint8 RGB images, 4x4 camera-to-world poses and HxW depth maps
    in metres (None: unknown), all per frame, keyframe first."""
    tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    height, width = tensor.shape[-2:]
    depth = np.stack([np.zeros((height, width), np.float32) if d is None else d.astype(np.float32) for d in depths])
    world_to_camera = torch.from_numpy(np.linalg.inv(np.stack(poses_c2w))).float()
    return Clip(
        tensor,
        SE3.from_matrix(world_to_camera),
        torch.from_numpy(np.asarray(intrinsics, np.float32)),
        torch.from_numpy(depth),
        name,
    )


def validation_set(count: int | None = None) -> list[Clip]:
    """The first ``count`` (default: all) clips of training's synthetic validation set (the
    default :class:`~training.config.TrainConfig`'s), converted from training clips."""
    config = TrainConfig()
    if count is not None:
        config = dataclasses.replace(config, run=dataclasses.replace(config.run, validation_clips=count))
    clips = validation_clips(config)
    empty = [None] * config.data.frames
    return [
        _clip(
            c.images, c.poses_c2w, empty if c.depths is None else list(c.depths), c.intrinsics, f"validation clip {k}"
        )
        for k, c in enumerate(clips)
    ]


def synthetic_clips(
    kind: str, count: int, neighbours: int = 4, spacing: int = 3, height: int = 240, width: int = 320, seed: int = 0
) -> list[Clip]:
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
        clips.append(
            _clip(
                [r[0] for r in renders],
                [sequence.poses[i] for i in indices],
                [r[1] for r in renders],
                sequence.camera.intrinsics,
                f"synthetic {kind} seed {seed + c} frame {key}",
            )
        )
    return clips


@functools.lru_cache(maxsize=4)
def _sequence_frames(folder: Path, height: int, width: int) -> tuple[Frame, ...]:
    """Every frame of a TUM-layout sequence, resized (undistorted first); read once per process."""
    with TumSource(folder, options=SourceOptions(resize=(width, height))) as source:
        return tuple(source)


def real_clips(
    folder: str | Path, count: int, neighbours: int = 4, spacing: int = 3, height: int = 240, width: int = 320
) -> list[Clip]:
    """``count`` clips from a sequence in the TUM layout with depth and ground truth, images
    resized to ``height`` x ``width`` (undistorted first). Keyframes are spread evenly over the
    frames that have ground-truth depth and pose and whose neighbours all have poses; a
    neighbour's depth is its depth map where the sequence has one (else all 0)."""
    folder = Path(folder).resolve()
    frames = _sequence_frames(folder, height, width)
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
        clips.append(
            _clip(
                [f.image for f in chosen],
                [f.pose_gt for f in chosen],
                [f.depth_gt for f in chosen],
                frames[key].camera.intrinsics,
                f"{folder.name} frame {key}",
            )
        )
    return clips


def benchmark_sets(count: int, validation_count: int | None = None, shared_data: Path = SHARED_DATA) -> list[ClipSet]:
    """The module benchmarks' clip sets (see the module docstring): ``validation_count``
    (default: all) validation clips, and ``count`` clips of every other set. Real sets whose
    folder is missing under ``shared_data`` have ``clips`` None."""
    validation = validation_set(validation_count)
    height, width = validation[0].images.shape[-2:]
    frames = validation[0].images.shape[0]
    sets = [
        ClipSet(f"validation set ({height} x {width}, {frames} frames)", validation),
        ClipSet(
            f"synthetic room, spacing {ROOM_SPACING}",
            synthetic_clips("room", count, NEIGHBOURS, ROOM_SPACING, *ROOM_SIZE),
        ),
    ]
    for folder, (height, width), spacings in REAL_SEQUENCES:
        path = shared_data / folder
        for spacing in spacings:
            name = f"{folder}, spacing {spacing}"
            if path.is_dir():
                sets.append(ClipSet(name, real_clips(path, count, NEIGHBOURS, spacing, height, width)))
            else:
                sets.append(ClipSet(name, None, f"real data not found at {shared_data}"))
    return sets
