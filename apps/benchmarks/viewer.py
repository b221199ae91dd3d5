"""The live viewer's cost: end-to-end frames per second of `v2d run` on tum_fr1_rpy without a
viewer and with the Qt window on the current display, each configuration run three times, alternately
(the machine's load drifts), each run a separate process."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from apps.benchmarks.common import run_cli
from slam.io.shared_data import SHARED_DATA
from viewer import has_display

SEQUENCE = "tum_fr1_rpy"
#: (configuration, extra `v2d run` arguments)
CONFIGURATIONS = (("no viewer", ["--viewer", "none"]), ("Qt viewer", ["--viewer", "qt", "--exit-when-done"]))
REPEATS = 3


def _run(source: Path, frames: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return run_cli(str(source), frames, Path(tmp), extra)


def suite(args: argparse.Namespace) -> str:
    """Markdown table: end-to-end and frontend fps of each run, and the viewer's relative cost."""
    title = "### Live viewer: cost in frames per second\n\n"
    source = SHARED_DATA / SEQUENCE
    if not source.is_dir():
        return title + f"Skipped: {source} is absent."
    if not has_display():
        return title + "Skipped: no display ($DISPLAY unset); run under a desktop session or `xvfb-run`."
    frames = 30 if args.quick else 120
    runs: dict[str, list[dict]] = {name: [] for name, _ in CONFIGURATIONS}
    loads = []  # the machine's 1-minute load average before each run: other processes skew the numbers
    for _ in range(REPEATS):
        for name, extra in CONFIGURATIONS:
            loads.append(os.getloadavg()[0])
            runs[name].append(_run(source, frames, extra))
    rows = [
        "| configuration | frames | end-to-end fps (each run) | mean | frontend fps (each run) |",
        "|---|---|---|---|---|",
    ]
    means = {}
    for name, stats in runs.items():
        end_to_end = [s["end_to_end_fps"] for s in stats]
        frontend = ", ".join(f"{s['frontend_fps']:.2f}" for s in stats)
        means[name] = sum(end_to_end) / len(end_to_end)
        rows.append(
            f"| {name} | {frames} | {', '.join(f'{v:.2f}' for v in end_to_end)} | {means[name]:.2f} | {frontend} |"
        )
    loss = 1 - means["Qt viewer"] / means["no viewer"]
    verdict = "met" if loss < 0.10 else "**missed**"
    return (
        title + f"`v2d run {SEQUENCE} --max-frames {frames}` with `--viewer none` and with `--viewer qt "
        f"--exit-when-done` (the window polls the map 4 times a second; its 3D view, with the growing "
        f"cloud, redraws when the cloud is refreshed and otherwise every second), "
        f"alternately, {REPEATS} runs each.\n\n"
        + "\n".join(rows)
        + f"\n\nEnd-to-end loss with the Qt viewer: {100 * loss:.1f}% of the mean (target < 10%: {verdict}). "
        f"Load average before the runs: {', '.join(f'{load:.1f}' for load in loads)} on {os.cpu_count()} cores."
    )
