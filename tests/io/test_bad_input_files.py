"""Bad input files reach the user as one line naming the file (and line): text that is not UTF-8
or UTF-16, non-finite numbers, lines out of time order, images cut short."""

from __future__ import annotations

import codecs
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from apps.cli import main
from slam.config.loader import load
from slam.config.schema import SystemConfig
from slam.errors import CalibrationError, SourceError, TextFileError, TrajectoryError
from slam.geometry.camera import Camera
from slam.io.sources.base import read_image
from slam.io.sources.euroc import read_csv, read_groundtruth, read_sensor_yaml, sensor_to_body
from slam.io.sources.image_folder import read_timestamps
from slam.io.sources.kitti import read_projections
from slam.io.sources.tum import TumSource, read_file_list
from slam.io.trajectory import read_kitti, read_trajectory, read_tum
from slam.text_files import read_text

POSE_ROW = "0 0 0 0 0 0 1"
KITTI_ROW = "1 0 0 0 0 1 0 0 0 0 1 0"

#: (file content, reader) for every reader of a text input file.
READERS = {
    "calibration": ("517.3 516.5 318.6 255.3\n", lambda p: Camera.from_file(p).fx),
    "tum trajectory": (f"1.0 {POSE_ROW}\n2.0 {POSE_ROW}\n", lambda p: len(read_tum(p))),
    "kitti poses": (f"{KITTI_ROW}\n", lambda p: len(read_kitti(p))),
    "trajectory (auto)": (f"1.0 {POSE_ROW}\n", lambda p: len(read_trajectory(p))),
    "tum image list": ("1.0 rgb/1.png\n2.0 rgb/2.png\n", lambda p: read_file_list(p)[1]),
    "timestamps": ("0.1\n0.2\n", lambda p: list(read_timestamps(p, 2))),
    "kitti calib": (f"P0: {KITTI_ROW}\n", lambda p: sorted(read_projections(p))),
    "euroc csv": ("#timestamp,filename\n1,a.png\n", lambda p: read_csv(p, 2)),
    "euroc sensor yaml": ("%YAML:1.0\nintrinsics: [1, 2, 3, 4]\n", lambda p: read_sensor_yaml(p)["intrinsics"]),
    "config yaml": ("backend:\n  window: 5\n", lambda p: load(SystemConfig(), p).backend.window),
}


@pytest.mark.parametrize("name", READERS)
@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"])
def test_every_reader_takes_utf8_with_bom_and_utf16_with_bom(tmp_path, name, encoding):
    text, reader = READERS[name]
    plain, other = tmp_path / "plain.txt", tmp_path / "other.txt"
    plain.write_text(text, encoding="utf-8")
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}.get(encoding, b"")
    other.write_bytes(bom + text.replace("\n", "\r\n").encode(encoding))
    assert reader(other) == reader(plain)


