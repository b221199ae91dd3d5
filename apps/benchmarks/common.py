"""What the benchmark suites share: the camera size of speed measurements, a timer, a `v2d run`
in its own process (and the error of a failed one), and where a benchmark sequence is."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from slam.io.shared_data import SHARED_DATA
from slam.io.trajectory import Trajectory, read_trajectory

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


def run_cli(source: str, frames: int, out: Path, extra: list[str]) -> dict:
    """`v2d run SOURCE --max-frames FRAMES` with ``extra`` arguments, in its own process (so that
    its peak memory is its own), writing into ``out``; its stats.json. No viewer unless ``extra``
    names one (it comes last, so its ``--viewer`` wins). Raises :func:`failed_run`'s error when
    it fails."""
    command = [
        sys.executable,
        "-m",
        "apps.cli",
        "run",
        source,
        "--out",
        str(out),
        "--overwrite",
        "--max-frames",
        str(frames),
        "--viewer",
        "none",
        "--quiet",  # no progress lines in the captured output
        *extra,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise failed_run(result.returncode, result.stderr)
    return json.loads((out / "stats.json").read_text())


def run_and_read(source: str, frames: int, extra: list[str]) -> tuple[dict, Trajectory, Trajectory]:
    """:func:`run_cli` into a temporary folder: its stats.json, ground truth and estimated
    trajectory (a source with ground truth)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        stats = run_cli(source, frames, out, extra)
        return stats, read_trajectory(out / "groundtruth.txt"), read_trajectory(out / "trajectory.txt")


def tracked_share(stats: dict) -> float:
    """The share of a run's processed frames that were tracked, from its stats.json."""
    return stats["frames_tracked"] / max(stats["frames_processed"], 1)


def sequence_source(source: str) -> str | None:
    """The `v2d run` SOURCE of a benchmark sequence: a synthetic spec as it is, a folder name
    in ../shared/data (None where that is absent)."""
    if source.startswith("synthetic"):
        return source
    return str(SHARED_DATA / source) if SHARED_DATA.is_dir() else None


def skipped_where_absent(name: str, source: str, notes: list[str]) -> str | None:
    """:func:`sequence_source` of ``source``; where that is None (no ../shared/data), a note
    that sequence ``name`` was skipped is added to ``notes``."""
    spec = sequence_source(source)
    if spec is None:
        notes.append(f"{name}: skipped, ../shared/data is absent")
    return spec
