"""Chessboard calibration of a camera's intrinsics from an image folder, a video or a webcam.

The board is given by its inner corners (columns x rows) and the side of a square in metres.
Corners are found with OpenCV on grey images and refined to subpixel accuracy; the intrinsics
come from ``cv2.calibrateCamera`` with the k1 k2 p1 p2 k3 distortion model, for the images as
stored (pixel (0, 0) is the centre of the top-left pixel, as in OpenCV).

Image folders (in natural name order) and videos (``cv2.VideoCapture``, sampled evenly over their
length) are read here directly, since the file sources of :mod:`slam.io.sources` want the very
intrinsics being measured. ``webcam:N`` goes through :class:`slam.io.sources.webcam.WebcamSource`
(its guessed intrinsics have no distortion, so its images are the raw ones), one candidate frame
every ``webcam_interval`` seconds. From videos and webcams, views showing the board where an
already kept view shows it are skipped as near-duplicates.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slam.errors import CalibrationError, SourceError
from slam.geometry.camera import Camera
from slam.io.sources.image_folder import IMAGE_EXTENSIONS, list_images

#: Fewer views than this cannot constrain the 9 intrinsic parameters reliably.
MIN_VIEWS = 5
#: Two views are near-duplicates when their corners lie within this share of the image diagonal
#: of each other on average.
DUPLICATE_SHARE = 0.01

_WEBCAM_SPEC = re.compile(r"^webcam:(\d+)$")
_SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 30, 1e-3)


@dataclass(frozen=True)
class Board:
    """A chessboard: ``columns`` x ``rows`` inner corners, squares of ``square`` metres."""

    columns: int
    rows: int
    square: float

    def __post_init__(self) -> None:
        if self.columns < 2 or self.rows < 2:
            raise CalibrationError(f"a chessboard needs at least 2x2 inner corners, got {self.columns}x{self.rows}")
        if not (np.isfinite(self.square) and self.square > 0):
            raise CalibrationError(f"the square size must be a positive length in metres, got {self.square}")

    @classmethod
    def parse(cls, pattern: str, square: float) -> Board:
        """Board from ``"COLSxROWS"`` inner corners (e.g. ``"9x6"``) and the square side in metres."""
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", pattern)
        if match is None:
            raise CalibrationError(f"board must be COLUMNSxROWS inner corners such as 9x6, got {pattern!r}")
        return cls(int(match.group(1)), int(match.group(2)), float(square))

    @property
    def pattern_size(self) -> tuple[int, int]:
        """``(columns, rows)``, OpenCV's patternSize."""
        return (self.columns, self.rows)

    def object_points(self) -> np.ndarray:
        """(columns * rows, 3) float32 corner positions on the board plane z = 0, in metres, in
        OpenCV's corner order (row by row)."""
        grid = np.mgrid[0 : self.columns, 0 : self.rows].T.reshape(-1, 2)
        points = np.zeros((len(grid), 3), dtype=np.float32)
        points[:, :2] = grid * self.square
        return points

    def __str__(self) -> str:
        return f"{self.columns}x{self.rows}"


@dataclass
class CalibrationResult:
    """The outcome of a calibration.

    ``camera``: the intrinsics and distortion, with the image size. ``rms``: RMS reprojection
    error over all corners of the views used, pixels. ``view_names`` / ``per_view_errors``: each
    used view (file name or ``frame N``) and its RMS reprojection error in pixels.
    ``views_rejected``: candidate images without the full board. ``duplicates_skipped``: views
    from a video or webcam dropped as near-duplicates of a kept one. ``views_unused``: distinct
    views beyond ``max_views`` left out to keep the solve small.
    """

    camera: Camera
    board: Board
    rms: float
    view_names: list[str]
    per_view_errors: np.ndarray
    views_rejected: int
    duplicates_skipped: int
    views_unused: int

    @property
    def views_used(self) -> int:
        return len(self.view_names)

    def comment(self) -> str:
        """One line for the calibration file's header."""
        return (
            f"v2d calibrate: board {self.board} inner corners, square {self.board.square:g} m, "
            f"{self.views_used} views, RMS reprojection error {self.rms:.3f} px, "
            f"image {self.camera.width}x{self.camera.height}"
        )


