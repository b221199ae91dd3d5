"""Long-term SLAM: does the map get reused? Each sequence is played there and back (`v2d run
--there-and-back`: its frames forward, then backward to the first), so the camera ends where it
started and a map that is reused brings it back there. Per run: ATE (Sim3-aligned, every frame),
the return gap (distance between the first and last estimated camera centres over the estimated
path length: scale-free, 0 for a closed loop), frames tracked, relocalizations, map segments
(cold starts), backend passes that joined older covisible keyframes, end-to-end frames per second
and peak memory. The default configuration beside the same without the map reused
(``frontend.relocalize_frames=0``: a new map at every loss; ``backend.covisible=0``: the window
of the newest keyframes only). Each run is a separate `v2d run` process."""

from __future__ import annotations

import argparse
import subprocess

import numpy as np

from apps.benchmarks.common import run_and_read, sequence_source
from slam.evaluation.trajectory import evaluate_trajectory
from slam.io.trajectory import Trajectory

#: (name, source, frames forward in a full run, in a quick run)
SEQUENCES = [
    ("synthetic room (hand-held)", "synthetic:room", 300, 40),
    ("synthetic road (driving)", "synthetic:road", 200, 30),
    ("tum_fr1_rpy", "tum_fr1_rpy", 120, 30),
    ("kitti_07", "kitti_07", 100, 30),
    ("hololens_000", "hololens_000", 150, 30),
]

CONFIGURATIONS = {
    "default": [],
    "without the map reused": ["--set", "frontend.relocalize_frames=0", "--set", "backend.covisible=0"],
}


def return_gap(trajectory: Trajectory) -> float:
    """Distance between the first and last camera centres over the path length (0 when the path
    has no length)."""
    path = trajectory.path_length()
    return float(np.linalg.norm(trajectory.positions[-1] - trajectory.positions[0]) / path) if path > 0 else 0.0


def suite(args: argparse.Namespace) -> str:
    rows = [
        "| configuration | sequence | frames | ATE (m) | return gap | tracked | relocalizations | segments | "
        "covisible passes | end-to-end fps | peak memory (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for config_name, extra in CONFIGURATIONS.items():
        for name, source, full, quick in SEQUENCES:
            spec = sequence_source(source)
            if spec is None:
                notes.append(f"{name}: skipped, ../shared/data is absent")
                continue
            frames = quick if args.quick else full
            try:
                stats, gt, estimate = run_and_read(spec, frames, ["--there-and-back", *extra])
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                rows.append(f"| {config_name} | {name} | {2 * frames - 1} | failed: {err} |" + " |" * 7)
                continue
            metrics = evaluate_trajectory(gt, estimate, align="sim3")
            tracked = stats["frames_tracked"] / max(stats["frames_processed"], 1)
            rows.append(
                f"| {config_name} | {name} | {stats['frames_processed']} | {metrics.ate_rmse:.3f} | "
                f"{100 * return_gap(estimate):.2f}% | {100 * tracked:.0f}% | {stats['relocalizations']} | "
                f"{stats['initialisations']} | {stats['covisible_passes']} of {stats['backend_passes']} | "
                f"{stats['end_to_end_fps']} | {stats['peak_memory_mb']:.0f} |"
            )
    return "### Long-term SLAM: there and back\n\n" + "\n".join(rows) + ("\n\n" + "\n".join(notes) if notes else "")
