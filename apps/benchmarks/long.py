"""Long-term SLAM: does the map get reused? Each real and synthetic sequence is played there and
back (`v2d run --there-and-back`: its frames forward, then backward to the first), and two
synthetic hand-held paths are walked as two whole laps of a closed path (``path=loop`` and
``path=figure8`` with ``laps=2``), so that in every run the camera ends where it started and a
map that is reused brings it back there. Per run: ATE (Sim3-aligned, every frame), the return gap
(distance between the first and last estimated camera centres over the estimated path length:
scale-free, 0 for a closed loop), frames tracked, relocalizations, map segments (cold starts),
backend passes that joined older covisible keyframes, loops accepted and rejected, pose-graph
corrections and their mean time, the final global bundle adjustment's wall time, end-to-end
frames per second (the final steps included) and peak memory. Four configurations: loop closure
with the final global bundle adjustment (``backend.final_bundle_adjustment``); loop closure on and
off (``backend.loops``); and without loop closure, relocalization
(``frontend.relocalize_frames=0``: a new map at every loss) or covisible keyframes in the window
(``backend.covisible=0``: the newest keyframes only). Tracking's reuse of old keyframes
(``frontend.reuse_keyframes``) stays on in all four. Each run is a separate `v2d run` process."""

from __future__ import annotations

import argparse
import subprocess

import numpy as np

from apps.benchmarks.common import run_and_read, skipped_where_absent, tracked_share
from slam.evaluation.trajectory import evaluate_trajectory
from slam.io.trajectory import Trajectory

#: (name, source, frames forward in a full run, in a quick run, played there and back); a closed
#: path's full run (None) is :data:`LAPS` whole laps of it (``laps=``: the source counts the frames)
SEQUENCES = [
    ("synthetic room (hand-held)", "synthetic:room", 300, 40, True),
    ("synthetic road (driving)", "synthetic:road", 200, 30, True),
    ("synthetic room, 2 laps of a loop", "synthetic:room:path=loop", None, 40, False),
    ("synthetic room, 2 laps of a figure-eight", "synthetic:room:path=figure8", None, 40, False),
    ("tum_fr1_rpy", "tum_fr1_rpy", 120, 30, True),
    ("kitti_07", "kitti_07", 100, 30, True),
    ("hololens_000", "hololens_000", 150, 30, True),
]

#: laps of a closed path in a full run
LAPS = 2

#: more frames than any full run has: no cap
ALL_FRAMES = 1_000_000

WITHOUT_LOOPS = ["--set", "backend.loops=false"]
CONFIGURATIONS = {
    "loop closure and the final global bundle adjustment": [
        "--set",
        "backend.loops=true",
        "--set",
        "backend.final_bundle_adjustment=true",
    ],
    "loop closure": ["--set", "backend.loops=true"],
    "no loop closure": WITHOUT_LOOPS,
    "no loop closure, relocalization or covisible window": [
        *WITHOUT_LOOPS,
        "--set",
        "frontend.relocalize_frames=0",
        "--set",
        "backend.covisible=0",
    ],
}


def return_gap(trajectory: Trajectory) -> float:
    """Distance between the first and last camera centres over the path length (0 when the path
    has no length)."""
    path = trajectory.path_length()
    return float(np.linalg.norm(trajectory.positions[-1] - trajectory.positions[0]) / path) if path > 0 else 0.0


def suite(args: argparse.Namespace) -> str:
    rows = [
        "| configuration | sequence | frames | ATE (m) | return gap | tracked | relocalizations | segments | "
        "covisible passes | loops accepted / rejected | loop corrections (mean s) | final bundle adjustment (s) | "
        "end-to-end fps | peak memory (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for config_name, extra in CONFIGURATIONS.items():
        for name, source, full, quick, there_and_back in SEQUENCES:
            spec = skipped_where_absent(name, source, notes)
            if spec is None:
                continue
            frames = quick if args.quick else full or ALL_FRAMES
            if full is None and not args.quick:  # whole laps (a quick run: a few frames of the path)
                spec = f"{spec}:laps={LAPS}"
            played = ["--there-and-back"] if there_and_back else []
            try:
                stats, gt, estimate = run_and_read(spec, frames, [*played, *extra])
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                rows.append(f"| {config_name} | {name} | | failed: {err} |" + " |" * 10)
                continue
            metrics = evaluate_trajectory(gt, estimate, align="sim3")
            tracked = tracked_share(stats)
            corrections = stats["loop_corrections"]
            correction_cell = f"{corrections} ({stats['loop_correction_s']})" if corrections else "0"
            final = stats["final_bundle_adjustment"]
            final_cell = f"{final['seconds']:.1f}" if final else ""
            rows.append(
                f"| {config_name} | {name} | {stats['frames_processed']} | {metrics.ate_rmse:.3f} | "
                f"{100 * return_gap(estimate):.2f}% | {100 * tracked:.0f}% | {stats['relocalizations']} | "
                f"{stats['initialisations']} | {stats['covisible_passes']} of {stats['backend_passes']} | "
                f"{stats['loops_accepted']} / {stats['loops_rejected']} | "
                f"{correction_cell} | {final_cell} | {stats['end_to_end_fps']} | {stats['peak_memory_mb']:.0f} |"
            )
    return (
        "### Long-term SLAM: there and back, and closed loops\n\n"
        + "\n".join(rows)
        + ("\n\n" + "\n".join(notes) if notes else "")
    )
