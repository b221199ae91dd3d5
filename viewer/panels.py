"""The viewers' shared look: the colours of each layer and tracking status, and the side panel
(newest frame with its status, newest keyframe depth, numbers, legend) drawn as an image for
snapshots (the Qt window builds the same panel from widgets)."""

from __future__ import annotations

import cv2
import numpy as np

from viewer.scene import SceneState

#: RGB colours of the layers
TRAJECTORY = (255, 0, 255)
CAMERA = (255, 220, 0)
KEYFRAMES = (0, 150, 255)
GROUND_TRUTH = (0, 230, 0)
GRID = (80, 80, 80)
BACKGROUND = (16, 16, 20)
AXES = ((230, 40, 40), (40, 200, 40), (60, 90, 255))
#: RGB colour of each tracking status
STATUS = {
    "tracked": (0, 190, 0),
    "keyframe": (0, 150, 255),
    "lost": (230, 30, 30),
    "blank": (150, 60, 200),
    "initialising": (230, 170, 0),
    "starting": (130, 130, 130),
}
#: legend entries: (label, colour)
LEGEND = (
    ("estimated trajectory", TRAJECTORY),
    ("ground truth (Sim3-aligned)", GROUND_TRUTH),
    ("keyframes", KEYFRAMES),
    ("current camera", CAMERA),
)
#: width of the side panel in pixels
PANEL_WIDTH = 320

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT = (225, 225, 225)


def status_colour(status: str) -> tuple[int, int, int]:
    return STATUS.get(status, STATUS["starting"])


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit in ``width`` x ``height``, keeping its aspect ratio."""
    scale = min(width / image.shape[1], height / image.shape[0])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def side_panel(state: SceneState, height: int, width: int = PANEL_WIDTH) -> np.ndarray:
    """(height, width, 3) RGB uint8: the newest frame framed in its status colour under a
    status bar, the newest keyframe's depth, the run's numbers and the legend."""
    panel = np.full((height, width, 3), 32, np.uint8)
    margin, y = 8, 8
    inner = width - 2 * margin

    def text(line: str, colour=_TEXT, scale: float = 0.45) -> None:
        nonlocal y
        y += 16
        if y < height:
            cv2.putText(panel, line, (margin, y), _FONT, scale, colour, 1, cv2.LINE_AA)

    def picture(image: np.ndarray | None, border: tuple[int, int, int] | None = None) -> None:
        nonlocal y
        y += 6
        box = (inner, min(190, inner * 3 // 4))
        fitted = _fit(image, *box) if image is not None else np.zeros((box[1], box[0], 3), np.uint8)
        rows, columns = min(len(fitted), height - y), fitted.shape[1]
        left = margin + (inner - columns) // 2
        if rows > 0:
            panel[y : y + rows, left : left + columns] = fitted[:rows]
            if border is not None:
                cv2.rectangle(panel, (left - 2, y - 2), (left + columns + 1, y + rows + 1), border, 3)
        y += rows + 4

    colour = status_colour(state.status)
    cv2.rectangle(panel, (0, 0), (width, 26), colour, -1)
    cv2.putText(panel, f"frame: {state.status.upper()}", (margin, 19), _FONT, 0.6, (0, 0, 0), 2, cv2.LINE_AA)
    y = 30
    picture(state.frame, colour)
    text("newest keyframe depth (near red, far blue)")
    picture(state.depth)
    for line in state.stats.lines():
        text(line)
    y += 6
    for label, swatch in LEGEND:
        y += 16
        if y < height:
            cv2.line(panel, (margin, y - 4), (margin + 24, y - 4), swatch, 3)
            cv2.putText(panel, label, (margin + 32, y), _FONT, 0.42, _TEXT, 1, cv2.LINE_AA)
    return panel


def compose(view: np.ndarray, state: SceneState) -> np.ndarray:
    """The 3D ``view`` (H, W, 3) RGB with the side panel on its right: (H, W + PANEL_WIDTH, 3)."""
    return np.concatenate([view, side_panel(state, view.shape[0])], axis=1)
