"""Live display of a SLAM run: the Qt window (pyqtgraph's OpenGL view and side panels), the
Open3D window, and offscreen snapshots. Every viewer draws the same :class:`viewer.scene.SceneState`,
read from the running loop through a :class:`slam.system.run.RunControl` without blocking it.

Light on imports: Qt and Open3D load only when their viewer starts."""

from __future__ import annotations

import os

#: the values of ``--viewer``
VIEWERS = ("qt", "open3d", "none")
#: environment variable that sets the default viewer (e.g. ``none`` for scripts and tests)
DEFAULT_VIEWER_VARIABLE = "V2D_VIEWER"


def has_display() -> bool:
    """True when an X11 or Wayland display is named in the environment."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def default_viewer() -> str:
    """``$V2D_VIEWER`` when set to one of :data:`VIEWERS`, else ``qt`` when a display is present,
    else ``none``."""
    chosen = os.environ.get(DEFAULT_VIEWER_VARIABLE, "").strip().lower()
    if chosen in VIEWERS:
        return chosen
    return "qt" if has_display() else "none"
