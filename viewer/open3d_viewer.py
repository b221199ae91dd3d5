"""The Open3D viewer: the map in an Open3D (legacy) Visualizer window, or rendered offscreen.

- With a display: a Visualizer window shows the cloud, the trajectories, the frustums, the grid
  and the axes (same colours as the Qt window); keys: space pauses and resumes, F toggles
  auto-framing (off: free orbit with the mouse), R reframes the scene, E exports the outputs
  now, S saves a snapshot, Q or Esc quits (the outputs computed so far are written). Snapshots
  are the window's OpenGL render (through GLX) with the side panel beside it.
- Without a display (no $DISPLAY, so no GLX; Open3D's EGL OffscreenRenderer does not work on
  such machines either): no window; snapshots and the final screenshot are software renders
  (:mod:`viewer.software_render`) with the same side panel.

Open3D cannot draw 2D panels in its window: the newest frame, depth and numbers appear in the
snapshots only (the window's title names the run).
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import cv2
import numpy as np

from slam.errors import V2DError
from slam.mapping.point_cloud import PointCloud
from slam.system.stop_signals import calling_on_stop_signals
from viewer import has_display, panels
from viewer.geometry import (
    axes_segments,
    frustum_segments,
    grid_segments,
    nice_spacing,
    polyline_segments,
)
from viewer.scene import LiveScene, SceneState
from viewer.software_render import FIELD_OF_VIEW, default_view, look_at, render
from viewer.worker import SlamWorker, SnapshotSchedule, ViewerOptions

log = logging.getLogger(__name__)

#: seconds between polls of the window's events (the run's map is read at most every 0.1 s)
POLL_SECONDS = 0.03
#: size of the rendered 3D view
VIEW_SIZE = (960, 720)


def save_png(path: Path, image: np.ndarray) -> None:
    """Write an RGB image as PNG (folders created); V2DError when it cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise V2DError(f"cannot write {path}")


class _Picture:
    """Renders a state into the 3D picture: through the Open3D window, or in software."""

    def __init__(self, window: _Open3DWindow | None):
        self.window = window

    def __call__(self, state: SceneState) -> np.ndarray:
        view = self.window.capture() if self.window is not None else render(state, *VIEW_SIZE)
        return panels.compose(view, state)


def _line_set(segments: np.ndarray, colour: tuple[int, int, int] | np.ndarray):
    """An Open3D LineSet of (S, 2, 3) segments, one colour or (S, 3) colours in 0..255."""
    import open3d as o3d

    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2, 3)
    line_set = o3d.geometry.LineSet(
        o3d.utility.Vector3dVector(segments.reshape(-1, 3)),
        o3d.utility.Vector2iVector(np.arange(2 * len(segments)).reshape(-1, 2)),
    )
    colours = np.broadcast_to(np.asarray(colour, dtype=np.float64) / 255.0, (len(segments), 3))
    line_set.colors = o3d.utility.Vector3dVector(np.ascontiguousarray(colours))
    return line_set


class _Open3DWindow:
    """The Open3D Visualizer window and its geometries."""

    def __init__(self, title: str, control):
        import open3d as o3d

        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
        self.control = control
        self.auto_frame = True
        self.quit_requested = False
        self.snapshot_requested = False
        self.vis = o3d.visualization.VisualizerWithKeyCallback()
        if not self.vis.create_window(window_name=f"v2d: {title}", width=VIEW_SIZE[0], height=VIEW_SIZE[1]):
            raise V2DError(
                "Open3D could not open a window on this display (try --viewer qt, or unset DISPLAY "
                "for software-rendered snapshots)"
            )
        options = self.vis.get_render_option()
        options.background_color = np.asarray(panels.BACKGROUND, dtype=np.float64) / 255.0
        options.point_size = 2.0
        options.line_width = 3.0
        self.cloud = o3d.geometry.PointCloud()
        self.path = o3d.geometry.PointCloud()  # the trajectory again, as dots: Open3D draws 1-pixel lines
        self.lines = o3d.geometry.LineSet()
        self._cloud_shown: PointCloud | None = None
        self._added = False
        keys = {
            ord(" "): self._toggle_pause,
            ord("F"): self._toggle_frame,
            ord("R"): self._reframe,
            ord("E"): self._export,
            ord("S"): self._snapshot,
        }
        for key, callback in keys.items():
            self.vis.register_key_callback(key, callback)

    def _toggle_pause(self, _vis) -> bool:
        (self.control.resume if self.control.paused else self.control.pause)()
        return False

    def _toggle_frame(self, _vis) -> bool:
        self.auto_frame = not self.auto_frame
        return False

    def _reframe(self, _vis) -> bool:
        self.auto_frame = True
        return False

    def _export(self, _vis) -> bool:
        self.control.request_export()
        return False

    def _snapshot(self, _vis) -> bool:
        self.snapshot_requested = True
        return False

    def show(self, state: SceneState) -> None:
        """Replace the geometries with ``state``'s."""
        import open3d as o3d

        if state.cloud is not self._cloud_shown:
            self.cloud.points = o3d.utility.Vector3dVector(state.cloud.points.astype(np.float64))
            self.cloud.colors = o3d.utility.Vector3dVector(state.cloud.colours.astype(np.float64) / 255.0)
            self._cloud_shown = state.cloud
        samples = _along(state.trajectory, 4)
        self.path.points = o3d.utility.Vector3dVector(samples)
        self.path.colors = o3d.utility.Vector3dVector(
            np.tile(np.asarray(panels.TRAJECTORY, np.float64) / 255, (len(samples), 1))
        )
        parts = _scene_lines(state)
        segments = np.concatenate([p[0] for p in parts])
        colours = np.concatenate([np.broadcast_to(np.asarray(c, np.float64), (len(s), 3)) for s, c in parts])
        new = _line_set(segments, colours)
        self.lines.points, self.lines.lines, self.lines.colors = new.points, new.lines, new.colors
        for geometry in (self.cloud, self.lines, self.path):
            if self._added:
                self.vis.update_geometry(geometry)
            else:
                self.vis.add_geometry(geometry)
        self._added = True
        if self.auto_frame:
            self._frame(state)
        self.vis.update_renderer()

    def _frame(self, state: SceneState) -> None:
        """Put the window's camera where the software renderer's virtual camera is."""
        import open3d as o3d

        control = self.vis.get_view_control()
        parameters = control.convert_to_pinhole_camera_parameters()
        width, height = parameters.intrinsic.width, parameters.intrinsic.height
        focal = 0.5 * height / np.tan(np.radians(FIELD_OF_VIEW) / 2)
        parameters.intrinsic = o3d.camera.PinholeCameraIntrinsic(
            width, height, focal, focal, width / 2 - 0.5, height / 2 - 0.5
        )
        eye, target = default_view(state)
        world_to_camera = np.eye(4)
        world_to_camera[:3, :3] = look_at(eye, target)
        world_to_camera[:3, 3] = -world_to_camera[:3, :3] @ eye
        parameters.extrinsic = world_to_camera
        control.convert_from_pinhole_camera_parameters(parameters, allow_arbitrary=True)

    def alive(self) -> bool:
        """Process window events (redrawing when needed); False once the window was closed."""
        return self.vis.poll_events()

    def capture(self) -> np.ndarray:
        """(H, W, 3) RGB uint8 render of the window's content."""
        buffer = np.asarray(self.vis.capture_screen_float_buffer(do_render=True))
        return (np.clip(buffer, 0, 1) * 255).round().astype(np.uint8)

    def close(self) -> None:
        self.vis.destroy_window()


