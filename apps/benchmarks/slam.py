"""The SLAM system on the synthetic hand-held and driving sequences and the three real sequences:
ATE (Sim3-aligned, all frames, through evo), share of frames tracked, frontend and end-to-end
frames per second, peak memory. Each run is a separate `v2d run` process (so that peak memory is
the run's own), with the default configuration (the backend in its own thread), for the classical
modules and, given learned weights, the learned pair, the two hybrids and the default without
its speed options (two tracking steps every frame, no reuse of the backend's correspondences and
keyframes at 32 pixels of flow: ``frontend.tracking_confident``, ``backend.flow_reuse`` and
``frontend.keyframe_flow`` as they were before)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from apps.benchmarks.common import run_and_read, skipped_where_absent, tracked_share
from slam.evaluation.trajectory import evaluate_trajectory

#: (name, source, frames in a full run, frames in a quick run, target ATE as text, target check)
SEQUENCES = [
    ("synthetic room (hand-held)", "synthetic:room", 300, 60, "< 1% of path", lambda ate, path: ate < 0.01 * path),
    ("synthetic road (driving)", "synthetic:road", 200, 40, "< 1% of path", lambda ate, path: ate < 0.01 * path),
    ("tum_fr1_rpy", "tum_fr1_rpy", 120, 30, "<= 0.025 m", lambda ate, path: ate <= 0.025),
    ("kitti_07", "kitti_07", 100, 30, "<= 1.0 m", lambda ate, path: ate <= 1.0),
    ("hololens_000", "hololens_000", 150, 40, "<= 0.15 m", lambda ate, path: ate <= 0.15),
]


def configurations_for(weights: Path | None) -> dict[str, list[str]]:
    """Configuration name -> extra `v2d run` arguments: the classical modules, and with learned
    ``weights`` the learned lite pair, both hybrids and the default without its speed options."""

    def modules(depth: str, motion: str) -> list[str]:
        return ["--set", f"modules.depth={depth}", "--set", f"modules.motion={motion}"]

    configurations = {"classical": modules("classical", "classical")}
    if weights is not None:
        learned = ["--weights", str(weights)]
        configurations.update(
            {
                "lite (learned depth and motion)": [*learned, *modules("lite", "lite")],
                "hybrid: learned depth, classical motion (the default)": [*learned, *modules("lite", "classical")],
                "hybrid: classical depth, learned motion": [*learned, *modules("classical", "lite")],
                "the default without its speed options (two tracking steps, no flow reuse, keyframe flow 32)": [
                    *learned,
                    *modules("lite", "classical"),
                    "--set",
                    "frontend.tracking_confident=null",
                    "--set",
                    "backend.flow_reuse=null",
                    "--set",
                    "frontend.keyframe_flow=32",
                ],
            }
        )
    return configurations


def suite(args: argparse.Namespace, configurations: dict[str, list[str]] | None = None) -> str:
    """Markdown table of the runs (``configurations``: name -> extra `v2d run` arguments; by
    default :func:`configurations_for` ``args.weights``)."""
    configurations = configurations or configurations_for(getattr(args, "weights", None))
    rows = [
        "| configuration | sequence | frames | ATE (m) | ATE / path | target | tracked | frontend fps | "
        "end-to-end fps | peak memory (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for config_name, extra in configurations.items():
        for name, source, full, quick, target_text, target in SEQUENCES:
            spec = skipped_where_absent(name, source, notes)
            if spec is None:
                continue
            frames = quick if args.quick else full
            try:
                stats, gt, estimate = run_and_read(spec, frames, extra)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                rows.append(f"| {config_name} | {name} | {frames} | failed: {err} | | {target_text} | | | | |")
                continue
            metrics = evaluate_trajectory(gt, estimate, align="sim3")
            path = gt.path_length()
            verdict = "met" if target(metrics.ate_rmse, path) else "**missed**"
            tracked = tracked_share(stats)
            rows.append(
                f"| {config_name} | {name} | {stats['frames_processed']} | {metrics.ate_rmse:.3f} | "
                f"{100 * metrics.ate_rmse / path:.1f}% of {path:.2f} m | {target_text}: {verdict} | "
                f"{100 * tracked:.0f}% | {stats['frontend_fps']} | {stats['end_to_end_fps']} | "
                f"{stats['peak_memory_mb']:.0f} |"
            )
    return "### SLAM system\n\n" + "\n".join(rows) + ("\n\n" + "\n".join(notes) if notes else "")
