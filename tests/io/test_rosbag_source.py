"""ROS bags as a source: bags this test writes (ROS 1 with raw images, ROS 2 with compressed
ones, each with a camera_info topic) play their image topic's frames in order at their header
stamps with the camera_info's calibration; bad bags and topics are one clear line; end to end,
`v2d run BAG --topic T` tracks the frames as it does the scene they came from."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from apps.cli import main
from slam.errors import SourceError
from slam.evaluation.trajectory import evaluate_trajectory
from slam.io.sources.base import SourceOptions
from slam.io.sources.detect import detect_kind, open_source
from slam.io.sources.synthetic import SyntheticSource
from slam.io.trajectory import Trajectory, read_trajectory

rosbags = pytest.importorskip("rosbags", reason="rosbags (requirements.txt) writes the test's bags")
from rosbags.rosbag1 import Writer as Ros1Writer  # noqa: E402
from rosbags.rosbag2 import Writer as Ros2Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

IMAGES, DEPTH, INFO = "/camera/rgb/image_color", "/camera/depth/image", "/camera/rgb/camera_info"
START = 1_700_000_000.0  # the header stamp of the first frame, seconds


def _messages(ros1: bool, frames: list, compressed: bool) -> list[tuple[str, str, float, object]]:
    """(topic, message type, time, message) of the frames' images, a depth image per frame and
    the camera's info, for ROS 1 or ROS 2."""
    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    types = store.types
    camera = frames[0].camera
    messages = []
    for k, frame in enumerate(frames):
        seconds = START + frame.timestamp
        stamp = types["builtin_interfaces/msg/Time"](sec=int(seconds), nanosec=int(round(seconds % 1 * 1e9)))
        header_fields = {"seq": k} if ros1 else {}
        header = types["std_msgs/msg/Header"](**header_fields, stamp=stamp, frame_id="camera")
        bgr = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
        if compressed:
            data = np.frombuffer(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 98])[1].tobytes(), np.uint8)
            image = types["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=data)
            messages.append((IMAGES, "sensor_msgs/msg/CompressedImage", seconds, image))
        else:
            height, width = bgr.shape[:2]
            image = types["sensor_msgs/msg/Image"](
                header=header,
                height=height,
                width=width,
                encoding="bgr8",
                is_bigendian=0,
                step=3 * width,
                data=bgr.reshape(-1),
            )
            messages.append((IMAGES, "sensor_msgs/msg/Image", seconds, image))
        depth = np.full((4, 4), 1000, dtype="<u2").view(np.uint8).reshape(-1)
        depth_image = types["sensor_msgs/msg/Image"](
            header=header, height=4, width=4, encoding="16UC1", is_bigendian=0, step=8, data=depth
        )
        messages.append((DEPTH, "sensor_msgs/msg/Image", seconds, depth_image))
    k_matrix = np.array([camera.fx, 0, camera.cx, 0, camera.fy, camera.cy, 0, 0, 1], dtype=np.float64)
    calibration = {
        "D" if ros1 else "d": np.zeros(5),
        "K" if ros1 else "k": k_matrix,
        "R" if ros1 else "r": np.eye(3).reshape(-1),
        "P" if ros1 else "p": np.zeros(12),
    }
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    info = types["sensor_msgs/msg/CameraInfo"](
        header=messages[0][3].header,
        height=camera.height,
        width=camera.width,
        distortion_model="plumb_bob",
        **calibration,
        binning_x=0,
        binning_y=0,
        roi=roi,
    )
    return [(INFO, "sensor_msgs/msg/CameraInfo", START, info), *messages]


def write_bag(path: Path, frames: list, ros1: bool, compressed: bool = False) -> Path:
    """A ROS 1 bag file or a ROS 2 bag folder at ``path`` holding ``frames`` (see _messages)."""
    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    writer = Ros1Writer(path) if ros1 else Ros2Writer(path, version=9)
    with writer:
        connections = {}
        for topic, msgtype, seconds, message in _messages(ros1, frames, compressed):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            data = store.serialize_ros1(message, msgtype) if ros1 else store.serialize_cdr(message, msgtype)
            writer.write(connections[topic], int(seconds * 1e9), data)
    return path


@pytest.fixture(scope="module")
def frames() -> list:
    return list(SyntheticSource("room", 0, 40))


@pytest.mark.parametrize("ros1", [True, False], ids=["ros1-raw", "ros2-compressed"])
def test_a_bag_plays_its_image_topic_at_the_header_stamps_with_the_camera_info_calibration(tmp_path, frames, ros1):
    bag = write_bag(tmp_path / ("scene.bag" if ros1 else "scene"), frames[:6], ros1, compressed=not ros1)
    assert detect_kind(str(bag)) == "rosbag"
    with pytest.raises(SourceError, match=f"2 image topics.*{DEPTH}.*{IMAGES}.*--topic"):
        open_source(bag)
    with open_source(bag, topic=IMAGES, options=SourceOptions(start=1, stride=2)) as source:
        assert source.output_camera == frames[0].camera and len(source) == 3
        played = list(source)
    assert [f.index for f in played] == [0, 1, 2]
    for frame, original in zip(played, frames[1:6:2]):
        assert frame.timestamp == pytest.approx(START + original.timestamp, abs=1e-6)
        error = np.abs(frame.image.astype(int) - original.image.astype(int)).mean()
        assert error == 0 if ros1 else error < 3, error
    assert source.describe()["topic"] == IMAGES


def test_bad_bags_and_topics_are_one_line_errors(tmp_path, frames):
    bag = write_bag(tmp_path / "scene.bag", frames[:2], ros1=True)
    with pytest.raises(SourceError, match=f"topic {INFO} is a sensor_msgs/msg/CameraInfo topic, not an image one"):
        open_source(bag, topic=INFO)
    with pytest.raises(SourceError, match="topic /nothing is not in the bag; its image topics: "):
        open_source(bag, topic="/nothing")
    with pytest.raises(SourceError, match="--topic is for ROS bags"):
        open_source("synthetic", topic=IMAGES)
    broken = tmp_path / "broken.bag"
    broken.write_bytes(b"#ROSBAG V2.0\n" + bytes(100))
    with pytest.raises(SourceError, match="cannot read ROS bag .*broken.bag"):
        open_source(broken)
    with pytest.raises(SourceError, match="cannot be played there and back"):
        open_source(bag, topic=IMAGES, options=SourceOptions(there_and_back=True))


@pytest.mark.slow
def test_v2d_run_on_a_bag_tracks_the_scene_its_frames_came_from(tmp_path, frames):
    bag = write_bag(tmp_path / "scene.bag", frames, ros1=True)
    out = tmp_path / "run"
    args = ["run", str(bag), "--topic", IMAGES, "--out", str(out), "--viewer", "none", "--quiet"]
    assert main([*args, "--set", "backend.mode=inline", "--set", "fusion.mesh=false"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["source"]["kind"] == "rosbag" and stats["frames_tracked"] == len(frames)
    truth = Trajectory(np.array([START + f.timestamp for f in frames]), np.stack([f.pose_gt for f in frames]))
    result = evaluate_trajectory(truth, read_trajectory(out / "trajectory.txt"), align="sim3")
    assert result.matched == len(frames) and result.ate_rmse < 0.02 * truth.path_length(), result
