"""Time per stage of a run (tracking, keyframe depth, the backend's passes, waits, fusion), so
that every speed claim can name the stage it moved: wall time, and the CPU time of the thread
that ran the stage (the stage's own work: wall time less what other threads took of the cores
meanwhile, and less the waits). Each thread keeps its own :class:`StageTimes` (the frontend's,
the keyframe worker's, the backend's); a run adds them up for stats.json."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimes:
    """Wall seconds (``seconds``) and the measuring thread's CPU seconds (``cpu_seconds``) spent
    per stage name, added up over the run; one writer thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        """Add the wall time and this thread's CPU time of the ``with`` block to ``stage`` (also
        when it raises)."""
        start, cpu_start = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            self.cpu_seconds[stage] = self.cpu_seconds.get(stage, 0.0) + time.thread_time() - cpu_start


def combined(*times: StageTimes, cpu: bool = False) -> dict[str, float]:
    """Every stage of ``times`` (their names are distinct) in wall seconds (``cpu``: CPU seconds)
    rounded to milliseconds."""
    return {
        stage: round(seconds, 3)
        for each in times
        for stage, seconds in sorted((each.cpu_seconds if cpu else each.seconds).items())
    }
