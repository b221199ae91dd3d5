"""The Qt window: pyqtgraph's OpenGL view of the map (trajectory, ground truth, camera and
keyframe frustums, the growing coloured cloud, grid and axes) beside a side panel (the newest
frame with its tracking status, the newest keyframe's depth, the run's numbers) and controls.

Qt owns the main thread; the SLAM loop runs in a :class:`viewer.session.SlamWorker` thread. A
QTimer polls a :class:`viewer.scene.LiveScene` four times a second and redraws only what changed,
so tracking never waits for drawing: the side panel at every poll, the 3D view when the cloud is
refreshed and otherwise every :data:`SCENE_INTERVAL` seconds (repainting the view is the viewer's
largest cost where OpenGL renders in software on the cores SLAM runs on). Closing the window (or
Quit, Ctrl-C, SIGTERM or SIGHUP) stops the run, waits for it to write its outputs, then closes.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pyqtgraph.opengl as gl
from OpenGL import GL
from PyQt5 import QtCore, QtGui, QtWidgets

from slam.mapping.point_cloud import PointCloud
from slam.system.stop_signals import calling_on_stop_signals
from viewer import panels
from viewer.geometry import (
    axes_segments,
    frustum_segments,
    grid_segments,
    nice_spacing,
    to_display,
)
from viewer.scene import LiveScene, SceneState
from viewer.worker import SlamWorker, SnapshotSchedule, ViewerOptions

#: milliseconds between polls of the run
POLL_MS = 250
#: seconds between redraws of the 3D view while only the trajectory and cameras move
SCENE_INTERVAL = 1.0
#: size of the 3D view when the window opens
VIEW_SIZE = (960, 720)
#: layers the user can toggle: (key, label)
LAYERS = (
    ("cloud", "point cloud"),
    ("trajectory", "trajectory"),
    ("ground_truth", "ground truth"),
    ("keyframes", "keyframes"),
    ("camera", "current camera"),
    ("grid", "grid and axes"),
)


#: OpenGL state of the layers drawn over everything else (no depth test), in the order added
_OVERLAY = {GL.GL_DEPTH_TEST: False, GL.GL_BLEND: False, GL.GL_CULL_FACE: False}


def _rgba(colour: tuple[int, int, int]) -> tuple[float, float, float, float]:
    return (colour[0] / 255, colour[1] / 255, colour[2] / 255, 1.0)


def _segments_to_lines(segments: np.ndarray) -> np.ndarray:
    """(S, 2, 3) world segments -> (2S, 3) display vertices for GLLinePlotItem's 'lines' mode."""
    return to_display(segments.reshape(-1, 3)) if len(segments) else np.zeros((0, 3), np.float32)


def _qimage(image: np.ndarray) -> QtGui.QImage:
    image = np.ascontiguousarray(image)
    height, width = image.shape[:2]
    # the stubs take bytes or sip.voidptr; PyQt5 accepts any buffer, here the array's memoryview
    return QtGui.QImage(image.data, width, height, 3 * width, QtGui.QImage.Format_RGB888).copy()  # type: ignore[call-overload]


class _View(gl.GLViewWidget):
    """The 3D view; tells when the user takes over the camera (drag or wheel)."""

    user_moved = QtCore.pyqtSignal()

    def mousePressEvent(self, event):  # noqa: N802 (Qt's name)
        self.user_moved.emit()
        super().mousePressEvent(event)

    def wheelEvent(self, event):  # noqa: N802
        self.user_moved.emit()
        super().wheelEvent(event)


