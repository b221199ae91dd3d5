"""A synthetic video: a scene, a camera path through it, and the renders along the path.

Two kinds:

- ``"room"``: a furnished closed room seen by a hand-held camera (TUM-like) at 30 Hz. Default
  image 240 x 320 (height x width), fx = fy = 0.9 * width (about 58 degrees across). Depth is
  valid (> 0) at every pixel. The camera walks about at random (path ``"walk"``) or laps a
  closed path (``"loop"``, ``"figure8"``: :class:`~slam.synthetic.paths.LoopPath`).
- ``"road"``: a street driven along at 5-10 m/s (KITTI-like) at 10 Hz, camera 1.6 m above the
  ground. Default image 192 x 640 (KITTI's wide aspect), fx = fy = 0.58 * width (about 82
  degrees across, as KITTI's). Sky pixels have depth 0 (invalid).

Principal point at the image centre, no distortion. Poses are camera-to-world (OpenCV camera
frame: x right, y down, z forward; world frame: z up, see :mod:`slam.synthetic.scene`);
timestamps are ``index / rate`` seconds. Everything is a function of the seed: the same seed
gives bit-identical images, depths and poses.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from slam.geometry.camera import Camera
from slam.synthetic.paths import DrivingPath, HandheldPath, LoopPath
from slam.synthetic.photometric import Photometric
from slam.synthetic.render import Renderer, RenderResult
from slam.synthetic.roads import RoadLayout, build_road
from slam.synthetic.rooms import RoomLayout, build_room
from slam.synthetic.scene import Scene

KINDS = ("room", "road")
#: (height, width) of the images by default.
DEFAULT_SIZE = {"room": (240, 320), "road": (192, 640)}
DEFAULT_FRAMES = {"room": 300, "road": 200}
#: frames per second
FRAME_RATE = {"room": 30.0, "road": 10.0}
#: focal length (pixels) as a fraction of the image width
FOCAL_PER_WIDTH = {"room": 0.9, "road": 0.58}
#: the camera paths of each kind, the first the default
PATHS = {"room": ("walk", *LoopPath.shapes), "road": ("drive",)}


def default_camera(kind: str, height: int, width: int) -> Camera:
    """The pinhole camera of a sequence of ``kind`` with images of ``height`` x ``width``."""
    _check_kind(kind)
    focal = FOCAL_PER_WIDTH[kind] * width
    return Camera(focal, focal, (width - 1) / 2, (height - 1) / 2, width=width, height=height)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic scene kind {kind!r}: use one of {', '.join(KINDS)}")


class SyntheticSequence:
    """``num_frames`` frames of a ``kind`` scene (``"room"`` or ``"road"``) made from ``seed``.

    ``path``: one of :data:`PATHS` for the kind (None: its first). ``laps``, for a closed path
    (loop or figure8) in place of ``num_frames``: that many whole laps, so that the last frame's
    camera is back at the first one's (up to the hand's shake).
    ``height``/``width`` default to :data:`DEFAULT_SIZE`; ``camera`` replaces the default
    intrinsics (its size then sets the image size). ``photometric`` adds optional camera effects
    (noise, vignetting, motion blur) to the images; off by default.

    Attributes: ``camera``, ``scene``, ``layout`` (the room's or street's layout), ``path``,
    ``timestamps`` (N,) seconds, ``poses`` (N, 4, 4) camera-to-world float64.
    """

    def __init__(
        self,
        kind: str = "room",
        seed: int = 0,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        camera: Camera | None = None,
        photometric: Photometric | None = None,
        path: str | None = None,
        laps: int | None = None,
    ):
        _check_kind(kind)
        self.scene: Scene
        self.layout: RoomLayout | RoadLayout
        path = PATHS[kind][0] if path is None else path
        if path not in PATHS[kind]:
            raise ValueError(f"a {kind} has no path {path!r}: use one of {', '.join(PATHS[kind])}")
        if laps is not None and (path not in LoopPath.shapes or num_frames is not None or laps < 1):
            raise ValueError(
                f"laps={laps}: a whole number of laps (at least 1) of a closed path "
                f"({' or '.join(LoopPath.shapes)}), in place of a number of frames"
            )
        if seed < 0:
            raise ValueError(f"the seed of a synthetic sequence must not be negative, got {seed}")
        if kind == "room":
            self.scene, self.layout = build_room(seed)
        if laps is not None:
            seconds = LoopPath(cast(RoomLayout, self.layout), seed, path).lap_seconds
            num_frames = round(laps * seconds * FRAME_RATE[kind]) + 1
        num_frames = DEFAULT_FRAMES[kind] if num_frames is None else int(num_frames)
        if num_frames < 1:
            raise ValueError(f"a synthetic sequence needs at least one frame, got {num_frames}")
        if camera is None:
            default_h, default_w = DEFAULT_SIZE[kind]
            camera = default_camera(kind, height or default_h, width or default_w)
        elif camera.size is None:
            raise ValueError("the camera of a synthetic sequence needs an image size")
        self.kind = kind
        self.seed = int(seed)
        self.camera = camera
        self.photometric = photometric or Photometric()
        self.rate = FRAME_RATE[kind]
        self.timestamps = np.arange(num_frames, dtype=np.float64) / self.rate
        duration = float(self.timestamps[-1])
        self.path: HandheldPath | LoopPath | DrivingPath
        if kind == "room":
            room = cast(RoomLayout, self.layout)
            self.path = HandheldPath(room, duration, self.seed) if path == "walk" else LoopPath(room, self.seed, path)
            self._pose_at = self.path.poses
        else:
            self.path = DrivingPath(duration, self.seed)
            self.scene, self.layout = build_road(self.seed, self.path.distance)
            self._pose_at = lambda t: cast(DrivingPath, self.path).poses(t, cast(RoadLayout, self.layout).curve)
        self.poses = self._pose_at(self.timestamps)
        self._renderer = Renderer(camera)

    def __len__(self) -> int:
        return len(self.timestamps)

    def render_result(self, index: int, face_ids: bool = False) -> RenderResult:
        """The exact render of frame ``index`` (no camera effects), optionally with face ids."""
        return self._renderer.render(self.scene, self.poses[self._check_index(index)], face_ids)

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``index``: (image H x W x 3 uint8 RGB, depth H x W float32 metres, 0 = none).
        Camera effects, when asked for, change the image only."""
        index = self._check_index(index)
        result = self._renderer.render(self.scene, self.poses[index])
        if self.photometric.is_identity:
            return result.image, result.depth
        image = result.image
        if self.photometric.motion_blur:
            image = self._blurred(index)
        rng = np.random.default_rng([self.seed, 401, index])
        return self.photometric.apply(image, rng), result.depth

    def _blurred(self, index: int) -> np.ndarray:
        """Mean of views over the exposure, centred on the frame's timestamp (float32)."""
        exposure = self.photometric.motion_blur / self.rate
        offsets = np.linspace(-exposure / 2, exposure / 2, self.photometric.blur_samples)
        times = np.clip(self.timestamps[index] + offsets, 0.0, self.timestamps[-1])
        assert self.camera.height is not None and self.camera.width is not None  # a render camera has a size
        total = np.zeros((self.camera.height, self.camera.width, 3), np.float32)
        for pose in self._pose_at(times):
            total += self._renderer.render(self.scene, pose).image
        return total / len(times)

    def _check_index(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} is outside the sequence's {len(self)} frames")
        return int(index)
