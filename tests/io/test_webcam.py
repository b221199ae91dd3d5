"""The webcam source with fake capture devices: newest-frame delivery, dropped-frame counts, a camera
unplugged mid-run, stalls, and devices that cannot be opened."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from slam.errors import CalibrationError, SourceError
from slam.io.sources.base import SourceOptions
from slam.io.sources.detect import open_source
from slam.io.sources.webcam import WebcamSource


class FakeCamera:
    """Stands in for ``cv2.VideoCapture``: 64x48 BGR images whose pixels hold the image number
    (1, 2, ...; the first read is number 1). Reads take ``period`` seconds; after ``fail_after``
    images every read fails, as when the camera is unplugged."""

    def __init__(self, period: float = 0.002, fail_after: int | None = None, opened: bool = True):
        self.period = period
        self.fail_after = fail_after
        self.opened = opened
        self.count = 0
        self.released = threading.Event()

    def isOpened(self) -> bool:
        return self.opened

    def read(self):
        time.sleep(self.period)
        if self.fail_after is not None and self.count >= self.fail_after:
            return False, None
        self.count += 1
        return True, np.full((48, 64, 3), self.count, np.uint8)

    def release(self) -> None:
        self.released.set()

    def get(self, prop_id: int) -> float:
        return 30.0


def number(frame) -> int:
    return int(frame.image[0, 0, 0])


def test_slow_consumer_gets_newest_frames_until_unplugged(caplog):
    camera = FakeCamera(fail_after=60)
    source = WebcamSource(2, capture_factory=lambda index: camera)
    before = time.monotonic()
    frames = []
    with caplog.at_level(logging.WARNING):
        for frame in source:
            frames.append(frame)
            time.sleep(0.015)  # slower than the camera: frames are dropped, never queued
    source.close()
    numbers = [number(f) for f in frames]
    assert numbers == sorted(set(numbers)) and numbers[0] >= 2  # image 1 was the probe at open time
    assert numbers[-1] == 60  # the last image before the failure is still handed out
    assert [f.index for f in frames] == list(range(len(frames)))
    assert source.captured_frames == 59 and source.dropped_frames == 59 - len(frames) > 0
    stamps = [f.timestamp for f in frames]
    assert before <= stamps[0] and np.all(np.diff(stamps) > 0) and stamps[-1] <= time.monotonic()
    assert any("webcam 2 stopped delivering images after 59 frames" in r.getMessage() for r in caplog.records)
    assert camera.released.is_set()
    assert source.describe()["dropped_frames"] == source.dropped_frames


def test_options_and_close_stop_the_capture_thread():
    camera = FakeCamera()
    with WebcamSource(
        0, capture_factory=lambda index: camera, options=SourceOptions(start=2, stride=2, max_frames=3, resize=(32, 24))
    ) as source:
        frames = list(source)
        assert len(frames) == 3 and frames[0].image.shape == (24, 32, 3)
        assert source.taken_frames == 2 + 2 * 2 + 1
        thread = source._thread
    assert camera.released.wait(2.0) and not thread.is_alive()


def test_stalled_camera_ends_after_timeout(caplog):
    camera = FakeCamera()
    source = WebcamSource(0, capture_factory=lambda index: camera, frame_timeout=0.2)
    camera.period = 0.5  # after the probe, the camera hangs in read()
    with caplog.at_level(logging.ERROR):
        frames = list(source)
    source.close()
    assert frames == [] and any("delivered no image for 0.2 s" in r.getMessage() for r in caplog.records)


def test_device_that_cannot_be_opened():
    camera = FakeCamera(opened=False)
    with pytest.raises(SourceError, match="cannot open webcam 3"):
        WebcamSource(3, capture_factory=lambda index: camera)
    assert camera.released.is_set()
    with pytest.raises(SourceError, match="webcam 1 opened but delivered no image"):
        WebcamSource(1, capture_factory=lambda index: FakeCamera(fail_after=0))


def test_real_device_that_does_not_exist():
    with pytest.raises(SourceError, match="cannot open webcam 97"):
        open_source("webcam:97")


def test_webcam_spec_and_calibration(tmp_path):
    with pytest.raises(SourceError, match="invalid webcam 'webcam:front'"):
        open_source("webcam:front")
    calib = tmp_path / "webcam.txt"
    calib.write_text("600 600 319.5 239.5\n")  # for 640x480; the fake camera gives 64x48
    camera = FakeCamera()
    with pytest.raises(CalibrationError, match=str(calib)):
        WebcamSource(0, calib=calib, capture_factory=lambda index: camera)
    assert camera.released.is_set()
