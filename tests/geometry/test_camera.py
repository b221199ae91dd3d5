"""Cameras: calibration file I/O, resizing and cropping that keep intrinsics right, undistortion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slam.errors import CalibrationError
from slam.geometry.camera import Camera, Undistorter


def project(camera: Camera, point: np.ndarray) -> np.ndarray:
    return np.array([camera.fx * point[0] / point[2] + camera.cx, camera.fy * point[1] / point[2] + camera.cy])


def test_file_round_trip(tmp_path):
    camera = Camera(517.3, 516.5, 318.6, 255.3, (0.2624, -0.9531, -0.0054, 0.0026, 1.1633))
    path = tmp_path / "cam.txt"
    camera.to_file(path, comment="TUM freiburg1\n640x480")
    text = path.read_text()
    assert text.startswith("# TUM freiburg1\n# 640x480\n")
    assert Camera.from_file(path) == camera


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "expected one line"),
        ("500 500 320", "found 3"),
        ("500 500 320 240 0.1", "found 5"),
        ("500 abc 320 240", "not a list of numbers"),
        ("-500 500 320 240", "positive"),
        ("500 500 320 240\n1 2 3 4", "found 2"),
    ],
)
def test_malformed_calibration_names_the_file(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message) as info:
        Camera.from_file(path)
    assert str(path) in str(info.value)


def test_missing_calibration_file(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        Camera.from_file(tmp_path / "nope.txt")


def test_resize_keeps_projection_consistent():
    camera = Camera(500.0, 480.0, 319.5, 239.5, width=640, height=480)
    small = camera.resized(320, 240)
    assert (small.fx, small.fy, small.cx, small.cy) == (250.0, 240.0, 159.5, 119.5)
    assert small.size == (320, 240)
    point = np.array([0.3, -0.2, 2.0])
    # a pixel coordinate u at full size maps to (u + 0.5) / 2 - 0.5 at half size
    assert np.allclose(project(small, point), (project(camera, point) + 0.5) / 2 - 0.5)


def test_crop_shifts_principal_point():
    camera = Camera(500.0, 500.0, 320.0, 240.0, width=640, height=480)
    crop = camera.cropped(100, 50, 400, 300)
    point = np.array([0.1, 0.2, 3.0])
    assert np.allclose(project(crop, point), project(camera, point) - [100, 50])
    assert crop.size == (400, 300)


def test_size_check_catches_calibration_for_another_resolution(caplog):
    camera = Camera(707.0, 707.0, 601.9, 183.1)
    camera.check_image_size(1226, 370)
    with pytest.raises(CalibrationError, match="another resolution"):
        camera.check_image_size(320, 240)
    assert not caplog.records
    Camera(500, 500, 100, 240).check_image_size(640, 480)  # a crop: allowed, with a warning
    assert "far from the centre" in caplog.text


def test_undistortion_straightens_a_distorted_line():
    camera = Camera(300.0, 300.0, 159.5, 119.5, (-0.3, 0.1, 0.0, 0.0), width=320, height=240)
    # A straight row of points at y = 0.25 (normalised), distorted by the camera, drawn as dots.
    xs = np.linspace(-0.45, 0.45, 21)
    ideal = np.stack([xs, np.full_like(xs, 0.25), np.ones_like(xs)], axis=1)
    distorted, _ = cv2.projectPoints(ideal, np.zeros(3), np.zeros(3), camera.K, np.array(camera.distortion))
    image = np.zeros((240, 320), np.uint8)
    for u, v in distorted[:, 0]:
        cv2.circle(image, (int(round(u)), int(round(v))), 2, 255, -1)
    undistorter = Undistorter(camera)
    straight = undistorter(image)
    rows = [
        np.average(np.arange(240), weights=straight[:, c].astype(float))
        for c in range(40, 280, 10)
        if straight[:, c].sum() > 0
    ]
    expected_row = 300.0 * 0.25 + 119.5
    assert undistorter.camera.distortion == ()
    assert len(rows) > 10 and np.max(np.abs(np.array(rows) - expected_row)) < 1.0
