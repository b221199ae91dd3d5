"""ROS bags: a ROS 1 ``.bag`` file or a ROS 2 bag (its folder, with ``metadata.yaml``), read with
the ``rosbags`` package (no ROS installation).

The frames are the messages of one image topic, ``sensor_msgs/Image`` (encodings rgb8, bgr8,
rgba8, bgra8, mono8 and mono16) or ``sensor_msgs/CompressedImage`` (JPEG, PNG), in the bag's
order; ``topic`` names it, and may be left out when the bag holds a single image topic.
Timestamps are the messages' header stamps (the time the bag recorded them where a stamp is
zero). Calibration: the file given, else the first ``sensor_msgs/CameraInfo`` message of the
image topic's namespace (``/camera/rgb/image_color`` -> ``/camera/rgb/camera_info``; the bag's
only camera_info topic where that one is absent), its ``K`` and plumb-bob ``D``; else a guess,
with a warning. A message that cannot be decoded is skipped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from slam.errors import SourceError
from slam.geometry.camera import Camera
from slam.io.sources.base import RawFrame, Source, SourceOptions
from slam.io.sources.calibration import camera_from_file, check_frame_size, guessed_camera

log = logging.getLogger(__name__)

RAW_IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (RAW_IMAGE, COMPRESSED_IMAGE)

#: channels and OpenCV conversion to RGB of each raw encoding read (mono16 is scaled to 8 bits)
_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    "8uc1": (1, cv2.COLOR_GRAY2RGB),
    "mono16": (1, cv2.COLOR_GRAY2RGB),
    "16uc1": (1, cv2.COLOR_GRAY2RGB),
}


def is_rosbag(path: Path) -> bool:
    """Whether ``path`` is a ROS 1 bag file or a ROS 2 bag folder."""
    return (path.is_file() and path.suffix.lower() == ".bag") or (path.is_dir() and (path / "metadata.yaml").is_file())


def _reader(path: Path) -> Any:
    """An opened ``rosbags`` reader of the bag at ``path``, or SourceError."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
    try:
        reader.open()
    except Exception as err:  # rosbags raises its own errors for each format's faults
        raise SourceError(f"cannot read ROS bag {path}: {err}") from None
    return reader


def _connections(reader: Any, topic: str) -> list:
    """The bag's connections (one per recording of the topic) of ``topic``."""
    return [c for c in reader.connections if c.topic == topic]


def _stamp(message: Any, recorded_ns: int) -> float:
    """The message's header stamp in seconds, or the time the bag recorded it when that is 0."""
    stamp = message.header.stamp
    seconds = stamp.sec + stamp.nanosec * 1e-9
    return seconds if seconds > 0 else recorded_ns * 1e-9


