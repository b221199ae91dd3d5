"""Chessboard calibration (`v2d calibrate`): real chessboard images against OpenCV's own result,
a video made from them, and clear errors on bad input."""

from __future__ import annotations

import shutil
import time

import cv2
import numpy as np
import pytest

from apps.cli import main
from slam.errors import CalibrationError, SourceError
from slam.geometry.camera import Camera
from slam.io.chessboard import Board, calibrate, find_corners

#: OpenCV's calibration of the sample chessboard images (chessboard/left_intrinsics.yml).
OPENCV_FX = OPENCV_FY = 535.9
OPENCV_CX, OPENCV_CY = 342.3, 235.6


def assert_close_to_opencv(camera: Camera) -> None:
    assert camera.fx == pytest.approx(OPENCV_FX, rel=0.01)
    assert camera.fy == pytest.approx(OPENCV_FY, rel=0.01)
    assert camera.cx == pytest.approx(OPENCV_CX, abs=2.0)
    assert camera.cy == pytest.approx(OPENCV_CY, abs=2.0)


def test_calibrate_cli_matches_opencv_on_the_sample_chessboard(shared_data, tmp_path, capsys):
    out = tmp_path / "camera.txt"
    code = main(
        ["calibrate", str(shared_data / "chessboard"), "--board", "9x6", "--square", "0.025", "--out", str(out)]
    )
    assert code == 0
    camera = Camera.from_file(out)
    assert_close_to_opencv(camera)
    assert len(camera.distortion) == 5 and camera.distortion[0] < 0  # barrel distortion, k1 k2 p1 p2 k3
    header = out.read_text().splitlines()[0]
    assert header.startswith("#") and "9x6" in header and "13 views" in header and "640x480" in header
    printed = capsys.readouterr().out
    assert "RMS reprojection error" in printed and f"fx = {camera.fx:.3f}" in printed


def test_result_reports_views_and_errors(shared_data):
    result = calibrate(shared_data / "chessboard", Board.parse("9x6", 0.025))
    assert result.views_used == 13 and result.views_rejected == 0
    assert result.camera.size == (640, 480)
    assert len(result.per_view_errors) == 13
    assert 0 < result.rms < 0.5  # OpenCV's own run reports 0.39 px
    # The RMS over all corners is the root mean square of the per-view RMS (same corner count).
    assert result.rms == pytest.approx(np.sqrt(np.mean(result.per_view_errors**2)), rel=1e-6)


def test_video_of_the_chessboard_calibrates_and_skips_repeated_frames(shared_data, tmp_path):
    images = sorted((shared_data / "chessboard").glob("*.jpg"))
    video = tmp_path / "board.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    assert writer.isOpened()
    for path in images:
        frame = cv2.imread(str(path))
        for _ in range(3):  # the board held still for three frames
            writer.write(frame)
    writer.release()
    out = tmp_path / "camera.txt"
    assert main(["calibrate", str(video), "--out", str(out)]) == 0
    assert_close_to_opencv(Camera.from_file(out))
    result = calibrate(video, Board(9, 6, 0.025))
    assert result.views_used == len(images)
    assert result.duplicates_skipped == 2 * len(images)


def test_too_few_views_is_a_clear_error(shared_data, tmp_path):
    for path in sorted((shared_data / "chessboard").glob("*.jpg"))[:3]:
        shutil.copy(path, tmp_path / path.name)
    with pytest.raises(CalibrationError, match="3 distinct view.*at least 5"):
        calibrate(tmp_path, Board(9, 6, 0.025))


def test_folder_without_a_chessboard_is_a_clear_error(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"noise{i}.png"), rng.integers(0, 255, (120, 160), dtype=np.uint8))
    assert main(["calibrate", str(tmp_path), "--out", str(tmp_path / "c.txt")]) == 2
    err = capsys.readouterr().err
    assert "v2d calibrate: error:" in err and "found in 0 distinct view" in err and "Traceback" not in err
    assert not (tmp_path / "c.txt").exists()


def test_board_larger_than_the_real_one_finds_no_views(shared_data):
    with pytest.raises(CalibrationError, match="10x7 chessboard was found in 0 .*13 image"):
        calibrate(shared_data / "chessboard", Board(10, 7, 0.025))


def test_missing_path_is_a_clear_error(tmp_path, capsys):
    assert main(["calibrate", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c.txt")]) == 2
    err = capsys.readouterr().err
    assert "calibration input not found" in err and "nowhere" in err


def test_empty_folder_and_unreadable_video_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="no image files"):
        calibrate(tmp_path, Board(9, 6, 0.025))
    bogus = tmp_path / "notes.avi"
    bogus.write_text("not a video")
    with pytest.raises(SourceError, match="notes.avi"):
        calibrate(bogus, Board(9, 6, 0.025))


def test_unopenable_webcam_is_a_clear_error():
    with pytest.raises(SourceError, match="webcam.?99"):
        calibrate("webcam:99", Board(9, 6, 0.025), webcam_timeout=1.0)


class ChessboardCamera:
    """A stand-in for cv2.VideoCapture: the sample chessboard images, each held for 10 frames at
    about 200 frames per second, in a loop."""

    def __init__(self, images: list[np.ndarray]):
        self.images, self.count = images, 0

    def isOpened(self) -> bool:
        return True

    def read(self):
        time.sleep(0.005)
        self.count += 1
        return True, self.images[(self.count // 10) % len(self.images)].copy()

    def get(self, prop_id: int) -> float:
        return 200.0

    def release(self) -> None:
        pass


def test_webcam_calibration_collects_distinct_views(shared_data, monkeypatch):
    images = [cv2.imread(str(p)) for p in sorted((shared_data / "chessboard").glob("*.jpg"))]
    monkeypatch.setattr(cv2, "VideoCapture", lambda device: ChessboardCamera(images))
    kept = []
    result = calibrate(
        "webcam:0", Board(9, 6, 0.025), max_views=8, webcam_interval=0.02, webcam_timeout=30.0, progress=kept.append
    )
    assert result.views_used == 8 and len(kept) == 8
    assert len(set(result.view_names)) == 8
    assert result.camera.size == (640, 480) and result.rms < 1.0


@pytest.mark.parametrize("pattern, square", [("9by6", 0.025), ("1x6", 0.025), ("9x6", 0.0), ("9x6", -1.0)])
def test_bad_board_is_rejected(pattern, square):
    with pytest.raises(CalibrationError):
        Board.parse(pattern, square)


def test_find_corners_on_a_synthetic_board():
    # A rendered 9x6-inner-corner board: 10x7 squares of 20 px, offset by (30, 40) pixels.
    image = np.full((220, 280), 255, np.uint8)
    for row in range(7):
        for col in range(10):
            if (row + col) % 2 == 0:
                image[40 + 20 * row : 40 + 20 * (row + 1), 30 + 20 * col : 30 + 20 * (col + 1)] = 0
    corners = find_corners(image, Board(9, 6, 0.02))
    assert corners is not None and corners.shape == (54, 2)
    # Inner corners lie on pixel boundaries: x = 30 + 20 k - 0.5 in the pixel-centre convention.
    expected = {(30 + 20 * c - 0.5, 40 + 20 * r - 0.5) for r in range(1, 7) for c in range(1, 10)}
    for x, y in corners:
        assert min(np.hypot(x - ex, y - ey) for ex, ey in expected) < 0.2