def _along(points: np.ndarray, per_segment: int) -> np.ndarray:
    """(N, 3) polyline -> ((N-1) * per_segment + 1, 3) float64 points evenly along each segment."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(points) < 2:
        return points
    steps = np.arange(per_segment)[:, None] / per_segment
    inner = (points[:-1, None] * (1 - steps) + points[1:, None] * steps).reshape(-1, 3)
    return np.concatenate([inner, points[-1:]])


def _scene_lines(state: SceneState) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    """The state's line layers as (segments (S, 2, 3), RGB colour), in drawing order."""
    spacing = nice_spacing(state.extent())
    parts = [(grid_segments(state.centre(), state.ground_level(), spacing), panels.GRID)]
    parts += [(axis[None], colour) for axis, colour in zip(axes_segments(spacing), panels.AXES)]
    if state.intrinsics is not None:
        assert state.image_size is not None  # set together with intrinsics
        keyframe_depth, camera_depth = state.frustum_depths()
        parts.append(
            (
                frustum_segments(state.keyframe_poses_c2w, state.intrinsics, state.image_size, keyframe_depth),
                panels.KEYFRAMES,
            )
        )
        if state.current_pose_c2w is not None:
            parts.append(
                (
                    frustum_segments(state.current_pose_c2w, state.intrinsics, state.image_size, camera_depth),
                    panels.CAMERA,
                )
            )
    if state.ground_truth is not None:
        parts.append((polyline_segments(state.ground_truth), panels.GROUND_TRUTH))
    parts.append((polyline_segments(state.trajectory), panels.TRAJECTORY))
    return parts


def show(worker: SlamWorker, options: ViewerOptions, title: str) -> int | None:
    """Start ``worker`` and show it until the run ends (with ``exit_when_done`` or without a
    window) or the window is closed. Returns the signal that interrupted it (SIGINT, SIGTERM or
    SIGHUP), or None."""
    windowed = has_display()
    if not windowed and options.snapshot_every is None and options.screenshot is None:
        raise V2DError(
            "--viewer open3d without a display shows nothing: add --snapshot-every N (and --snapshot-dir "
            "DIR) or --screenshot PATH for offscreen pictures, or use --viewer none"
        )
    window = _Open3DWindow(title, worker.control) if windowed else None
    scene = LiveScene(worker.control, max_points=options.max_points)
    picture = _Picture(window)
    snapshots = SnapshotSchedule(options.snapshot_every)
    interrupted: list[int] = []
    with calling_on_stop_signals(interrupted.append):
        worker.start()
        try:
            finished = False
            while True:
                state = scene.update()
                if window is not None and state is not None:
                    window.show(state)
                frames = scene.state.stats.frames
                if snapshots.due(frames):
                    save_png(options.snapshot_path(frames), picture(scene.state))
                if window is not None and window.snapshot_requested:
                    window.snapshot_requested = False
                    save_png(options.out_dir / f"snapshot_{frames:06d}.png", picture(scene.state))
                if worker.control.done.is_set() and not finished:
                    finished = True
                    final = scene.update(force=True)
                    if window is not None:
                        window.show(final)
                    if options.screenshot is not None:
                        save_png(options.screenshot, picture(final))
                    if window is None or options.exit_when_done:
                        break
                if interrupted or (window is not None and not window.alive()):
                    worker.stop_and_wait(signal.Signals(interrupted[0]).name if interrupted else "viewer closed")
                    if not finished and options.screenshot is not None:
                        save_png(options.screenshot, picture(scene.update(force=True)))
                    break
                time.sleep(POLL_SECONDS)
        finally:
            if window is not None:
                window.close()
    return interrupted[0] if interrupted else None
