"""The source interface: options every source honours (start, stride, max frames, resize) and the
base classes that apply them, so that each concrete source only reads its own format."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slam.errors import SourceError
from slam.geometry.camera import Camera, Undistorter
from slam.io.frame import Frame
from slam.io.sources.calibration import check_frame_size


@dataclass(frozen=True)
class SourceOptions:
    """Which raw frames a source delivers, and at what size.

    ``start`` raw frames are skipped, then every ``stride``-th frame is kept, up to ``max_frames``
    (None: all). ``resize`` is ``(width, height)`` of the delivered images, or None for the size
    as stored (after undistortion). Intrinsics and ground-truth depth follow the resize.
    ``depth``: whether stored ground-truth depth maps are read (the SLAM run does not use them;
    reading a 16-bit png per frame costs about as much as reading the image).
    ``there_and_back`` (sources with random access only): the selected frames are played forward,
    then backward to the first, as a camera that walks back along its own path (a closed path:
    what relocalization and loop closure are tested on); timestamps go on at the forward rate.
    """

    start: int = 0
    stride: int = 1
    max_frames: int | None = None
    resize: tuple[int, int] | None = None
    depth: bool = True
    there_and_back: bool = False

    def __post_init__(self) -> None:
        if self.start < 0:
            raise SourceError(f"--start must be 0 or more (frames skipped), got {self.start}")
        if self.stride < 1:
            raise SourceError(f"--stride must be 1 or more (1: every frame), got {self.stride}")
        if self.max_frames is not None and self.max_frames < 1:
            raise SourceError(f"--max-frames must be 1 or more (leave it out for all frames), got {self.max_frames}")
        if self.resize is not None and (self.resize[0] < 8 or self.resize[1] < 8):
            raise SourceError(f"invalid resize {self.resize}: width and height must be at least 8 pixels")

    def selects(self, raw_index: int) -> bool:
        """Whether raw frame ``raw_index`` passes start and stride."""
        return raw_index >= self.start and (raw_index - self.start) % self.stride == 0

    def selected_indices(self, raw_count: int) -> range:
        """The raw indices delivered out of ``raw_count`` raw frames."""
        indices = range(self.start, raw_count, self.stride)
        return indices if self.max_frames is None else indices[: self.max_frames]


@dataclass
class RawFrame:
    """A frame as read from storage, before resizing: image RGB uint8, pose camera-to-world."""

    timestamp: float
    image: np.ndarray
    pose_gt: np.ndarray | None = None
    depth_gt: np.ndarray | None = None


class Source(ABC):
    """An iterable of :class:`Frame`. Subclasses call :meth:`set_camera` in ``__init__`` (or set
    ``self.camera``: intrinsics of the images as stored and undistorted, with their size) and
    implement :meth:`_raw_frames`.

    Use as a context manager, or call :meth:`close`, to release devices and files.
    """

    #: short name of the source kind ("tum", "kitti", "video", ...), for logs and stats.json
    kind: str = "source"
    #: whether frames come from a live device (read as they arrive, never read ahead)
    live: bool = False

    def __init__(self, options: SourceOptions | None = None):
        self.options = options or SourceOptions()
        self.camera: Camera | None = None

    def set_camera(self, stored: Camera) -> None:
        """Use ``stored`` (intrinsics and distortion of the images as read) and deliver undistorted
        images: ``self.undistorter`` maps stored images to ``self.camera``."""
        self.undistorter = Undistorter(stored)
        self.camera = self.undistorter.camera

    @property
    def name(self) -> str:
        """What the source reads, for messages: its path (``describe()["path"]``), else its kind."""
        return str(self.describe().get("path") or self.kind)

    @property
    def raw_count(self) -> int | None:
        """Raw frames the source holds, where known before reading them (None: a live source, or
        a container that does not say)."""
        return None

    def start_past_end(self, raw_count: int) -> SourceError:
        """The error for a ``start`` option at or past the source's ``raw_count`` raw frames."""
        return SourceError(f"--start {self.options.start} is past the end of {self.name} ({raw_count} frames)")

    def check_start(self) -> None:
        """SourceError when the ``start`` option is at or past the end of a source whose length
        is known (:attr:`raw_count`): it would deliver no frame."""
        count = self.raw_count
        if count is not None and self.options.start >= count:
            raise self.start_past_end(count)

    @property
    def has_ground_truth(self) -> bool:
        """Whether frames carry ``pose_gt`` (subclasses with ground truth override this)."""
        return False

    @property
    def output_camera(self) -> Camera:
        """Intrinsics of the delivered frames (after the resize option)."""
        if self.camera is None:
            raise SourceError(f"{self.kind} source has no calibration: pass one with --calib FILE")
        if self.options.resize is None:
            return self.camera
        return self.camera.resized(*self.options.resize)

    @abstractmethod
    def _raw_frames(self) -> Iterator[RawFrame]:
        """Yield the selected raw frames in order (see :meth:`SourceOptions.selects`)."""

    def __iter__(self) -> Iterator[Frame]:
        camera = self.output_camera
        # islice stops before asking for one frame too many (a live source would wait for it).
        for index, raw in enumerate(itertools.islice(self._raw_frames(), self._frame_limit())):
            yield self._finish(index, raw, camera)

    def _finish(self, index: int, raw: RawFrame, camera: Camera) -> Frame:
        image, depth = raw.image, raw.depth_gt
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if (image.shape[1], image.shape[0]) != camera.size:
            assert camera.size is not None  # output cameras always carry their image size
            image = camera.resize_image(image, *camera.size)
            if depth is not None:
                depth = cv2.resize(depth, camera.size, interpolation=cv2.INTER_NEAREST)
        return Frame(index, raw.timestamp, np.ascontiguousarray(image), camera, raw.pose_gt, depth)

    def _frame_limit(self) -> int | None:
        """The most frames :meth:`_raw_frames` is read for (None: all it yields)."""
        return self.options.max_frames

    def close(self) -> None:
        """Release what the source holds (files, devices, threads). A deliberate no-op by default:
        only sources that hold something (video files, devices, threads) override it."""
        return None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict:
        """A JSON-able summary for logs and stats.json."""
        return {"kind": self.kind, **{k: v for k, v in vars(self.options).items()}}


