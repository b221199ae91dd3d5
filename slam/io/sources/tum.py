"""TUM RGB-D sequences: ``rgb.txt`` (required), ``depth.txt`` and ``groundtruth.txt`` (optional).

- Depth maps are associated to colour images one-to-one by nearest timestamp within
  :data:`MAX_DEPTH_OFFSET` seconds, closest pairs first (the rule of TUM's ``associate.py``); a
  frame whose depth map went to a closer frame, or has none near, gets ``depth_gt`` None.
- Depth png: uint16, metres = value / :data:`slam.io.depth_maps.TUM_DEPTH_SCALE`, 0 = invalid.
- Ground truth (camera-to-world, TUM format) is interpolated to the frame timestamps; frames outside
  its time span, or inside a gap longer than :data:`MAX_GROUND_TRUTH_GAP`, get ``pose_gt`` None.
- Calibration: the file given, else ``calib.txt`` in the folder, else the shipped TUM calibration
  when the folder name says freiburg1/2/3 (or fr1/fr2/fr3), else a guess (with a warning).
  Distorted images (fr1, fr2) are undistorted; depth maps with the same map, nearest neighbour, so
  that they stay aligned with the images.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np

from slam.errors import SourceError
from slam.io.depth_maps import read_depth
from slam.io.sources.base import ImageFileSource, SourceOptions, read_image
from slam.io.sources.calibration import (
    camera_from_file,
    check_frame_size,
    guessed_camera,
)
from slam.io.trajectory import read_tum, time_order
from slam.text_files import read_text

log = logging.getLogger(__name__)

#: Largest timestamp difference (seconds) between an image and its depth map (TUM's default).
MAX_DEPTH_OFFSET = 0.02
#: Ground truth is not interpolated across gaps longer than this (seconds).
MAX_GROUND_TRUTH_GAP = 0.25

_FREIBURG_NAME = re.compile(r"(?<![a-z])(?:freiburg|fr)([123])(?![0-9])")


def read_file_list(path: Path) -> tuple[np.ndarray, list[str]]:
    """Read a TUM index file (``timestamp filename`` a line, ``#`` comments): timestamps in
    seconds and file names relative to the sequence folder, in time order. Lines out of time
    order are sorted, with one logged warning; raises SourceError naming the file and line of a
    malformed line, a non-finite timestamp, or a timestamp given twice."""
    stamps, names, line_numbers = [], [], []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        try:
            if len(fields) != 2 or not math.isfinite(float(fields[0])):
                raise ValueError
        except ValueError:
            raise SourceError(
                f"{path}:{number}: expected 'timestamp filename' with a finite timestamp in seconds, found {line!r}"
            ) from None
        stamps.append(float(fields[0]))
        names.append(fields[1])
        line_numbers.append(number)
    timestamps = np.array(stamps, dtype=np.float64)
    order = time_order(timestamps, line_numbers, path, SourceError)
    if np.any(np.diff(order) < 0):
        log.warning("%s: the lines are not in time order; frames are taken sorted by timestamp", path)
    return timestamps[order], [names[k] for k in order]


def associate(first: np.ndarray, second: np.ndarray, max_offset: float = MAX_DEPTH_OFFSET) -> np.ndarray:
    """Match timestamps one-to-one, closest pairs first, within ``max_offset`` seconds (TUM's
    ``associate.py``). Returns for each entry of ``first`` the index into ``second``, or -1."""
    match = np.full(len(first), -1, dtype=np.int64)
    if len(first) == 0 or len(second) == 0:
        return match
    order = np.argsort(second)
    sorted_second = second[order]
    # Candidate pairs lie within max_offset; a window in the sorted list finds them without N x M work.
    lo = np.searchsorted(sorted_second, first - max_offset, side="left")
    hi = np.searchsorted(sorted_second, first + max_offset, side="right")
    pairs = [
        (abs(first[i] - sorted_second[j]), i, order[j])
        for i in range(len(first))
        for j in range(lo[i], hi[i])
        if abs(first[i] - sorted_second[j]) < max_offset
    ]
    used = set()
    for _, i, j in sorted(pairs):
        if match[i] < 0 and j not in used:
            match[i] = j
            used.add(j)
    return match


def shipped_tum_calibration(folder: Path) -> Path | None:
    """The shipped calibration file for the Freiburg camera named in ``folder``'s name, or None."""
    found = _FREIBURG_NAME.search(folder.resolve().name.lower())
    if found is None:
        return None
    from calib import path_for

    return path_for(f"tum_fr{found.group(1)}")


class TumSource(ImageFileSource):
    """A TUM RGB-D sequence folder (or one in its layout, such as the HoloLens scene)."""

    kind = "tum"

    def __init__(self, folder: str | Path, calib: str | Path | None = None, options: SourceOptions | None = None):
        super().__init__(options)
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceError(f"TUM sequence folder not found: {self.folder}")
        index = self.folder / "rgb.txt"
        if not index.is_file():
            raise SourceError(f"TUM sequence {self.folder} has no index file rgb.txt")
        self.timestamps, names = read_file_list(index)
        if len(names) == 0:
            raise SourceError(f"{index} lists no images")
        self.image_files = [self.folder / name for name in names]
        self.depth_files = self._associate_depth()
        self.poses_gt = self._ground_truth()
        first = read_image(self.image_files[0])
        height, width = first.shape[:2]
        self.calib_file = Path(calib) if calib is not None else self._default_calibration_file()
        if self.calib_file is None:
            camera = guessed_camera(width, height, f"TUM sequence {self.folder}")
        else:
            camera = camera_from_file(self.calib_file, width, height)
        self.set_camera(camera)

    def _associate_depth(self) -> list[Path | None]:
        index = self.folder / "depth.txt"
        if not index.is_file():
            return [None] * self.num_raw
        depth_stamps, depth_names = read_file_list(index)
        match = associate(self.timestamps, depth_stamps)
        return [self.folder / depth_names[j] if j >= 0 else None for j in match]

    def _ground_truth(self) -> list[np.ndarray | None] | None:
        path = self.folder / "groundtruth.txt"
        if not path.is_file():
            return None
        poses, valid = read_tum(path).interpolate(self.timestamps, max_gap=MAX_GROUND_TRUTH_GAP)
        return [pose if ok else None for pose, ok in zip(poses, valid)]

    def _default_calibration_file(self) -> Path | None:
        if (self.folder / "calib.txt").is_file():
            return self.folder / "calib.txt"
        return shipped_tum_calibration(self.folder)

    def _depth(self, raw_index: int) -> np.ndarray | None:
        path = self.depth_files[raw_index]
        if path is None:
            return None
        depth = read_depth(path)
        check_frame_size(depth, self.undistorter.source_camera, path)
        return self.undistorter(depth, nearest=True)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "path": str(self.folder),
            "images": self.num_raw,
            "calibration": str(self.calib_file) if self.calib_file else "guessed",
            "depth_maps": sum(p is not None for p in self.depth_files),
            "ground_truth_poses": 0 if self.poses_gt is None else sum(p is not None for p in self.poses_gt),
        }
