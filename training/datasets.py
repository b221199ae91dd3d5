"""Training clips from a user's datasets: TUM RGB-D sequences, ScanNet-style scene folders and
KITTI odometry. The project's evaluation data (``../shared/data`` beside the repository) is
refused: it is the benchmark, never training data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from slam.errors import SourceError, V2DError
from slam.io.depth_maps import read_depth
from slam.io.shared_data import SHARED_DATA
from slam.io.sources.base import ImageFileSource, SourceOptions, read_image
from slam.io.sources.kitti import KittiSource
from slam.io.sources.tum import TumSource
from training.augment import augment_images
from training.clips import Clip, clip_indices
from training.config import AugmentConfig, DataConfig

#: the evaluation data of the project: never trained on


class TrainingDataError(V2DError):
    """A training dataset is missing, empty, malformed, or is the evaluation data."""


def refuse_evaluation_data(path: Path, evaluation: Path = SHARED_DATA) -> None:
    """Raise TrainingDataError when ``path`` is, holds or lies inside the evaluation data."""
    resolved, evaluation = path.resolve(), evaluation.resolve()
    if resolved == evaluation or evaluation in resolved.parents or resolved in evaluation.parents:
        raise TrainingDataError(
            f"{path} holds the project's evaluation data ({evaluation}): it is the benchmark and is never trained on"
        )


class FrameSequence:
    """Random access to one sequence's frames at the training size: ``read(index)`` gives the
    image (H, W, 3) uint8, the depth (H, W) float32 metres or None, and the camera-to-world
    pose (4, 4); ``valid`` lists the frames with a pose; ``intrinsics`` (4,)."""

    def __init__(self, source: ImageFileSource):
        self.source = source
        self.valid = [k for k, pose in enumerate(source.poses_gt or []) if pose is not None]
        self.intrinsics = source.output_camera.intrinsics.astype(np.float64)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        frame = self.source.frame_at(index)
        return frame.image, frame.depth_gt, frame.pose_gt


class ScanNetScene:
    """A ScanNet-style scene folder: ``color/N.jpg``, ``depth/N.png`` (uint16 millimetres),
    ``pose/N.txt`` (4x4 camera-to-world; frames whose pose has infinities are skipped) and
    ``intrinsic/intrinsic_depth.txt`` (4x4; the colour image is resized to the depth map's size,
    which it covers). Frames come out resized to ``size`` (H, W)."""

    def __init__(self, folder: Path, size: tuple[int, int]):
        self.folder = folder
        self.size = size
        names = sorted((p.stem for p in (folder / "color").glob("*.jpg")), key=lambda s: (len(s), s))
        if not names:
            raise TrainingDataError(f"ScanNet-style scene {folder} has no color/*.jpg")
        self.names, self.poses = [], []
        for name in names:
            pose_file, depth_file = folder / "pose" / f"{name}.txt", folder / "depth" / f"{name}.png"
            if not pose_file.is_file() or not depth_file.is_file():
                continue
            pose = np.loadtxt(pose_file).reshape(4, 4)
            if np.isfinite(pose).all():
                self.names.append(name)
                self.poses.append(pose)
        if not self.names:
            raise TrainingDataError(
                f"ScanNet-style scene {folder}: no frame has an image, a depth map and a finite pose"
            )
        intrinsic_file = folder / "intrinsic" / "intrinsic_depth.txt"
        if not intrinsic_file.is_file():
            raise TrainingDataError(f"ScanNet-style scene {folder} has no {intrinsic_file.relative_to(folder)}")
        K = np.loadtxt(intrinsic_file).reshape(4, 4)
        depth = self._depth(self.names[0])
        sy, sx = size[0] / depth.shape[0], size[1] / depth.shape[1]
        self.intrinsics = np.array([K[0, 0] * sx, K[1, 1] * sy, (K[0, 2] + 0.5) * sx - 0.5, (K[1, 2] + 0.5) * sy - 0.5])
        self.valid = list(range(len(self.names)))

    def _depth(self, name: str) -> np.ndarray:
        """Depth map of frame ``name`` in metres (H, W); DepthMapError naming a bad file."""
        return read_depth(self.folder / "depth" / f"{name}.png", depth_scale=1000.0)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        name = self.names[index]
        height, width = self.size
        image = cv2.resize(
            read_image(self.folder / "color" / f"{name}.jpg"), (width, height), interpolation=cv2.INTER_AREA
        )
        depth = cv2.resize(self._depth(name), (width, height), interpolation=cv2.INTER_NEAREST)
        return image, depth, self.poses[index]


def _sequence_folders(root: Path, is_sequence) -> list[Path]:
    """``root`` itself when it is a sequence, else its sub-folders that are."""
    if is_sequence(root):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and is_sequence(p))


def open_sequences(data: DataConfig) -> list:
    """The sequences of the dataset ``data.path`` of kind ``data.kind`` (tum, scannet, kitti),
    each with random frame access at ``data.image_size``; TrainingDataError when none is usable."""
    assert data.path is not None  # TrainConfig validation requires data.path for dataset kinds
    root = Path(data.path)
    if not root.is_dir():
        raise TrainingDataError(f"training data folder not found: {root}")
    refuse_evaluation_data(root)
    height, width = data.image_size
    options = SourceOptions(resize=(width, height))
    sequences: list[FrameSequence | ScanNetScene]
    try:
        if data.kind == "tum":
            sequences = [
                FrameSequence(TumSource(p, options=options))
                for p in _sequence_folders(root, lambda p: (p / "rgb.txt").is_file())
            ]
        elif data.kind == "scannet":
            sequences = [
                ScanNetScene(p, data.image_size) for p in _sequence_folders(root, lambda p: (p / "color").is_dir())
            ]
        else:
            kitti_root = root / "sequences"
            names = sorted(p.name for p in kitti_root.iterdir() if p.is_dir()) if kitti_root.is_dir() else []
            sequences = [FrameSequence(KittiSource(root, options=options, sequence=name)) for name in names]
    except SourceError as err:
        raise TrainingDataError(f"training data {root}: {err}") from None
    sequences = [s for s in sequences if len(s.valid) >= data.frames]
    if not sequences:
        raise TrainingDataError(
            f"{root} holds no {data.kind} sequence with {data.frames} or more frames with ground-truth poses"
        )
    return sequences


class DatasetClips:
    """An infinite seeded stream of clips from a user's sequences (see :func:`open_sequences`):
    a random sequence, a keyframe and neighbours within ``data.max_gap`` frames, photometric
    augmentation. Poses and depths are multiplied by ``data.metric_scale`` (e.g. 0.1 for KITTI,
    so that a street's depths fall inside the depth bins). Clips without depth (KITTI) train the
    motion module on predicted depth."""

    def __init__(self, data: DataConfig, augment: AugmentConfig, seed: int, stream: int = 0):
        self.data = data
        self.augment = augment
        self.sequences = open_sequences(data)
        self.rng = np.random.default_rng([seed, stream, 2])

    def __iter__(self) -> Iterator[Clip]:
        while True:
            sequence = self.sequences[int(self.rng.integers(len(self.sequences)))]
            picks = clip_indices(self.rng, len(sequence.valid), self.data.frames, self.data.max_gap, self.data.min_gap)
            frames = [sequence.read(sequence.valid[k]) for k in picks]
            images = augment_images(np.stack([image for image, _, _ in frames]), self.augment, self.rng)
            has_depth = all(depth is not None for _, depth, _ in frames)
            scale = self.data.metric_scale
            depths = np.stack([depth for _, depth, _ in frames]).astype(np.float32) * scale if has_depth else None
            poses = np.stack([pose for _, _, pose in frames]).astype(np.float64)
            poses[:, :3, 3] *= scale
            yield Clip(images, depths, poses, sequence.intrinsics)
