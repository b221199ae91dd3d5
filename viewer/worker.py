"""What every viewer shares: its options, the every-N-frames snapshot schedule, and the SLAM
run in a worker thread (the viewer owns the main thread)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

from slam.system.run import RunControl


@dataclasses.dataclass(frozen=True)
class ViewerOptions:
    """What a viewer does besides showing the run.

    - ``out_dir``: the run's output folder (the Screenshot button saves there).
    - ``screenshot``: PNG path of the viewer's picture saved when the run ends, or None.
    - ``exit_when_done``: close the viewer when the source ends (else it stays open until closed).
    - ``snapshot_every``: save a picture every this many frames into ``snapshot_dir`` (None: never).
    - ``max_points``: cap on the points drawn.
    """

    out_dir: Path
    screenshot: Path | None = None
    exit_when_done: bool = False
    snapshot_every: int | None = None
    snapshot_dir: Path | None = None
    max_points: int = 40_000

    def snapshot_path(self, frames: int) -> Path:
        """Where the snapshot taken after ``frames`` frames goes."""
        assert self.snapshot_dir is not None  # set whenever snapshot_every is (apps/run.py)
        return self.snapshot_dir / f"frame_{frames:06d}.png"


class SnapshotSchedule:
    """Says when the next every-N-frames snapshot is due."""

    def __init__(self, every: int | None):
        self.every = every
        self._taken = 0

    def due(self, frames: int) -> bool:
        """True once each time ``frames`` passes a multiple of ``every``."""
        if not self.every or frames // self.every <= self._taken:
            return False
        self._taken = frames // self.every
        return True


class SlamWorker:
    """``run(control)`` (a :func:`slam.system.run.run_slam` call) in a background thread."""

    def __init__(self, run: Callable[[RunControl], dict]):
        self.control = RunControl()
        self._run = run
        self._stats: dict | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="v2d-slam", daemon=True)

    def _main(self) -> None:
        try:
            self._stats = self._run(self.control)
        except BaseException as err:  # handed to the main thread by result()
            self._error = err
        finally:
            self.control.done.set()

    def start(self) -> None:
        self._thread.start()

    @property
    def error(self) -> BaseException | None:
        """The run's error once it has ended with one."""
        return self._error

    def stop_and_wait(self, reason: str) -> None:
        """Ask the run to stop (outputs are still written; ``reason``: what stopped it, for
        stats.json) and wait until it has ended."""
        self.control.request_stop(reason)
        self.control.resume()
        self._thread.join()

    def result(self) -> dict:
        """The run's stats once it has ended (waits), or its error raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._stats is not None  # the run ended without an error: _main stored its stats
        return self._stats
