"""Where the time goes (`v2d bench --suite profile`): one default `v2d run` per sequence, and its
stats.json's wall time per stage (:meth:`slam.system.slam_system.SlamSystem.stage_seconds`), so
that a speed claim can name the stage it moved.

The tracking thread's stages (the cold start, tracking, tracking again the frames tracked while a
keyframe's depth was computed, waiting for that keyframe, relocalization, waiting for the backend)
and the rest of that thread's time (reading and preparing frames, the run loop) add up to the time
until the source ends; with the run's end (``finish``: the last backend pass, the last fusion) they
make the wall time. The export of the cloud and mesh follows, outside it (its share is of the wall
time too). A new keyframe's depth and refinement run in the keyframe worker thread
(``frontend.keyframe_lag`` > 0; in the tracking thread with 0, and counted there), and the
backend thread's stages (window optimisation, fusion of final keyframes, loop closure) in their
own: both beside the tracking thread, their share says how busy that thread was. The run's CPU
time (every thread's, over the same span as the wall time) is the work it took: it moves less
with the load of other processes than the wall time, so a change of the work per frame shows in
it; the CPU table splits it by the stage's thread, the rest being the frame reader's, the run
loop's and the libraries' own threads'.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from apps.benchmarks.common import run_cli, skipped_where_absent

#: (name, source, frames in a full run, frames in a quick run): the SLAM suite's default rows
SEQUENCES = [
    ("synthetic room (hand-held)", "synthetic:room", 300, 40),
    ("tum_fr1_rpy", "tum_fr1_rpy", 120, 30),
    ("kitti_07", "kitti_07", 100, 30),
    ("hololens_000", "hololens_000", 150, 40),
]

#: the tracking thread's stages, the keyframe worker's and the backend thread's, as stats.json
#: names them (the waits take wall time, hardly any CPU)
TRACKING_STAGES = (
    "cold_start",
    "tracking",
    "tracking_again",
    "waiting_for_keyframe",
    "relocalization",
    "waiting_for_backend",
)
KEYFRAME_STAGES = ("keyframe_depth", "keyframe_refinement")
BACKEND_STAGES = ("backend_optimisation", "fusion_as_the_run_goes", "loop_closure")


def profile_row(name: str, stats: dict) -> str:
    """The markdown row of one run's ``stats`` (see the module docstring): seconds and the share
    of the wall time of each stage."""
    stages, wall = stats["stage_time_s"], stats["wall_time_s"]
    tracking_thread = sum(stages.get(stage, 0.0) for stage in TRACKING_STAGES)
    if stats["config"]["frontend"]["keyframe_lag"] == 0:  # no keyframe worker: the tracking thread's
        tracking_thread += sum(stages.get(stage, 0.0) for stage in KEYFRAME_STAGES)
    rest = max(wall - stages.get("finish", 0.0) - tracking_thread, 0.0)

    def cell(seconds: float) -> str:
        return f"{seconds:.1f} ({100 * seconds / wall:.0f}%)" if wall > 0 else "-"

    cells = [cell(stages.get(stage, 0.0)) for stage in TRACKING_STAGES]
    cells += [cell(rest), cell(stages.get("finish", 0.0)), cell(stages.get("export_fusion", 0.0))]
    cells += [cell(stages.get(stage, 0.0)) for stage in KEYFRAME_STAGES + BACKEND_STAGES]
    return (
        f"| {name} | {stats['frames_processed']} | {stats['keyframes']} | {wall:.1f} | {stats['end_to_end_fps']} | "
        f"{stats['cpu_time_s']:.1f} | {stats['cpu_ms_per_frame']} | " + " | ".join(cells) + " |"
    )


#: the stages that take CPU time, in the CPU table's order
WORKING_STAGES = (
    "cold_start",
    "tracking",
    "tracking_again",
    "relocalization",
    *KEYFRAME_STAGES,
    *BACKEND_STAGES,
    "finish",
)


def cpu_row(name: str, stats: dict) -> str:
    """The markdown row of one run's CPU time per stage (its thread's) and the share of the run's
    CPU time, the rest (reading frames, the run loop, the libraries' own threads) last."""
    stages, total = stats["stage_cpu_time_s"], stats["cpu_time_s"]

    def cell(seconds: float) -> str:
        return f"{seconds:.1f} ({100 * seconds / total:.0f}%)" if total > 0 else "-"

    working = [stages.get(stage, 0.0) for stage in WORKING_STAGES]
    cells = [cell(seconds) for seconds in working] + [cell(max(total - sum(working), 0.0))]
    return f"| {name} | {total:.1f} | {stats['cpu_ms_per_frame']} | " + " | ".join(cells) + " |"


def suite(args: argparse.Namespace) -> str:
    """Markdown table: a row per sequence (see the module docstring)."""
    rows = [
        "| sequence | frames | keyframes | wall (s) | fps | CPU (s) | CPU per frame (ms) | "
        "cold start | tracking | tracking again | waiting for a keyframe | "
        "relocalization | waiting for the backend | reading and the loop | finish | export (after) | "
        "keyframe worker: depth | keyframe worker: refinement | "
        "backend: window optimisation | backend: fusion | backend: loop closure |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cpu_rows = [
        "| sequence | CPU (s) | per frame (ms) | cold start | tracking | tracking again | relocalization | "
        "keyframe depth | keyframe refinement | backend: window optimisation | backend: fusion | "
        "backend: loop closure | finish | the rest |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for name, source, full, quick in SEQUENCES:
        spec = skipped_where_absent(name, source, notes)
        if spec is None:
            continue
        frames = quick if args.quick else full
        try:
            with tempfile.TemporaryDirectory() as tmp:
                stats = run_cli(spec, frames, Path(tmp), [])
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            notes.append(f"{name}: failed: {err}")
            continue
        rows.append(profile_row(name, stats))
        cpu_rows.append(cpu_row(name, stats))
    text = (
        "### Where the time goes\n\nSeconds per stage of one default run (share of its wall time); the "
        "keyframe worker's and the backend's stages run in their own threads, beside the tracking "
        "thread's. CPU: the process's CPU seconds over the wall time (every thread): the run's work, "
        "which moves less with the machine's load than the wall time.\n\n"
        + "\n".join(rows)
        + "\n\nCPU seconds per stage (the "
        "CPU time of the thread that ran it) and their share of the run's CPU time; the rest: "
        "reading frames, the run loop, the libraries' own threads.\n\n" + "\n".join(cpu_rows)
    )
    return text + ("\n\n" + "\n".join(notes) if notes else "")