@pytest.mark.parametrize("name", READERS)
@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xff\xd8\xff\xe0binary", r"byte 0xff at offset 0"),
        ("1 2 3 4\n".encode("utf-16-le"), r"byte 0x00 at offset 1"),  # UTF-16 without a byte order mark
        (codecs.BOM_UTF16_LE + b"1\x002", r"byte 0x32 at offset 4"),  # odd length
    ],
)
def test_every_reader_refuses_other_bytes_in_one_line_naming_the_file(tmp_path, name, data, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(TextFileError, match=message) as caught:
        READERS[name][1](path)
    assert str(caught.value).startswith(f"{path}: not a UTF-8 or UTF-16 text file")
    assert "\n" not in str(caught.value)


def test_read_text_names_a_file_it_cannot_read(tmp_path):
    with pytest.raises(TextFileError, match=f"^{tmp_path}: cannot read the file"):
        read_text(tmp_path)  # a folder


def test_cli_refuses_a_binary_calibration_in_one_line(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        cv2.imwrite(str(images / f"{k}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    calib = tmp_path / "c.txt"
    calib.write_bytes(b"\xff\xff")
    args = ["run", str(images), "--calib", str(calib), "--viewer", "none", "--max-frames", "1"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"v2d run: error: {calib}: not a UTF-8 or UTF-16 text file (byte 0xff at offset 0); save it as UTF-8\n"
    )


# ---------------------------------------------------------------------------- non-finite numbers
@pytest.mark.parametrize(
    "content, message",
    [
        (f"1.0 {POSE_ROW}\n2.0 nan 0 0 0 0 0 1\n", r":2: 'nan' is not a finite number"),
        (f"1.0 {POSE_ROW}\ninf {POSE_ROW}\n", r":2: 'inf' is not a finite number"),
        (f"1.0 {POSE_ROW}\n2.0 0 0 0 0 0 0 0\n", r":2: quaternion 0 0 0 0 has norm 0"),
        (f"1.0 {POSE_ROW}\n# comment\n1.0 {POSE_ROW}\n", r":3: same timestamp as line 1"),
    ],
)
def test_tum_trajectory_refuses_non_finite_values_zero_quaternions_and_repeated_times(tmp_path, content, message):
    path = tmp_path / "groundtruth.txt"
    path.write_text(content)
    with pytest.raises(TrajectoryError, match=f"^{path}{message}"):
        read_tum(path)


def test_kitti_poses_refuse_non_finite_values(tmp_path):
    path = tmp_path / "00.txt"
    path.write_text(f"{KITTI_ROW}\n{KITTI_ROW.replace('1', '-inf', 1)}\n")
    with pytest.raises(TrajectoryError, match=f"^{path}:2: '-inf' is not a finite number"):
        read_kitti(path)


@pytest.mark.parametrize("row, message", [("2,0,0,nan,1,0,0,0", r":3: 'nan'"), ("2,0,0,0,0,0,0,0", r":3: quaternion")])
def test_euroc_ground_truth_refuses_non_finite_values_and_zero_quaternions(tmp_path, row, message):
    path = tmp_path / "data.csv"
    path.write_text(f"#timestamp,p,p,p,q,q,q,q\n1,0,0,0,1,0,0,0\n{row}\n")
    with pytest.raises(TrajectoryError, match=f"^{path}{message}"):
        read_groundtruth(path)


def test_eval_with_nan_in_a_trajectory_is_one_line(tmp_path, capsys):
    good, bad = tmp_path / "gt.txt", tmp_path / "est.txt"
    good.write_text("".join(f"{t}.0 {t} 0 0 0 0 0 1\n" for t in range(5)))
    bad.write_text(good.read_text().replace("3.0 3", "3.0 nan"))
    assert main(["eval", "--gt", str(good), "--est", str(bad)]) == 2
    assert capsys.readouterr().err == f"v2d eval: error: {bad}:4: 'nan' is not a finite number\n"


@pytest.mark.parametrize(
    "line, message",
    [
        ("nan 500 320 240", "must be finite"),
        ("500 500 inf 240", "must be finite"),
        ("500 500 320 240 0.1 nan 0 0", "must be finite"),
        ("-500 500 320 240", "focal lengths must be positive"),
        ("0 500 320 240", "focal lengths must be positive"),
    ],
)
def test_calibration_refuses_non_finite_values_and_non_positive_focal_lengths(tmp_path, line, message):
    path = tmp_path / "calib.txt"
    path.write_text(line + "\n")
    with pytest.raises(CalibrationError, match=f"^{path}: .*{message}"):
        Camera.from_file(path)


def test_kitti_calib_and_euroc_sensor_refuse_non_finite_values(tmp_path):
    calib = tmp_path / "calib.txt"
    calib.write_text(f"P0: {KITTI_ROW.replace('0', 'nan', 1)}\n")
    with pytest.raises(CalibrationError, match=f"^{calib}:1: not a list of finite numbers"):
        read_projections(calib)
    sensor = tmp_path / "sensor.yaml"
    sensor.write_text("T_BS:\n  data: [.nan, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]\n")
    with pytest.raises(CalibrationError, match=f"^{sensor}: expected 'T_BS'"):
        sensor_to_body(read_sensor_yaml(sensor), sensor)


def test_euroc_sensor_yaml_errors_give_the_line_and_refuse_duplicate_keys(tmp_path):
    sensor = tmp_path / "sensor.yaml"
    sensor.write_text("%YAML:1.0\ncamera_model: pinhole\nintrinsics: [1, 2, 3, 4]\nintrinsics: [1, 2, 3, 4]\n")
    with pytest.raises(CalibrationError, match=f"^{sensor}:4:1: not valid YAML: key 'intrinsics' given twice"):
        read_sensor_yaml(sensor)


# ---------------------------------------------------------------------------- time order
def _tum_folder(tmp_path: Path, stamps: list[str]) -> Path:
    folder = tmp_path / "tum"
    (folder / "rgb").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(len(stamps)):
        cv2.imwrite(str(folder / "rgb" / f"{k}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    (folder / "rgb.txt").write_text("".join(f"{s} rgb/{k}.png\n" for k, s in enumerate(stamps)))
    return folder


def test_shuffled_tum_image_list_is_sorted_by_time_with_one_warning(tmp_path, caplog):
    folder = _tum_folder(tmp_path, ["2.0", "1.0", "3.0"])
    with caplog.at_level(logging.WARNING, logger="slam.io.sources.tum"):
        source = TumSource(folder, options=None)
    assert list(source.timestamps) == [1.0, 2.0, 3.0]
    assert [p.name for p in source.image_files] == ["1.png", "0.png", "2.png"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "slam.io.sources.tum"]
    assert warnings == [f"{folder / 'rgb.txt'}: the lines are not in time order; frames are taken sorted by timestamp"]


@pytest.mark.parametrize(
    "stamps, message",
    [
        (["1.0", "2.0", "1.0"], r":3: same timestamp as line 1"),
        (["1.0", "nan"], r":2: expected 'timestamp filename' with a finite timestamp"),
    ],
)
def test_tum_image_list_refuses_repeated_and_non_finite_timestamps(tmp_path, stamps, message):
    folder = _tum_folder(tmp_path, stamps)
    with pytest.raises(SourceError, match=f"^{folder / 'rgb.txt'}{message}"):
        read_file_list(folder / "rgb.txt")


@pytest.mark.parametrize(
    "content, message",
    [
        ("0.1\n0.3\n0.2\n", r":3: timestamp 0.2 is not after the one on line 2 \(0.3\)"),
        ("0.1\n# c\n0.1\n", r":3: timestamp 0.1 is not after the one on line 1"),
        ("0.1\ninf\n", r":2: not a timestamp"),
        ("0.1\n,\n", r":2: not a timestamp"),
    ],
)
def test_timestamps_of_numbered_frames_must_increase_line_by_line(tmp_path, content, message):
    path = tmp_path / "times.txt"
    path.write_text(content)
    with pytest.raises(SourceError, match=f"^{path}{message}"):
        read_timestamps(path, 2)


# ---------------------------------------------------------------------------- images cut short
def _encoded(extension: str) -> bytes:
    gradient = np.tile(np.arange(0, 256, 2, dtype=np.uint8), (96, 1))
    ok, data = cv2.imencode(extension, np.dstack([gradient] * 3))
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("extension, keep", [(".jpg", 0.5), (".jpg", 0.99), (".png", 0.5), (".png", 0.99)])
def test_an_image_cut_short_is_refused_like_a_corrupt_one(tmp_path, extension, keep):
    data = _encoded(extension)
    path = tmp_path / f"frame{extension}"
    path.write_bytes(data)
    assert read_image(path).shape == (96, 128, 3)
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(SourceError, match=f"cannot read image {path} "):
        read_image(path)


def test_a_jpeg_with_trailing_padding_is_read(tmp_path):
    path = tmp_path / "frame.jpg"
    path.write_bytes(_encoded(".jpg") + b"\0\0\r\n")
    assert read_image(path).shape == (96, 128, 3)
