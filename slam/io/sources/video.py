"""Video files: anything OpenCV reads, with PyAV as the fallback when OpenCV cannot.

Timestamps come from the container (seconds from the start of the stream), or from the frame
number and frame rate where the container gives none. Frames left out by ``start``/``stride`` are
grabbed but not converted. A frame that cannot be decoded is skipped with a warning and counted in
:attr:`VideoSource.skipped_frames`; the frame numbers (raw indices) of the others are kept. A file
that ends before the frame count its header declares (cut short) gives a warning.
Calibration: the file given, else a guess (with a warning).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slam.errors import SourceError
from slam.io.sources.base import RawFrame, Source, SourceOptions
from slam.io.sources.calibration import (
    camera_from_file,
    check_frame_size,
    guessed_camera,
)

log = logging.getLogger(__name__)

#: File name endings taken for videos without trying to open them (others are tried too).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
#: Frame rate assumed when the container states none.
DEFAULT_FPS = 30.0
#: Consecutive failed reads after which the stream is taken to have ended (before that, the
#: failures are counted as corrupt frames once a later frame reads again).
MAX_CONSECUTIVE_FAILURES = 8
BACKENDS = ("opencv", "pyav")


@dataclass
class _EncodedFrame:
    """A frame read from the container: its time (seconds, None if unknown) and a function that
    converts it to an RGB uint8 image (None when it cannot be decoded)."""

    timestamp: float | None
    decode: Callable[[], np.ndarray | None]


class _OpenCVReader:
    def __init__(self, path: Path):
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            self._capture.release()
            raise OSError(f"OpenCV cannot open {path}")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def frames(self) -> Iterator[_EncodedFrame | None]:
        """Each frame in order; None for a frame that could not be read."""
        failures = 0
        while failures < MAX_CONSECUTIVE_FAILURES:
            if not self._capture.grab():
                failures += 1
                continue
            yield from [None] * failures
            failures = 0
            msec = self._capture.get(cv2.CAP_PROP_POS_MSEC)
            yield _EncodedFrame(msec / 1000.0 if msec > 0 else None, self._retrieve)

    def _retrieve(self) -> np.ndarray | None:
        ok, image = self._capture.retrieve()
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if ok and image is not None else None

    def close(self) -> None:
        self._capture.release()


class _PyAVReader:
    def __init__(self, path: Path):
        import av

        self._errors = (av.error.FFmpegError,)
        try:
            self._container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as err:
            raise OSError(f"PyAV cannot open {path}: {err}") from None
        if not self._container.streams.video:
            self._container.close()
            raise OSError(f"{path} has no video stream")
        self._stream = self._container.streams.video[0]
        self.fps = float(self._stream.average_rate or 0.0)
        self.frame_count = int(self._stream.frames or 0)

    def frames(self) -> Iterator[_EncodedFrame | None]:
        """Each frame in order; None for a packet that could not be decoded."""
        for packet in self._container.demux(self._stream):
            try:
                decoded = packet.decode()
            except self._errors:
                yield None
                continue
            for frame in decoded:

                def decode(f=frame) -> np.ndarray | None:
                    return f.to_ndarray(format="rgb24")

                yield _EncodedFrame(frame.time, decode)

    def close(self) -> None:
        self._container.close()


_READERS: dict[str, type[_OpenCVReader] | type[_PyAVReader]] = {"opencv": _OpenCVReader, "pyav": _PyAVReader}


def _first_image(reader: _OpenCVReader | _PyAVReader) -> np.ndarray | None:
    """The first frame of ``reader`` that decodes, as RGB, or None when none does."""
    for frame in reader.frames():
        image = None if frame is None else frame.decode()
        if image is not None:
            return image
    return None


class VideoSource(Source):
    """A video file. ``backend``: "opencv" or "pyav" to force one (default: OpenCV, else PyAV)."""

    kind = "video"

    def __init__(
        self,
        path: str | Path,
        calib: str | Path | None = None,
        options: SourceOptions | None = None,
        backend: str | None = None,
    ):
        super().__init__(options)
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        if backend is not None and backend not in BACKENDS:
            raise SourceError(f"unknown video backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        self.skipped_frames = 0
        self.backend, first, self.fps, self.frame_count = self._probe((backend,) if backend else BACKENDS)
        height, width = first.shape[:2]
        self.calib_file = None if calib is None else Path(calib)
        if calib is None:
            camera = guessed_camera(width, height, f"video {self.path}")
        else:
            camera = camera_from_file(calib, width, height)
        self.set_camera(camera)

    def _probe(self, backends: tuple[str, ...]) -> tuple[str, np.ndarray, float, int]:
        """The first backend that decodes a frame: (name, first image, fps, frame count)."""
        opened = False
        for name in backends:
            try:
                reader = _READERS[name](self.path)
            except OSError:
                continue
            opened = True
            try:
                image = _first_image(reader)
            finally:
                reader.close()
            if image is not None:
                return name, image, reader.fps if reader.fps > 0 else DEFAULT_FPS, reader.frame_count
        if not opened:
            raise SourceError(f"cannot open video {self.path}: not a video that OpenCV or PyAV can read")
        raise SourceError(f"no decodable frame in video {self.path} (empty or corrupt)")

    @property
    def raw_count(self) -> int | None:
        """The frame count the container's header declares (None where it declares none); the
        file may hold fewer (see :meth:`_raw_frames`)."""
        return self.frame_count or None

    def _raw_frames(self) -> Iterator[RawFrame]:
        reader = _READERS[self.backend](self.path)
        raw_count = 0  # raw frames the container held (decodable or not)
        try:
            for raw_index, frame in enumerate(reader.frames()):
                raw_count = raw_index + 1
                if frame is not None and not self.options.selects(raw_index):
                    continue
                image = None if frame is None else frame.decode()
                if image is None:
                    self.skipped_frames += 1
                    log.warning("%s: skipped frame %d, which cannot be decoded", self.path, raw_index)
                    continue
                check_frame_size(image, self.undistorter.source_camera, f"{self.path} frame {raw_index}")
                assert frame is not None  # image is not None, so the frame decoded
                timestamp = frame.timestamp if frame.timestamp is not None else raw_index / self.fps
                yield RawFrame(timestamp, self.undistorter(image))
        finally:
            reader.close()
        if raw_count <= self.options.start:
            raise self.start_past_end(raw_count)
        if raw_count < self.frame_count:
            log.warning(
                "%s ended after %d of the %d frames its header declares", self.path, raw_count, self.frame_count
            )

    def describe(self) -> dict:
        return {
            **super().describe(),
            "path": str(self.path),
            "backend": self.backend,
            "fps": self.fps,
            "frame_count": self.frame_count,
            "skipped_frames": self.skipped_frames,
            "calibration": str(self.calib_file) if self.calib_file else "guessed",
        }