class IndexedSource(Source):
    """A source with random access to a known number of raw frames (image folders, datasets).
    Subclasses set ``self.num_raw`` and implement :meth:`_load`."""

    num_raw: int = 0

    @abstractmethod
    def _load(self, raw_index: int) -> RawFrame:
        """Read raw frame ``raw_index`` (0 <= raw_index < num_raw)."""

    @property
    def raw_count(self) -> int:
        return self.num_raw

    def __len__(self) -> int:
        count = len(self.options.selected_indices(self.num_raw))
        return 2 * count - 1 if self.options.there_and_back and count else count

    def _frame_limit(self) -> int | None:
        return None  # the selection is exact (see _raw_frames)

    def frame_at(self, raw_index: int) -> Frame:
        """Raw frame ``raw_index`` as a Frame at the output size, read out of order (training
        data); its ``index`` is ``raw_index``."""
        if not 0 <= raw_index < self.num_raw:
            raise IndexError(f"frame {raw_index} is outside the source's {self.num_raw} frames")
        return self._finish(raw_index, self._load(raw_index), self.output_camera)

    def _raw_frames(self) -> Iterator[RawFrame]:
        self.check_start()
        selected = list(self.options.selected_indices(self.num_raw))
        forward = len(selected)
        played = selected + selected[-2::-1] if self.options.there_and_back else selected
        first = last = step = 0.0
        for position, raw_index in enumerate(played):
            raw = self._load(raw_index)
            if position == 0:
                first = raw.timestamp
            if position == forward - 1:  # the turn: the way back goes on at the forward rate
                last = raw.timestamp
                step = (last - first) / max(forward - 1, 1)
            if position >= forward:
                raw.timestamp = last + (position - forward + 1) * step
            yield raw


class ImageFileSource(IndexedSource):
    """An indexed source whose raw frames are image files. Subclasses set ``image_files`` and
    ``timestamps`` (seconds, one per file), call :meth:`set_camera`, optionally set ``poses_gt``
    (per file: a camera-to-world 4x4 pose or None), and override :meth:`_depth` where they have depth maps."""

    image_files: list[Path]
    timestamps: np.ndarray
    poses_gt: list[np.ndarray | None] | None = None

    @property
    def num_raw(self) -> int:  # type: ignore[override]  # derived from image_files, never set
        return len(self.image_files)

    @property
    def has_ground_truth(self) -> bool:
        return self.poses_gt is not None

    def _depth(self, raw_index: int) -> np.ndarray | None:
        """Ground-truth depth of raw frame ``raw_index``, undistorted like its image (or None)."""
        return None

    def _load(self, raw_index: int) -> RawFrame:
        path = self.image_files[raw_index]
        image = read_image(path)
        check_frame_size(image, self.undistorter.source_camera, path)
        pose = None if self.poses_gt is None else self.poses_gt[raw_index]
        depth = self._depth(raw_index) if self.options.depth else None
        return RawFrame(float(self.timestamps[raw_index]), self.undistorter(image), pose, depth)


def read_image(path) -> np.ndarray:
    """Read an image file as RGB uint8 (H x W x 3), or raise SourceError naming the file when it is
    missing, corrupt, or a JPEG cut short (which OpenCV decodes with a grey lower part; a PNG cut
    short it refuses)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or is_cut_short(path):
        raise SourceError(f"cannot read image {path} (missing, corrupt or cut short)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


#: Bytes read from the end of a JPEG file to look for its end marker past any padding.
_END_MARKER_WINDOW = 4096


def is_cut_short(path: str | Path) -> bool:
    """Whether the image file at ``path`` is a JPEG without its end-of-image marker (FF D9, before
    any trailing zero or whitespace padding): the sign of a file whose copy or download stopped
    early. Other formats, and unreadable files, give False."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            head = file.read(3)
            file.seek(max(path.stat().st_size - _END_MARKER_WINDOW, 0))
            tail = file.read()
    except OSError:
        return False
    return head == b"\xff\xd8\xff" and not tail.rstrip(b"\0 \t\r\n").endswith(b"\xff\xd9")