def calibrate(
    spec: str | Path,
    board: Board,
    max_views: int = 30,
    video_samples: int = 120,
    webcam_interval: float = 0.5,
    webcam_timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> CalibrationResult:
    """Calibrate from ``spec``: an image folder, a video file or ``webcam:N``.

    At most ``max_views`` distinct views enter the solve (spread evenly over those found); a video
    is sampled at ``video_samples`` frames spread over its length; a webcam is read until
    ``max_views`` views are kept or ``webcam_timeout`` seconds pass. ``progress`` receives a
    line for each view kept. Raises SourceError when the input cannot be read, CalibrationError
    when fewer than :data:`MIN_VIEWS` views show the full board.
    """
    if max_views < MIN_VIEWS:
        raise CalibrationError(f"max_views must be at least {MIN_VIEWS}, got {max_views}")
    spec_text = str(spec)
    webcam = _WEBCAM_SPEC.match(spec_text)
    if webcam is not None:
        frames = _webcam_frames(int(webcam.group(1)), webcam_interval, webcam_timeout)
        skip_duplicates, stop_after = True, max_views
    else:
        path = Path(spec_text)
        if path.is_dir():
            frames = _folder_frames(path)
            skip_duplicates, stop_after = False, None
        elif path.is_file():
            frames = _video_frames(path, video_samples)
            skip_duplicates, stop_after = True, None
        else:
            raise SourceError(f"calibration input not found: {path} (expected an image folder, a video or webcam:N)")
    return _calibrate_frames(frames, board, spec_text, max_views, skip_duplicates, stop_after, progress)


def find_corners(grey: np.ndarray, board: Board, fast_check: bool = False) -> np.ndarray | None:
    """The board's inner corners in a grey uint8 image, (columns * rows, 2) float32 pixels refined
    to subpixel accuracy, or None when the full board is not found. ``fast_check`` quickly
    rejects images without a board (for video frames)."""
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    if fast_check:
        flags |= cv2.CALIB_CB_FAST_CHECK
    found, corners = cv2.findChessboardCorners(grey, board.pattern_size, flags=flags)
    if not found or corners is None or len(corners) != board.columns * board.rows:
        return None
    # The refinement window must stay inside one square: at most 40% of the corner spacing.
    grid = corners.reshape(board.rows, board.columns, 2)
    spacing = min(
        np.linalg.norm(np.diff(grid, axis=0), axis=2).min(), np.linalg.norm(np.diff(grid, axis=1), axis=2).min()
    )
    half = int(np.clip(0.4 * spacing, 2, 11))
    corners = cv2.cornerSubPix(grey, corners, (half, half), (-1, -1), _SUBPIX_CRITERIA)
    return corners.reshape(-1, 2).astype(np.float32)


# ---------------------------------------------------------------------------------- frame readers
# Each yields (name, grey uint8 image, fast_check) for every candidate view.
FrameStream = Generator[tuple[str, np.ndarray, bool], None, None]


def _folder_frames(folder: Path) -> FrameStream:
    files = list_images(folder)
    if not files:
        raise SourceError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    for file in files:
        grey = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise SourceError(f"cannot read image {file} (corrupt or unsupported)")
        yield file.name, grey, False


def _video_frames(path: Path, samples: int) -> FrameStream:
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise SourceError(f"cannot open {path} as a video (and it is not an image folder)")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        # Sample frames spread over the whole video; with an unknown length, take every frame.
        wanted = set(np.linspace(0, count - 1, min(samples, count)).round().astype(int)) if count > 0 else None
        index, delivered = 0, 0
        while capture.grab():
            if wanted is None or index in wanted:
                ok, frame = capture.retrieve()
                if ok:
                    delivered += 1
                    yield f"frame {index}", _to_grey(frame), True
            index += 1
        if delivered == 0:
            raise SourceError(f"no frames could be decoded from the video {path}")
    finally:
        capture.release()


def _webcam_frames(device: int, interval: float, timeout: float) -> FrameStream:
    # The webcam source wants intrinsics; the guess it makes without a file has no distortion, so
    # its images are the raw ones. Its "no calibration" warning is beside the point here.
    from slam.io.sources.webcam import WebcamSource

    calibration_log = logging.getLogger("slam.io.sources.calibration")
    level = calibration_log.level
    calibration_log.setLevel(logging.ERROR)
    try:
        source = WebcamSource(device)
    finally:
        calibration_log.setLevel(level)
    with source:
        start = last = None
        for frame in source:
            if start is None:
                start = frame.timestamp
            elif frame.timestamp - start > timeout:
                return
            if last is None or frame.timestamp - last >= interval:
                last = frame.timestamp
                grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
                yield f"frame {frame.index} ({frame.timestamp - start:.1f} s)", grey, True


def _to_grey(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


# ---------------------------------------------------------------------------------- solve
def _is_duplicate(corners: np.ndarray, kept: list[np.ndarray], tolerance: float) -> bool:
    """Whether ``corners`` lie within ``tolerance`` pixels (mean) of a kept view's corners, in
    either corner order (OpenCV may return a board's corners reversed)."""
    for other in kept:
        if (
            min(np.linalg.norm(corners - other, axis=1).mean(), np.linalg.norm(corners[::-1] - other, axis=1).mean())
            < tolerance
        ):
            return True
    return False


@dataclass
class _Views:
    """Board corners found in the candidate frames, and what was left out."""

    names: list[str]
    corners: list[np.ndarray]
    image_size: tuple[int, int] | None
    rejected: int = 0
    duplicates: int = 0


def _collect_views(
    frames: FrameStream,
    board: Board,
    origin: str,
    skip_duplicates: bool,
    stop_after: int | None,
    progress: Callable[[str], None] | None,
) -> _Views:
    views = _Views([], [], None)
    for name, grey, fast_check in frames:
        size = (grey.shape[1], grey.shape[0])
        if views.image_size is None:
            views.image_size = size
        elif size != views.image_size:
            raise CalibrationError(
                f"{origin}: {name} is {size[0]}x{size[1]} but earlier images are "
                f"{views.image_size[0]}x{views.image_size[1]}; calibrate one resolution at a time"
            )
        corners = find_corners(grey, board, fast_check)
        if corners is None:
            views.rejected += 1
            continue
        if skip_duplicates and _is_duplicate(corners, views.corners, DUPLICATE_SHARE * float(np.hypot(*size))):
            views.duplicates += 1
            continue
        views.names.append(name)
        views.corners.append(corners)
        if progress is not None:
            progress(f"view {len(views.corners)}: board found in {name}")
        if stop_after is not None and len(views.corners) >= stop_after:
            break
    return views


def _calibrate_frames(
    frames: FrameStream,
    board: Board,
    origin: str,
    max_views: int,
    skip_duplicates: bool,
    stop_after: int | None,
    progress: Callable[[str], None] | None,
) -> CalibrationResult:
    with closing(frames):  # releases a webcam as soon as enough views are in
        views = _collect_views(frames, board, origin, skip_duplicates, stop_after, progress)
    names, corners = views.names, views.corners
    if len(corners) < MIN_VIEWS:
        raise CalibrationError(
            f"{origin}: the full {board} chessboard was found in {len(corners)} distinct view(s) "
            f"({views.rejected} image(s) without it); at least {MIN_VIEWS} are needed. Check --board "
            "(inner corners, columns x rows) and show the whole board from several angles"
        )
    unused = max(0, len(corners) - max_views)
    if unused:
        keep = np.linspace(0, len(corners) - 1, max_views).round().astype(int)
        names, corners = [names[i] for i in keep], [corners[i] for i in keep]
    assert views.image_size is not None  # set by the first view found
    width, height = views.image_size
    rms, K, dist, _, _, _, _, per_view = cv2.calibrateCameraExtended(
        [board.object_points()] * len(corners),
        [c.reshape(-1, 1, 2) for c in corners],
        (width, height),
        None,  # type: ignore[call-overload]  # OpenCV's stubs lack None (no initial guess) here
        None,
        flags=0,
    )
    if not np.isfinite(rms):
        raise CalibrationError(f"{origin}: the calibration did not converge; use more varied views of the board")
    camera = Camera.from_matrix(K, dist, width=width, height=height)
    return CalibrationResult(
        camera,
        board,
        float(rms),
        names,
        np.asarray(per_view, dtype=np.float64).ravel(),
        views.rejected,
        views.duplicates,
        unused,
    )
