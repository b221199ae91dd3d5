"""An infinite, seeded stream of training clips rendered from the synthetic generator: furnished
rooms seen by a hand-held camera and streets seen from a car, with varied scenes (every scene
seed gives new geometry, textures and lighting), focal lengths, principal points, scales,
camera effects (noise, vignetting, motion blur) and photometric augmentation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from slam.geometry.camera import Camera
from slam.synthetic.photometric import Photometric
from slam.synthetic.sequence import SyntheticSequence
from training.augment import augment_images
from training.clips import Clip, clip_indices
from training.config import AugmentConfig, DataConfig

#: frames rendered per scene path (rooms at 30 Hz, roads at 10 Hz)
PATH_FRAMES = {"room": 150, "road": 60}
#: the scene is scaled so that the keyframe's median depth is drawn (log-uniformly) from this
#: share of the depth bins' range: inside the range, away from its ends
MEDIAN_DEPTH_SHARE = (0.08, 0.4)


def _random_camera(
    rng: np.random.Generator, kind: str, size: tuple[int, int], focal_range: tuple[float, float]
) -> Camera:
    """A pinhole camera with focal length drawn from ``focal_range`` (x image width; driving
    scenes use the wide half) and the principal point up to 3% of the size off centre."""
    height, width = size
    low, high = focal_range
    if kind == "road":
        high = (low + high) / 2
    focal = float(np.exp(rng.uniform(np.log(low), np.log(high)))) * width
    aspect = float(rng.uniform(0.98, 1.02))
    cx = (width - 1) / 2 + rng.uniform(-0.03, 0.03) * width
    cy = (height - 1) / 2 + rng.uniform(-0.03, 0.03) * height
    return Camera(focal, focal * aspect, cx, cy, width=width, height=height)


class SyntheticClips:
    """Clips of ``data.frames`` frames at ``data.image_size``, scaled so that the keyframe's
    median depth lies well inside ``depth_range``. ``seed`` and ``stream`` (one per process
    and data worker) make the stream reproducible; ``validation`` draws scenes from a seed
    range training never uses, without photometric augmentation."""

    def __init__(
        self,
        data: DataConfig,
        augment: AugmentConfig,
        depth_range: tuple[float, float],
        seed: int,
        stream: int = 0,
        validation: bool = False,
    ):
        self.data = data
        self.augment = augment
        self.depth_range = depth_range
        self.validation = validation
        self.rng = np.random.default_rng([seed, stream, 1 if validation else 0])
        # scene seeds: training below 10^8, validation from there
        self._scene_base = 100_000_000 if validation else 0

    def _sequence(self) -> SyntheticSequence:
        rng = self.rng
        kind = "road" if rng.uniform() < self.data.road_share else "room"
        camera = _random_camera(rng, kind, self.data.image_size, self.data.focal_range)
        photometric = Photometric()
        if not self.validation:
            photometric = Photometric(
                noise=float(rng.uniform(*self.augment.noise)),
                vignetting=float(rng.uniform(*self.augment.vignetting)),
                motion_blur=float(rng.uniform(0.2, 0.8)) if rng.uniform() < self.augment.blur_share else 0.0,
                blur_samples=3,
            )
        scene_seed = self._scene_base + int(rng.integers(0, 100_000_000))
        return SyntheticSequence(kind, scene_seed, num_frames=PATH_FRAMES[kind], camera=camera, photometric=photometric)

    def _clip(self, sequence: SyntheticSequence) -> Clip | None:
        rng = self.rng
        divisor = 1 if sequence.kind == "room" else 3
        indices = clip_indices(
            rng,
            len(sequence),
            self.data.frames,
            max(1, self.data.max_gap // divisor),
            max(1, self.data.min_gap // divisor),
        )
        rendered = [sequence.render(k) for k in indices]
        images = np.stack([image for image, _ in rendered])
        depths = np.stack([depth for _, depth in rendered]).astype(np.float32)
        valid = depths[0][depths[0] > 0]
        if valid.size < depths[0].size // 4:
            return None  # mostly sky: nothing to learn depth from
        low, high = self.depth_range
        lo_share, hi_share = MEDIAN_DEPTH_SHARE
        target = np.exp(rng.uniform(np.log(low + lo_share * (high - low)), np.log(low + hi_share * (high - low))))
        scale = target / float(np.median(valid))
        poses = sequence.poses[indices].copy()
        poses[:, :3, 3] *= scale
        if not self.validation:
            images = augment_images(images, self.augment, rng)
        return Clip(images, depths * scale, poses, sequence.camera.intrinsics.astype(np.float64))

    def __iter__(self) -> Iterator[Clip]:
        while True:
            sequence = self._sequence()
            for _ in range(self.data.clips_per_scene):
                clip = self._clip(sequence)
                if clip is not None:
                    yield clip

    def take(self, count: int) -> list[Clip]:
        """The next ``count`` clips."""
        iterator = iter(self)
        return [next(iterator) for _ in range(count)]