def decode_image(message: Any, msgtype: str) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image from a ``sensor_msgs`` Image or CompressedImage message;
    ValueError saying why it cannot be."""
    data = np.asarray(message.data, dtype=np.uint8)
    if msgtype == COMPRESSED_IMAGE:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"compressed image ({message.format}) does not decode")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    encoding = message.encoding.lower()
    if encoding not in _ENCODINGS:
        raise ValueError(f"image encoding {message.encoding!r} is not read (expected one of {', '.join(_ENCODINGS)})")
    channels, conversion = _ENCODINGS[encoding]
    wide = encoding in ("mono16", "16uc1")
    row_bytes = message.width * channels * (2 if wide else 1)
    if message.step < row_bytes or len(data) < message.step * message.height:
        raise ValueError(f"image data too short for {message.width}x{message.height} {message.encoding}")
    rows = data[: message.step * message.height].reshape(message.height, message.step)[:, :row_bytes]
    if wide:
        values = rows.copy().view(">u2" if message.is_bigendian else "<u2").astype(np.float64)
        rows = np.clip(values * 255.0 / max(float(values.max()), 1.0), 0, 255).astype(np.uint8)
    image = np.ascontiguousarray(rows.reshape(message.height, message.width, channels))
    if channels == 1:
        image = image[:, :, 0]
    return image if conversion is None else cv2.cvtColor(image, conversion)


def camera_from_info(message: Any) -> Camera:
    """The camera of a ``sensor_msgs/CameraInfo`` message: K's focal lengths and centre, the
    plumb-bob D (k1 k2 p1 p2 [k3]) and the image size."""
    # ROS 2 names the fields k and d, ROS 1 K and D
    k = np.asarray(message.k if hasattr(message, "k") else message.K, dtype=np.float64)
    d = [float(v) for v in (message.d if hasattr(message, "d") else message.D)]
    model = message.distortion_model.lower()
    if any(d) and model not in ("plumb_bob", "rational_polynomial"):
        raise SourceError(f"camera_info's distortion model {message.distortion_model!r} is not read (plumb_bob is)")
    distortion = tuple(d[:5]) if len(d) >= 5 else tuple(d[:4]) if len(d) >= 4 else ()
    if not any(distortion):
        distortion = ()
    return Camera(k[0], k[4], k[2], k[5], distortion, int(message.width), int(message.height))


class RosbagSource(Source):
    """The frames of one image ``topic`` of a ROS bag (see the module docstring)."""

    kind = "rosbag"

    def __init__(
        self,
        path: str | Path,
        calib: str | Path | None = None,
        options: SourceOptions | None = None,
        topic: str | None = None,
    ):
        super().__init__(options)
        self.path = Path(path)
        if not is_rosbag(self.path):
            raise SourceError(f"{self.path} is not a ROS bag (a .bag file, or a ROS 2 bag folder with metadata.yaml)")
        self.skipped_frames = 0
        reader = _reader(self.path)
        try:
            self.topic, self.message_count = self._image_topic(reader, topic)
            first = self._first_image(reader)
            height, width = first.shape[:2]
            if calib is not None:
                camera = camera_from_file(calib, width, height)
            else:
                camera = self._camera_info(reader, width, height)
        finally:
            reader.close()
        self.calib_file = None if calib is None else Path(calib)
        self.set_camera(camera)

    def _image_topic(self, reader: Any, topic: str | None) -> tuple[str, int]:
        """(topic, message count) of the image topic read."""
        images = {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_TYPES}
        listed = ", ".join(sorted(images)) or "none"
        if topic is None:
            if len(images) != 1:
                raise SourceError(f"{self.path} holds {len(images)} image topics ({listed}): name one with --topic")
            topic = next(iter(images))
        elif topic not in images:
            topics = {c.topic: c.msgtype for c in reader.connections}
            what = f"a {topics[topic]} topic, not an image one" if topic in topics else "not in the bag"
            raise SourceError(f"{self.path}: topic {topic} is {what}; its image topics: {listed}")
        count = sum(c.msgcount for c in _connections(reader, topic))
        if count == 0:
            raise SourceError(f"{self.path}: topic {topic} holds no message")
        return topic, count

    def _first_image(self, reader: Any) -> np.ndarray:
        connections = _connections(reader, self.topic)
        for connection, _, raw in reader.messages(connections=connections):
            try:
                return decode_image(reader.deserialize(raw, connection.msgtype), connection.msgtype)
            except ValueError:
                continue
        raise SourceError(f"{self.path}: no message of {self.topic} decodes to an image")

    def _camera_info(self, reader: Any, width: int, height: int) -> Camera:
        """The camera of the image topic's camera_info (see the module docstring), else a guess."""
        infos = sorted({c.topic for c in reader.connections if c.msgtype == CAMERA_INFO})
        sibling = self.topic.rsplit("/", 1)[0] + "/camera_info"
        chosen = sibling if sibling in infos else infos[0] if len(infos) == 1 else None
        if chosen is None:
            return guessed_camera(width, height, f"ROS bag {self.path} ({self.topic}, no camera_info)")
        connections = _connections(reader, chosen)
        for connection, _, raw in reader.messages(connections=connections):
            camera = camera_from_info(reader.deserialize(raw, connection.msgtype))
            if (camera.width, camera.height) != (width, height):
                raise SourceError(
                    f"{self.path}: {chosen} is for {camera.width}x{camera.height} images, "
                    f"{self.topic} holds {width}x{height}"
                )
            log.info("calibration from %s", chosen)
            return camera
        return guessed_camera(width, height, f"ROS bag {self.path} ({chosen} is empty)")

    @property
    def raw_count(self) -> int:
        return self.message_count

    def __len__(self) -> int:
        return len(self.options.selected_indices(self.message_count))

    def _raw_frames(self) -> Iterator[RawFrame]:
        reader = _reader(self.path)
        try:
            connections = _connections(reader, self.topic)
            for raw_index, (connection, recorded_ns, raw) in enumerate(reader.messages(connections=connections)):
                if not self.options.selects(raw_index):
                    continue
                message = reader.deserialize(raw, connection.msgtype)
                try:
                    image = decode_image(message, connection.msgtype)
                except ValueError as err:
                    self.skipped_frames += 1
                    log.warning("%s: skipped message %d of %s: %s", self.path, raw_index, self.topic, err)
                    continue
                check_frame_size(image, self.undistorter.source_camera, f"{self.path} {self.topic} message {raw_index}")
                yield RawFrame(_stamp(message, recorded_ns), self.undistorter(image))
        finally:
            reader.close()

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "topic": self.topic, **vars(self.options)}
