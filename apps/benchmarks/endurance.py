"""Memory over a long run: `v2d run` on a long synthetic hand-held sequence (10,000 frames; 1,000
with --quick) in its own process, its resident memory sampled twice a second. Reports the typical memory
(median of the samples) over stretches of the run, the growth per 1,000 frames between the
second and the last tenth (the frame rate is steady, so time stands for frames), and the peaks:
while tracking, and with the final fusion."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from apps.benchmarks.common import failed_run

FRAMES, QUICK_FRAMES = 10_000, 1_000
#: low resolution keeps the long run affordable on 2 cores; memory per keyframe scales with it
PIXELS = 19_200
SAMPLE_SECONDS = 0.5


def _sampled_run(frames: int, out: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run SLAM on ``frames`` synthetic frames; return sample times (s), RSS (MB) and stats.json."""
    command = [
        sys.executable,
        "-m",
        "apps.cli",
        "run",
        f"synthetic:room:frames={frames}",
        "--out",
        str(out),
        "--overwrite",
        "--viewer",
        "none",
        "--quiet",  # no progress lines in the pipe read at the end
        "--set",
        f"frontend.pixels={PIXELS}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    times, rss = [], []
    start = time.perf_counter()
    while process.poll() is None:
        try:
            rss.append(watched.memory_info().rss / 2**20)
            times.append(time.perf_counter() - start)
        except psutil.NoSuchProcess:
            break
        time.sleep(SAMPLE_SECONDS)
    assert process.stderr is not None  # stderr=PIPE
    error = process.stderr.read()
    if process.returncode != 0:
        raise failed_run(process.returncode, error)
    return np.array(times), np.array(rss), json.loads((out / "stats.json").read_text())


def suite(args: argparse.Namespace) -> str:
    frames = QUICK_FRAMES if args.quick else FRAMES
    with tempfile.TemporaryDirectory() as tmp:
        times, rss, stats = _sampled_run(frames, Path(tmp))
    # the run's time less its end (the last backend pass, fusing the map again after loop
    # corrections, the exported cloud and mesh): the samples of tracking
    tracking_seconds = stats["wall_time_s"] - stats["finish_time_s"] - stats["fusion_time_s"]

    def typical(start: float, end: float) -> float:
        """Median RSS (MB) over the samples between ``start`` and ``end`` shares of the tracking
        time: the memory held, without the passing peaks of a merge or a trim."""
        window = (times >= start * tracking_seconds) & (times <= end * tracking_seconds)
        return float(np.median(rss[window]))

    early, late = typical(0.1, 0.2), typical(0.9, 1.0)
    growth = (late - early) / (0.8 * stats["frames_processed"]) * 1000
    peak_tracking = float(rss[times <= tracking_seconds].max())
    rows = [
        "| frames | keyframes | loop corrections | RSS 10-20% (MB) | 40-50% | 70-80% | 90-100% of tracking | "
        "growth per 1,000 frames (MB) | peak while tracking (MB) | peak incl. final fusion (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {stats['frames_processed']} | {stats['keyframes']} | {stats['loop_corrections']} | {early:.0f} | "
        f"{typical(0.4, 0.5):.0f} | "
        f"{typical(0.7, 0.8):.0f} | {late:.0f} | {growth:.1f} | {peak_tracking:.0f} | {stats['peak_memory_mb']:.0f} |",
    ]
    return (
        "### Memory over a long run\n\n"
        f"`v2d run synthetic:room:frames={frames} --set frontend.pixels={PIXELS}` "
        f"({PIXELS} processing pixels to keep the run affordable), resident memory sampled every {SAMPLE_SECONDS} s; "
        "each stretch's median, which leaves out the passing peaks of a merge of the point cloud's voxel sums. "
        "Keyframes that leave the optimization window are final: they are fused into the point cloud (voxel "
        "sums) and the TSDF volume as they come, and their pixels released a few keyframes later, so that only "
        "their poses and place records stay (slam/system/archive.py); the TSDF's blocks too light to reach the "
        "mesh are pruned once out of sight, and the newest keyframes' voxel sums join the rest in small batches "
        "(slam/mapping/streaming.py); freed memory is handed back to the system every 50 frames. With loop "
        "closure, released keyframes' pixels are kept on disk (not in memory) and, after corrections, the "
        "map is fused again from them at the end: in the last column, not in the stretches of tracking. Speed "
        "is not reported here (the run is long and the machine may be shared): see the SLAM table.\n\n"
        + "\n".join(rows)
    )
