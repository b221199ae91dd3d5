"""What the benchmark suites share: the camera size of speed
measurements, a timer, and the error of a failed `v2d run`."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

#: camera resolution (H, W) of the speed measurements (TUM's / a webcam's)
CAMERA_SIZE = (480, 640)


def milliseconds(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``function`` in ms, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def failed_run(returncode: int, stderr: str) -> RuntimeError:
    """The error for a `v2d run` that exited with ``returncode``: its status and the last lines of
    its ``stderr`` (the last line alone may be a library's warning that hides the cause)."""
    tail = " | ".join(line.strip() for line in stderr.strip().splitlines()[-3:])
    return RuntimeError(f"v2d run exited with status {returncode}" + (f": {tail}" if tail else ""))
