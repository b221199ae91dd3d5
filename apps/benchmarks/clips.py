"""Short clips with ground truth for module benchmarks: a keyframe (frame 0) and neighbours, all
with ground-truth poses and, where the data has it, ground-truth depth of every frame.

Clip sets (:func:`benchmark_sets`), the same for every module benchmark:

- the synthetic validation set of training (:func:`training.validation.validation_clips` with
  the default :class:`~training.config.TrainConfig`: 192 x 256, a keyframe and 3 neighbours at
  random gaps, rooms and streets, scaled into the 0.2-10 m depth range);
- synthetic rooms as rendered (keyframe and 4 neighbours, spacing 3 frames, 240 x 320);
- real sequences in the TUM layout with depth maps (``tum_fr1_rpy`` at 240 x 320,
  ``hololens_000`` at 240 x 360), keyframe and 4 neighbours at several spacings.

Each clip is training's :class:`~training.clips.Clip` collated into a batch of one
(:class:`~training.clips.Batch`: poses world-to-camera with the world at the keyframe; depth 0
where unknown, on every frame without a depth map).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from slam.io.frame import Frame
from slam.io.shared_data import SHARED_DATA
from slam.io.sources.base import SourceOptions
from slam.io.sources.tum import TumSource
from slam.synthetic import SyntheticSequence
from training.clips import Batch, Clip, collate
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
class ClipSet:
    """A named set of clips of one size; ``clips`` is None where the data is missing, and
    ``missing`` then says why."""

    name: str
    clips: list[Batch] | None
    missing: str = ""


def neighbour_offsets(neighbours: int, spacing: int) -> list[int]:
    """Offsets of the neighbours around the keyframe: -s, +s, -2s, +2s, ... (``neighbours`` of them)."""
    return [sign * spacing * (k // 2 + 1) for k, sign in zip(range(neighbours), (-1, 1) * neighbours)]


def _clip(
    images: Sequence[np.ndarray],
    poses_c2w: Sequence[np.ndarray],
    depths: Sequence[np.ndarray | None],
    intrinsics: np.ndarray,
) -> Batch:
    """A batch of one clip (training's :class:`~training.clips.Clip`, collated: poses with the
    world at the keyframe) from HxWx3 uint8 RGB images, 4x4 camera-to-world poses and HxW depth
    maps in metres (None: unknown, all 0), all per frame, keyframe first."""
    height, width = images[0].shape[:2]
    depth = np.stack([np.zeros((height, width), np.float32) if d is None else d.astype(np.float32) for d in depths])
    return collate([Clip(np.stack(images), depth, np.stack(poses_c2w), np.asarray(intrinsics, np.float64))])


def validation_set(count: int | None = None) -> list[Batch]:
    """The first ``count`` (default: all) clips of training's synthetic validation set (the
    default :class:`~training.config.TrainConfig`'s), a batch of one clip each."""
    config = TrainConfig()
    if count is not None:
        config = dataclasses.replace(config, run=dataclasses.replace(config.run, validation_clips=count))
    return [collate([clip]) for clip in validation_clips(config)]


def synthetic_clips(
    kind: str, count: int, neighbours: int = 4, spacing: int = 3, height: int = 240, width: int = 320, seed: int = 0
) -> list[Batch]:
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
) -> list[Batch]:
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
                [cast(np.ndarray, f.pose_gt) for f in chosen],  # usable(): every pose is known
                [f.depth_gt for f in chosen],
                frames[key].camera.intrinsics,
            )
        )
    return clips


def benchmark_sets(count: int, validation_count: int | None = None, shared_data: Path = SHARED_DATA) -> list[ClipSet]:
    """The module benchmarks' clip sets (see the module docstring): ``validation_count``
    (default: all) validation clips, and ``count`` clips of every other set. Real sets whose
    folder is missing under ``shared_data`` have ``clips`` None."""
    validation = validation_set(validation_count)
    height, width = validation[0].images.shape[-2:]
    frames = validation[0].images.shape[1]
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
