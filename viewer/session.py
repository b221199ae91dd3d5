"""Running SLAM under a viewer: the dispatch to the Qt or Open3D viewer, with the run in a
:class:`viewer.worker.SlamWorker`."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

from slam.errors import V2DError
from slam.system.run import RunControl
from slam.system.stop_signals import Terminated
from viewer import has_display
from viewer.worker import SlamWorker, ViewerOptions

log = logging.getLogger(__name__)


def run_with_viewer(viewer: str, run: Callable[[RunControl], dict], options: ViewerOptions, title: str) -> dict:
    """Run ``run(control)`` in a worker thread under ``viewer`` (``qt`` or ``open3d``) and
    return its stats (its error is raised here, after the viewer has closed). ``title``: what
    the window says is running."""
    if viewer == "qt":
        if not has_display():
            raise V2DError(
                "--viewer qt needs a display ($DISPLAY or $WAYLAND_DISPLAY is not set); use --viewer none, "
                "or --viewer open3d --snapshot-every N for offscreen pictures"
            )
        from viewer.qt_viewer import show
    elif viewer == "open3d":
        from viewer.open3d_viewer import show
    else:
        raise V2DError(f"unknown viewer {viewer!r}")
    worker = SlamWorker(run)
    interrupted_by = show(worker, options, title)
    stats = worker.result()
    if interrupted_by == signal.SIGINT:
        raise KeyboardInterrupt
    if interrupted_by is not None:
        raise Terminated(interrupted_by)
    return stats