class ViewerWindow(QtWidgets.QMainWindow):
    """The main window of a run (see the module's docstring)."""

    def __init__(self, worker: SlamWorker, options: ViewerOptions, title: str):
        super().__init__()
        self.worker = worker
        self.control = worker.control
        self.options = options
        self.scene = LiveScene(self.control, max_points=options.max_points)
        self.snapshots = SnapshotSchedule(options.snapshot_every)
        self.interrupted: int | None = None  # the signal that stopped the run
        self._closing = False
        self._finished = False
        self._auto_frame = True
        self._cloud_shown: PointCloud | None = None
        self._scene_drawn = -np.inf  # time.monotonic() of the last 3D redraw
        self._screenshots = 0
        self.setWindowTitle(f"v2d: {title}")
        self._build()
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.poll)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.view = _View()
        self.view.setMinimumSize(*VIEW_SIZE)
        self.view.setBackgroundColor(panels.BACKGROUND)
        self.view.user_moved.connect(self._user_moved)
        self.items = {
            "grid": gl.GLLinePlotItem(mode="lines", color=_rgba(panels.GRID), width=1),
            "axes": gl.GLLinePlotItem(mode="lines", width=3),
            "cloud": gl.GLScatterPlotItem(size=2, pxMode=True),
            "ground_truth": gl.GLLinePlotItem(mode="line_strip", color=_rgba(panels.GROUND_TRUTH), width=2),
            "trajectory": gl.GLLinePlotItem(mode="line_strip", color=_rgba(panels.TRAJECTORY), width=3),
            "keyframes": gl.GLLinePlotItem(mode="lines", color=_rgba(panels.KEYFRAMES), width=1),
            "camera": gl.GLLinePlotItem(mode="lines", color=_rgba(panels.CAMERA), width=3),
        }
        for name, item in self.items.items():
            # the trajectories and the current camera stay visible through the cloud
            item.setGLOptions(_OVERLAY if name in ("ground_truth", "trajectory", "camera") else "opaque")
            self.view.addItem(item)

        side = QtWidgets.QWidget()
        side.setFixedWidth(panels.PANEL_WIDTH)
        layout = QtWidgets.QVBoxLayout(side)
        layout.setContentsMargins(6, 6, 6, 6)
        self.status_label = QtWidgets.QLabel()
        self.status_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.frame_label = QtWidgets.QLabel()
        self.depth_label = QtWidgets.QLabel()
        for label in (self.frame_label, self.depth_label):
            label.setFixedSize(panels.PANEL_WIDTH - 12, (panels.PANEL_WIDTH - 12) * 3 // 4)
            label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
            label.setStyleSheet("background: black")
        self.stats_label = QtWidgets.QLabel()
        self.stats_label.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.FixedFont))
        legend = QtWidgets.QLabel(
            "<br>".join(
                f"<span style='color: rgb{colour}; font-weight: bold'>&#9644;&#9644;</span> {label}"
                for label, colour in panels.LEGEND
            )
        )
        layout.addWidget(self.status_label)
        layout.addWidget(self.frame_label)
        layout.addWidget(QtWidgets.QLabel("newest keyframe depth (near red, far blue)"))
        layout.addWidget(self.depth_label)
        layout.addWidget(self.stats_label)
        layout.addWidget(legend)
        layout.addWidget(self._controls())
        layout.addStretch(1)

        central = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.view, 1)
        row.addWidget(side)
        self.setCentralWidget(central)
        self.statusBar().showMessage("starting")  # type: ignore[union-attr]  # QMainWindow.statusBar() creates the bar, never None

    def _controls(self) -> QtWidgets.QWidget:
        box = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(box)
        grid.setContentsMargins(0, 0, 0, 0)
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._pause)
        self.follow_box = QtWidgets.QCheckBox("follow camera")
        reset = QtWidgets.QPushButton("Reset view")
        reset.clicked.connect(self.reset_view)
        self.point_size = QtWidgets.QSpinBox()
        self.point_size.setRange(1, 10)
        self.point_size.setValue(2)
        self.point_size.setPrefix("point size ")
        self.point_size.valueChanged.connect(lambda size: self.items["cloud"].setData(size=size))
        grid.addWidget(self.pause_button, 0, 0)
        grid.addWidget(reset, 0, 1)
        grid.addWidget(self.follow_box, 1, 0)
        grid.addWidget(self.point_size, 1, 1)
        self.layer_boxes = {}
        for k, (key, label) in enumerate(LAYERS):
            check = QtWidgets.QCheckBox(label)
            check.setChecked(True)
            check.toggled.connect(lambda on, key=key: self._toggle(key, on))
            self.layer_boxes[key] = check
            grid.addWidget(check, 2 + k // 2, k % 2)
        buttons = (("Screenshot", self.save_screenshot), ("Export now", self._export), ("Quit", self.close))
        for k, (text, slot) in enumerate(buttons):
            button = QtWidgets.QPushButton(text)
            button.clicked.connect(slot)  # type: ignore[arg-type]  # stubs want slots returning None; Qt ignores the value
            grid.addWidget(button, 5 + k // 2, k % 2)
        return box

    # ------------------------------------------------------------------ controls
    def _pause(self, paused: bool) -> None:
        (self.control.pause if paused else self.control.resume)()
        self.pause_button.setText("Resume" if paused else "Pause")

    def _toggle(self, key: str, on: bool) -> None:
        for name in ("grid", "axes") if key == "grid" else (key,):
            self.items[name].setVisible(on)

    def _export(self) -> None:
        if self._finished:
            self.statusBar().showMessage(f"the run has ended: its outputs are in {self.options.out_dir}")  # type: ignore[union-attr]  # QMainWindow.statusBar() creates the bar, never None
            return
        self.control.request_export()
        self.statusBar().showMessage(f"exporting the outputs so far to {self.options.out_dir} (tracking goes on)")  # type: ignore[union-attr]  # QMainWindow.statusBar() creates the bar, never None

    def _user_moved(self) -> None:
        self._auto_frame = False

    def reset_view(self) -> None:
        """Frame the whole scene from behind and above the first camera."""
        self._auto_frame = True
        self._frame(self.scene.state)

    def _frame(self, state: SceneState) -> None:
        centre = to_display(state.centre())
        self.view.setCameraPosition(
            pos=QtGui.QVector3D(*map(float, centre)), distance=1.3 * state.extent(), elevation=30, azimuth=-90
        )

    def save_screenshot(self, path: str | Path | None = None) -> Path:
        """Save the whole window (3D view and side panel) as PNG; by default as
        screenshot_NNN.png in the output folder."""
        if not path:
            self._screenshots += 1
            path = self.options.out_dir / f"screenshot_{self._screenshots:03d}.png"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.grab().save(str(path)):
            self.statusBar().showMessage(f"could not write {path}")  # type: ignore[union-attr]  # QMainWindow.statusBar() creates the bar, never None
        else:
            self.statusBar().showMessage(f"saved {path}")  # type: ignore[union-attr]  # QMainWindow.statusBar() creates the bar, never None
        return path

    # ------------------------------------------------------------------ updates
    def poll(self) -> None:
        """Redraw what changed; take due snapshots; finish up when the run has ended."""
        state = self.scene.update()
        if state is not None:
            due = state.cloud is not self._cloud_shown or time.monotonic() - self._scene_drawn >= SCENE_INTERVAL
            self.show_state(state, redraw_scene=due)
        if self.snapshots.due(self.scene.state.stats.frames):
            self.save_screenshot(self.options.snapshot_path(self.scene.state.stats.frames))
        if self.control.done.is_set() and not self._finished:
            self._finish()

    def _finish(self) -> None:
        self._finished = True
        self.show_state(self.scene.update(force=True))
        QtWidgets.QApplication.processEvents()
        error = self.worker.error
        self.statusBar().showMessage(  # type: ignore[union-attr]  # QMainWindow.statusBar() creates the bar, never None
            f"run failed: {error}"
            if error is not None and not isinstance(error, KeyboardInterrupt)
            else f"finished: outputs written to {self.options.out_dir}"
        )
        if self.options.screenshot is not None:
            self.save_screenshot(self.options.screenshot)
        if self.options.exit_when_done or self._closing:
            self._closing = True
            self.close()

    def show_state(self, state: SceneState, redraw_scene: bool = True) -> None:
        """Draw ``state``: the side panel, and the 3D layers with ``redraw_scene``."""
        if redraw_scene:
            self._show_scene(state)
        self._show_panels(state)

    def _show_scene(self, state: SceneState) -> None:
        self._scene_drawn = time.monotonic()
        items = self.items
        if state.cloud is not self._cloud_shown:
            cloud = state.cloud
            colours = np.ones((len(cloud), 4), np.float32)
            colours[:, :3] = cloud.colours / np.float32(255)
            items["cloud"].setData(pos=to_display(cloud.points), color=colours)
            self._cloud_shown = cloud
        items["trajectory"].setData(pos=to_display(state.trajectory))
        gt = state.ground_truth
        items["ground_truth"].setData(pos=to_display(gt) if gt is not None else np.zeros((0, 3), np.float32))
        if state.intrinsics is not None:
            assert state.image_size is not None  # set together with intrinsics
            keyframe_depth, camera_depth = state.frustum_depths()
            items["keyframes"].setData(
                pos=_segments_to_lines(
                    frustum_segments(state.keyframe_poses_c2w, state.intrinsics, state.image_size, keyframe_depth)
                )
            )
            current = (
                np.zeros((0, 2, 3))
                if state.current_pose_c2w is None
                else frustum_segments(state.current_pose_c2w, state.intrinsics, state.image_size, camera_depth)
            )
            items["camera"].setData(pos=_segments_to_lines(current))
        spacing = nice_spacing(state.extent())
        items["grid"].setData(pos=_segments_to_lines(grid_segments(state.centre(), state.ground_level(), spacing)))
        axes = axes_segments(spacing)
        axes_colours = np.repeat(np.array([_rgba(c) for c in panels.AXES], np.float32), 2, axis=0)
        items["axes"].setData(pos=_segments_to_lines(axes), color=axes_colours)
        if self.follow_box.isChecked() and state.current_pose_c2w is not None:
            self.view.opts["center"] = QtGui.QVector3D(*map(float, to_display(state.current_pose_c2w[:3, 3])))
            self.view.update()
        elif self._auto_frame:
            self._frame(state)

    def _show_panels(self, state: SceneState) -> None:
        colour = panels.status_colour(state.status)
        self.status_label.setText(f"frame: {state.status.upper()}")
        self.status_label.setStyleSheet(f"background: rgb{colour}; color: black; font-weight: bold; padding: 4px")
        self.frame_label.setStyleSheet(f"background: black; border: 3px solid rgb{colour}")
        for label, image in ((self.frame_label, state.frame), (self.depth_label, state.depth)):
            if image is not None:
                pixmap = QtGui.QPixmap.fromImage(_qimage(image))
                label.setPixmap(
                    pixmap.scaled(
                        label.width() - 6,
                        label.height() - 6,
                        QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                        QtCore.Qt.TransformationMode.SmoothTransformation,
                    )
                )
        self.stats_label.setText("\n".join(state.stats.lines()))
        if not self._finished:
            self.statusBar().showMessage("paused" if state.stats.paused else f"running: frame {state.stats.frames}")  # type: ignore[union-attr]  # QMainWindow.statusBar() creates the bar, never None

    # ------------------------------------------------------------------ closing
    def request_quit(self, signum: int | None = None) -> None:
        """Stop the run (its outputs are written) and close when it has ended; ``signum``: the
        signal that asks (SIGINT, SIGTERM or SIGHUP), None for the window's own Quit."""
        if self.interrupted is None:
            self.interrupted = signum
        self.close()

    def closeEvent(self, event: QtGui.QCloseEvent | None) -> None:  # noqa: N802 (Qt's name)
        assert event is not None  # Qt always passes the close event
        if self.control.done.is_set() and self._finished:
            self.timer.stop()
            event.accept()
            return
        self._closing = True
        self.control.request_stop(
            "viewer closed" if self.interrupted is None else signal.Signals(self.interrupted).name
        )
        self.control.resume()
        self.statusBar().showMessage("stopping: writing the outputs computed so far ...")  # type: ignore[union-attr]  # QMainWindow.statusBar() creates the bar, never None
        event.ignore()


def show(worker: SlamWorker, options: ViewerOptions, title: str) -> int | None:
    """Start ``worker`` and show its window until it is closed (see the module's docstring).
    Returns the signal that interrupted the run (SIGINT, SIGTERM or SIGHUP), or None."""
    pg.setConfigOptions(antialias=False)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["v2d"])
    window = ViewerWindow(worker, options, title)
    with calling_on_stop_signals(window.request_quit):
        window.show()
        worker.start()
        window.timer.start(POLL_MS)
        app.exec_()
        if not worker.control.done.is_set():  # the event loop ended without the window (should not happen)
            worker.stop_and_wait("viewer closed")
    return window.interrupted
