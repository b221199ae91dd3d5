"""The built-in synthetic source: rendered rooms (hand-held camera) or streets (driving), with
exact ground-truth poses and depth (see :mod:`slam.synthetic`).

Spec strings (the SOURCE argument of ``v2d run``), parsed by :meth:`SyntheticSource.from_spec`::

    synthetic                              a room, seed 0, default length and size
    synthetic:road                         a street
    synthetic:room:seed=3:frames=500       options as key=value, in any order
    synthetic:road:size=240x320            image size as HEIGHTxWIDTH (or height=..., width=...)
    synthetic:room:path=loop:frames=900    laps of a closed path (loop or figure8)
    synthetic:room:path=figure8:laps=2     two whole laps: the last frame is back at the first

Keys: ``seed`` (int), ``frames`` (number of raw frames), ``size`` (HEIGHTxWIDTH), ``height``,
``width``, ``path`` (a room's: walk, loop or figure8), ``laps`` (whole laps of a closed path, in
place of ``frames``). Defaults: room 300 frames of 240 x 320
at 30 Hz, road 200 frames of 192 x 640 at 10 Hz (see :mod:`slam.synthetic.sequence`).

Source options: start, stride and max_frames select raw frames as for every source (only the
selected frames are rendered); ``resize`` renders directly at the requested size with the
resized intrinsics, so depth stays exact.
"""

from __future__ import annotations

from slam.errors import SourceError
from slam.io.sources.base import IndexedSource, RawFrame, SourceOptions
from slam.synthetic.sequence import (
    DEFAULT_SIZE,
    KINDS,
    PATHS,
    SyntheticSequence,
    default_camera,
)

_INT_KEYS = ("seed", "frames", "height", "width", "laps")


class SyntheticSource(IndexedSource):
    """Frames of a :class:`~slam.synthetic.sequence.SyntheticSequence` of ``kind`` ("room" or
    "road"), with ``pose_gt`` (camera-to-world) and ``depth_gt`` (metres) on every frame."""

    kind = "synthetic"

    def __init__(
        self,
        kind: str = "room",
        seed: int = 0,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        options: SourceOptions | None = None,
        path: str | None = None,
        laps: int | None = None,
    ):
        super().__init__(options)
        if kind not in KINDS:
            raise SourceError(f"unknown synthetic scene {kind!r}: use one of {', '.join(KINDS)}")
        if path is not None and path not in PATHS[kind]:
            raise SourceError(f"a synthetic {kind} has no path {path!r}: use one of {', '.join(PATHS[kind])}")
        if num_frames is not None and num_frames < 1:
            raise SourceError(f"a synthetic sequence needs at least one frame, got frames={num_frames}")
        if seed < 0:
            raise SourceError(f"the seed of a synthetic sequence must not be negative, got seed={seed}")
        if (height is not None and height < 8) or (width is not None and width < 8):
            raise SourceError(f"synthetic image size {height}x{width} is too small (at least 8 x 8)")
        self.scene_kind = kind
        self.seed = int(seed)
        default_height, default_width = DEFAULT_SIZE[kind]
        self.camera = default_camera(kind, height or default_height, width or default_width)
        # rendered at the delivered size directly (exact depth, no resampling)
        try:
            self.sequence = SyntheticSequence(kind, seed, num_frames, camera=self.output_camera, path=path, laps=laps)
        except ValueError as err:
            raise SourceError(f"synthetic {kind}: {err}") from None
        self.path = path or PATHS[kind][0]
        self.num_raw = len(self.sequence)

    @classmethod
    def from_spec(cls, spec: str, options: SourceOptions | None = None) -> SyntheticSource:
        """A source from a spec string such as ``synthetic:road:seed=3:frames=500`` (see the
        module docstring); raises SourceError naming the spec when it is malformed."""
        parts = spec.strip().split(":")
        if parts[0].lower() != "synthetic":
            raise SourceError(f"not a synthetic source spec: {spec!r}")
        kind = "room"
        values: dict[str, int] = {}
        path = None
        for part in parts[1:]:
            if part.lower() in KINDS:
                kind = part.lower()
            elif part.startswith("path="):
                path = part[5:].lower()
            elif part.startswith("size="):
                try:
                    height, width = (int(v) for v in part[5:].lower().split("x"))
                except ValueError:
                    raise SourceError(f"{spec!r}: size must be HEIGHTxWIDTH, e.g. size=240x320") from None
                values.update(height=height, width=width)
            elif "=" in part and part.split("=", 1)[0] in _INT_KEYS:
                key, value = part.split("=", 1)
                try:
                    values[key] = int(value)
                except ValueError:
                    raise SourceError(f"{spec!r}: {key} must be an integer, got {value!r}") from None
            else:
                raise SourceError(
                    f"{spec!r}: unknown part {part!r}; expected one of {', '.join(KINDS)}, "
                    f"size=HxW, path=NAME or {', '.join(k + '=N' for k in _INT_KEYS)}"
                )
        return cls(
            kind,
            values.get("seed", 0),
            values.get("frames"),
            values.get("height"),
            values.get("width"),
            options,
            path,
            values.get("laps"),
        )

    @property
    def has_ground_truth(self) -> bool:
        return True

    def _load(self, raw_index: int) -> RawFrame:
        image, depth = self.sequence.render(raw_index)
        return RawFrame(float(self.sequence.timestamps[raw_index]), image, self.sequence.poses[raw_index].copy(), depth)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "scene": self.scene_kind,
            "path": self.path,
            "seed": self.seed,
            "raw_frames": self.num_raw,
        }
