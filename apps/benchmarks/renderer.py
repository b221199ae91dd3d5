"""Synthetic renderer speed (image and exact depth), both scene kinds."""

from __future__ import annotations

import argparse


def suite(args: argparse.Namespace) -> str:
    from slam.synthetic.benchmark import measure_render_speed

    frames = 60 if args.quick else 300
    rows = ["| scene | resolution (H x W) | frames | ms / frame | frames / s | target |", "|---|---|---|---|---|---|"]
    for kind, height, width in (("room", 240, 320), ("road", 240, 320), ("road", 192, 640)):
        result = measure_render_speed(kind=kind, height=height, width=width, frames=frames, seed=0)
        target = "-"
        if (height, width) == (240, 320):
            target = ">= 100 fps: " + ("met" if result["fps"] >= 100 else "MISSED")
        rows.append(
            f"| {kind} | {height} x {width} | {frames} | {result['ms_per_frame']:.2f} "
            f"| {result['fps']:.0f} | {target} |"
        )
    return (
        "### Synthetic renderer\n\nRGB image and exact depth per frame, one process; "
        "192 x 640 is the driving scene's default size.\n\n" + "\n".join(rows)
    )
