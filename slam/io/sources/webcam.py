"""Live cameras (``webcam:N``).

A capture thread reads the device as fast as it delivers and keeps only the newest image; the
consumer always gets an image newer than the last one it got, so a slow consumer skips frames
instead of falling behind. Frames captured but never handed out are counted in
:attr:`WebcamSource.dropped_frames`. Timestamps are capture times in seconds on the
``time.monotonic`` clock. When the device stops delivering (unplugged), the source logs why and
ends after handing out the last image it has, so that nothing computed before is lost.

The capture thread starts with the first iteration; the image read at open time (to learn the
size and check the calibration) is not handed out.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from slam.errors import SourceError, V2DError
from slam.io.sources.base import RawFrame, Source, SourceOptions
from slam.io.sources.calibration import (
    camera_from_file,
    check_frame_size,
    guessed_camera,
)

log = logging.getLogger(__name__)


class CaptureDevice(Protocol):
    """The part of ``cv2.VideoCapture`` a webcam source uses (images BGR uint8)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...
    def get(self, prop_id: int) -> float: ...


class WebcamSource(Source):
    """Camera ``device`` (OpenCV's index). ``capture_factory(device)`` makes the capture device
    (default ``cv2.VideoCapture``). The source ends when no image arrives for ``frame_timeout``
    seconds or the device fails."""

    kind = "webcam"
    live = True

    def __init__(
        self,
        device: int = 0,
        calib: str | Path | None = None,
        options: SourceOptions | None = None,
        capture_factory: Callable[[int], CaptureDevice] | None = None,
        frame_timeout: float = 5.0,
    ):
        super().__init__(options)
        self.device = device
        self.frame_timeout = frame_timeout
        capture = (capture_factory or cv2.VideoCapture)(device)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open webcam {device} (no such camera, or another program is using it)")
        ok, probe = capture.read()
        if not ok or probe is None:
            capture.release()
            raise SourceError(f"webcam {device} opened but delivered no image")
        self._capture = capture
        self.reported_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        height, width = probe.shape[:2]
        self.calib_file = None if calib is None else Path(calib)
        try:
            camera = (
                guessed_camera(width, height, f"webcam {device}")
                if calib is None
                else camera_from_file(calib, width, height)
            )
        except V2DError:  # a bad calibration file: release the camera before reporting it
            capture.release()
            raise
        self.set_camera(camera)
        self.captured_frames = 0
        self.taken_frames = 0
        self._latest: tuple[int, float, np.ndarray] | None = None  # (capture number, time, BGR image)
        self._ended = False
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def dropped_frames(self) -> int:
        """Frames captured but never handed out (the consumer was busy when they were newest)."""
        with self._condition:
            return self.captured_frames - self.taken_frames

    def _capture_loop(self) -> None:
        """Runs in the capture thread, which owns the device until it returns."""
        try:
            while not self._stop.is_set():
                try:
                    ok, image = self._capture.read()
                except Exception as err:  # a driver failing mid-run must end the run, not hang it
                    ok, image = False, None
                    log.error("webcam %d: read failed: %s", self.device, err)
                stamp = time.monotonic()
                with self._condition:
                    if not ok or image is None:
                        if not self._stop.is_set():
                            log.error(
                                "webcam %d stopped delivering images after %d frames (unplugged?); ending the input",
                                self.device,
                                self.captured_frames,
                            )
                        return
                    self.captured_frames += 1
                    self._latest = (self.captured_frames, stamp, image)
                    self._condition.notify_all()
        finally:
            with self._condition:
                self._ended = True
                self._condition.notify_all()
            self._capture.release()

    def _raw_frames(self) -> Iterator[RawFrame]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._capture_loop, name=f"webcam-{self.device}", daemon=True)
            self._thread.start()
        last_taken = 0
        for raw_index in itertools.count():
            with self._condition:

                def ready(last_taken: int = last_taken) -> bool:
                    return self._has_newer(last_taken) or self._ended

                if not self._condition.wait_for(ready, timeout=self.frame_timeout):
                    log.error(
                        "webcam %d delivered no image for %.1f s; ending the input", self.device, self.frame_timeout
                    )
                    self._stop.set()
                    return
                if not self._has_newer(last_taken):
                    return
                assert self._latest is not None  # _has_newer checked it
                last_taken, stamp, image = self._latest
                self.taken_frames += 1
            if self.options.selects(raw_index):
                check_frame_size(image, self.undistorter.source_camera, f"webcam {self.device}")
                yield RawFrame(stamp, self.undistorter(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)))

    def _has_newer(self, last_taken: int) -> bool:
        """Whether an image captured after image number ``last_taken`` waits (call under the lock)."""
        return self._latest is not None and self._latest[0] > last_taken

    def close(self) -> None:
        """Stop the capture thread and release the device."""
        self._stop.set()
        if self._thread is None:
            self._capture.release()
        else:
            self._thread.join(timeout=2.0)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "device": self.device,
            "reported_fps": self.reported_fps,
            "captured_frames": self.captured_frames,
            "dropped_frames": self.dropped_frames,
            "calibration": str(self.calib_file) if self.calib_file else "guessed",
        }
