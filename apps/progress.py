"""Progress of a running `v2d run` on the terminal: frames done (of how many, for a source of
known length), frames per second, time left, frames tracked and lost, keyframes. It watches the
run's :class:`~slam.system.run.RunControl` from a thread of its own and never holds the loop.

On a terminal the line is rewritten in place twice a second; otherwise (a log file, CI) a line is
written every :data:`LOG_SECONDS` (every second for a live camera, whose run has no end in
sight)."""

from __future__ import annotations

import threading
import time
from typing import TextIO

from slam.system.run import RunControl

#: seconds between two rewrites of the line on a terminal
TERMINAL_SECONDS = 0.5
#: seconds between two lines written to a file, for a replay and for a live camera
LOG_SECONDS = 10.0
LIVE_LOG_SECONDS = 1.0


def progress_line(done: int, total: int | None, seconds: float, tracked: int, lost: int, keyframes: int) -> str:
    """One line on a run: ``done`` frames of ``total`` (None: unknown, a live camera) in
    ``seconds``, with the frames tracked and lost and the keyframes so far."""
    rate = done / seconds if seconds > 0 else 0.0
    if total:
        left = (total - done) / rate if rate > 0 else None
        eta = f", {int(left // 60)}:{int(left % 60):02d} left" if left is not None else ""
        head = f"frame {done}/{total} ({100 * done / total:.0f}%)"
    else:
        head, eta = f"frame {done}", ""
    plural = "" if keyframes == 1 else "s"
    return f"{head}, {rate:.1f} frames/s{eta}; {tracked} tracked, {lost} lost, {keyframes} keyframe{plural}"


class Progress(threading.Thread):
    """Writes :func:`progress_line` of ``control``'s run to ``stream`` until :meth:`stop` (see
    the module docstring); ``total``: the frames the source will give (None: unknown); ``live``:
    a camera."""

    def __init__(self, control: RunControl, stream: TextIO, total: int | None, live: bool):
        super().__init__(name="v2d-progress", daemon=True)
        self.control = control
        self.stream = stream
        self.total = total
        self.terminal = stream.isatty()
        self.interval = TERMINAL_SECONDS if self.terminal else LIVE_LOG_SECONDS if live else LOG_SECONDS
        self._stopping = threading.Event()
        self.lines = 0  # lines written

    def stop(self) -> None:
        """End the line (on a terminal) and the thread."""
        self._stopping.set()
        self.join()
        if self.terminal and self.lines:
            self.stream.write("\n")
            self.stream.flush()

    def _line(self) -> str | None:
        control = self.control
        system, record, started = control.system, control.record, control.started
        if system is None or record is None or started is None:
            return None  # not started yet
        counts = system.frontend.counts  # lost: every frame not tracked, blank ones too
        return progress_line(
            len(record.indices),
            self.total,
            time.perf_counter() - started,
            counts["tracked"],
            counts["lost"],
            counts["keyframes"],
        )

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            line = self._line()
            if line is None:
                continue
            self.stream.write(f"\r{line}\x1b[K" if self.terminal else f"{line}\n")
            self.stream.flush()
            self.lines += 1
