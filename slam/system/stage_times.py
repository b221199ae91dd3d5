"""Wall time per stage of a run (tracking, keyframe depth, the backend's passes, waits, fusion),
so that every speed claim can name the stage it moved. Each thread keeps its own
:class:`StageTimes` (the frontend's, the backend's); a run adds them up for stats.json."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimes:
    """Seconds spent per stage name, added up over the run; one writer thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to ``stage`` (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def combined(*times: StageTimes) -> dict[str, float]:
    """Every stage of ``times`` (their names are distinct) in seconds rounded to milliseconds."""
    return {stage: round(seconds, 3) for each in times for stage, seconds in sorted(each.seconds.items())}
