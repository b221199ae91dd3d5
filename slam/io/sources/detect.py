"""Open any camera input from its command-line spec, detecting its kind from what the path holds.

- ``webcam`` / ``webcam:N``: live camera N (0 by default)
- ``synthetic`` / ``synthetic:...``: the built-in synthetic scene
- a folder with ``rgb.txt``: TUM RGB-D; with ``mav0/``: EuRoC; with ``sequences/``, or a KITTI
  sequence folder (``image_0``/``image_2`` and ``times.txt``): KITTI odometry
- any other folder holding images: an image folder
- a ``.bag`` file, or a folder with ``metadata.yaml``: a ROS 1 or ROS 2 bag (one image topic)
- a file: a video (anything OpenCV or PyAV opens)

Every source checks its calibration against the size of its first image when it opens, so a
calibration made for another resolution is reported before a run starts.
"""

from __future__ import annotations

import logging
from pathlib import Path

from slam.errors import SourceError
from slam.io.sources.base import Source, SourceOptions
from slam.io.sources.euroc import EurocSource, find_mav0
from slam.io.sources.image_folder import (
    IMAGE_EXTENSIONS,
    ImageFolderSource,
    list_images,
)
from slam.io.sources.kitti import DEFAULT_CAMERAS, KittiSource, is_kitti_sequence
from slam.io.sources.rosbag import RosbagSource, is_rosbag
from slam.io.sources.tum import TumSource
from slam.io.sources.video import VideoSource
from slam.io.sources.webcam import WebcamSource

log = logging.getLogger(__name__)

#: Source kinds accepted by ``open_source(kind=...)``.
SOURCE_KINDS = ("video", "image_folder", "tum", "kitti", "euroc", "rosbag", "webcam", "synthetic")
_LIVE_KINDS = ("webcam", "synthetic")


def detect_kind(spec: str) -> str:
    """The kind of source ``spec`` names (one of :data:`SOURCE_KINDS`). Raises SourceError when the
    path does not exist, or when a folder matches no known layout (saying what was expected)."""
    for kind in _LIVE_KINDS:
        if spec == kind or spec.startswith(f"{kind}:"):
            return kind
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if is_rosbag(path):
        return "rosbag"
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            raise SourceError(f"{path} is a single image; pass the folder that holds the sequence's images")
        return "video"
    if (path / "rgb.txt").is_file():
        return "tum"
    if find_mav0(path) is not None:
        return "euroc"
    if (path / "sequences").is_dir() or is_kitti_sequence(path):
        return "kitti"
    if (path / "rgb").is_dir():
        raise SourceError(
            f"{path} looks like a TUM RGB-D sequence (it has rgb/) but its index file {path / 'rgb.txt'} is missing"
        )
    if any((path / name).is_dir() for name in DEFAULT_CAMERAS):
        raise SourceError(
            f"{path} looks like a KITTI odometry sequence (it has image_0/ or image_2/) but "
            f"{path / 'times.txt'} is missing"
        )
    if list_images(path):
        return "image_folder"
    raise SourceError(
        f"{path}: no camera input recognised; expected a TUM RGB-D sequence (rgb.txt), a KITTI odometry folder "
        f"(sequences/, or image_0/ with times.txt), a EuRoC sequence (mav0/), a folder of images "
        f"({', '.join(IMAGE_EXTENSIONS)}), a ROS 2 bag (metadata.yaml), or a video or ROS 1 bag file"
    )


def webcam_index(spec: str) -> int:
    """The device number of ``webcam``, ``webcam:N`` or ``N``; SourceError when it is not one."""
    if spec == "webcam":
        return 0
    number = spec.partition(":")[2] if spec.startswith("webcam:") else spec
    if not number.isdigit():
        raise SourceError(f"invalid webcam {spec!r}: expected webcam:N with N a camera number such as 0")
    return int(number)


def open_source(
    spec: str | Path,
    calib: str | Path | None = None,
    options: SourceOptions | None = None,
    kind: str | None = None,
    topic: str | None = None,
) -> Source:
    """Open the source ``spec`` names (see the module docstring), with calibration file ``calib``
    (None: the source's own or a guess) and ``options``; ``kind`` overrides detection; ``topic``:
    a ROS bag's image topic (None: its only one).

    Raises SourceError (missing path, unknown layout, unreadable data, a ``start`` option past the
    end of a source of known length) or CalibrationError (a calibration that is malformed or does
    not fit the images), each naming the file."""
    spec = str(spec)
    options = options or SourceOptions()
    if kind is None:
        kind = detect_kind(spec)
    elif kind not in SOURCE_KINDS:
        raise SourceError(f"unknown source kind {kind!r}; expected one of {', '.join(SOURCE_KINDS)}")
    elif kind not in _LIVE_KINDS and not Path(spec).exists():
        raise SourceError(f"source not found: {spec}")
    if topic is not None and kind != "rosbag":
        raise SourceError(f"--topic is for ROS bags; {spec} is a {kind} source")
    if options.there_and_back and kind in ("video", "rosbag", "webcam"):
        raise SourceError(f"a {kind} source cannot be played there and back: it is read in order only")
    log.info("opening %s source %s", kind, spec)
    if kind == "synthetic":
        from slam.io.sources.synthetic import SyntheticSource

        if calib is not None:
            log.warning("ignoring calibration %s: the synthetic scene has its own camera", calib)
        source: Source = SyntheticSource.from_spec(spec, options)
    elif kind == "webcam":
        source = WebcamSource(webcam_index(spec), calib, options)
    elif kind == "rosbag":
        source = RosbagSource(spec, calib, options, topic)
    else:
        opener = {
            "video": VideoSource,
            "image_folder": ImageFolderSource,
            "tum": TumSource,
            "kitti": KittiSource,
            "euroc": EurocSource,
        }[kind]
        source = opener(spec, calib, options)
    try:
        source.check_start()
    except SourceError:
        source.close()
        raise
    return source
