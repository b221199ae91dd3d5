"""A software rendering of a :class:`viewer.scene.SceneState` with numpy and OpenCV, for machines
with no display and no usable OpenGL: the cloud as z-ordered squares (far points painted
first, so near ones cover them), then the grid, axes, keyframes, ground truth, trajectory and
current camera as lines over it, seen by a virtual pinhole camera placed as the Qt view's
default (behind the first camera and above, looking at the middle of the scene)."""

from __future__ import annotations

import cv2
import numpy as np

from viewer import panels
from viewer.geometry import (
    axes_segments,
    frustum_segments,
    grid_segments,
    nice_spacing,
    polyline_segments,
)
from viewer.scene import SceneState

#: vertical field of view of the virtual camera, degrees
FIELD_OF_VIEW = 60.0
#: elevation of the virtual camera above the scene's middle, degrees
ELEVATION = 30.0


def default_view(state: SceneState) -> tuple[np.ndarray, np.ndarray]:
    """The virtual camera framing the scene: (eye (3,), target (3,)) in the world frame, the eye
    behind the first camera (-z) and raised by :data:`ELEVATION` (up is -y)."""
    target = state.centre()
    angle = np.radians(ELEVATION)
    direction = np.array([0.0, -np.sin(angle), -np.cos(angle)])
    return target + 1.3 * state.extent() * direction, target


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(3, 3) world-to-camera rotation of a camera at ``eye`` looking at ``target`` with the
    world's up (-y) up in the image (OpenCV camera axes)."""
    forward = target - eye
    forward = forward / max(np.linalg.norm(forward), 1e-12)
    right = np.cross(forward, np.array([0.0, -1.0, 0.0]))
    if np.linalg.norm(right) < 1e-9:  # looking straight up or down
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


class _Projector:
    def __init__(self, eye: np.ndarray, target: np.ndarray, width: int, height: int):
        self.rotation, self.eye = look_at(eye, target), eye
        self.focal = 0.5 * height / np.tan(np.radians(FIELD_OF_VIEW) / 2)
        self.centre = np.array([(width - 1) / 2, (height - 1) / 2])
        self.near = 1e-3 * np.linalg.norm(target - eye)

    def __call__(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world -> (N, 2) pixels and (N,) depths (<= near: behind the camera)."""
        camera = (np.asarray(points, dtype=np.float64) - self.eye) @ self.rotation.T
        depth = camera[:, 2]
        safe = np.where(depth > self.near, depth, np.inf)
        return camera[:, :2] * self.focal / safe[:, None] + self.centre, depth


def render(state: SceneState, width: int = 960, height: int = 720, point_size: int = 2) -> np.ndarray:
    """(height, width, 3) RGB uint8 picture of ``state`` (see the module's docstring)."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = panels.BACKGROUND
    eye, target = default_view(state)
    project = _Projector(eye, target, width, height)

    def lines(segments: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
        if not len(segments):
            return
        pixels, depth = project(segments.reshape(-1, 3))
        pixels, depth = pixels.reshape(-1, 2, 2), depth.reshape(-1, 2)
        visible = (depth > project.near).all(axis=1) & (np.abs(pixels) < 1e5).all(axis=(1, 2))
        for a, b in np.round(pixels[visible]).astype(np.int64):
            cv2.line(image, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), colour, thickness, cv2.LINE_AA)

    spacing = nice_spacing(state.extent())
    lines(grid_segments(state.centre(), state.ground_level(), spacing), panels.GRID, 1)
    if len(state.cloud):
        pixels, depth = project(state.cloud.points)
        u, v = np.round(pixels[:, 0]).astype(np.int64), np.round(pixels[:, 1]).astype(np.int64)
        inside = (
            (depth > project.near) & (u >= 0) & (u < width - point_size + 1) & (v >= 0) & (v < height - point_size + 1)
        )
        order = np.argsort(-depth[inside], kind="stable")  # far first: near points paint last
        u, v, colours = u[inside][order], v[inside][order], state.cloud.colours[inside][order]
        for du in range(point_size):
            for dv in range(point_size):
                image[v + dv, u + du] = colours
    for axis, colour in zip(axes_segments(spacing), panels.AXES):
        lines(axis[None], colour, 2)
    keyframe_depth, camera_depth = state.frustum_depths()
    if state.intrinsics is not None:
        assert state.image_size is not None  # set together with intrinsics
        lines(
            frustum_segments(state.keyframe_poses_c2w, state.intrinsics, state.image_size, keyframe_depth),
            panels.KEYFRAMES,
            1,
        )
    if state.ground_truth is not None:
        lines(polyline_segments(state.ground_truth), panels.GROUND_TRUTH, 2)
    lines(polyline_segments(state.trajectory), panels.TRAJECTORY, 3)
    if state.current_pose_c2w is not None and state.intrinsics is not None:
        assert state.image_size is not None  # set together with intrinsics
        lines(
            frustum_segments(state.current_pose_c2w, state.intrinsics, state.image_size, camera_depth), panels.CAMERA, 2
        )
    return image
