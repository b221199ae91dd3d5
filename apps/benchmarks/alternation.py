"""One round of the full DeepV2D alternation (motion update with 2 Gauss-Newton steps, then a
depth update) on a keyframe and 4 neighbours, for the classical twins and the learned sizes
(untrained weights: speed only)."""

from __future__ import annotations

import argparse

import torch

from apps.benchmarks.clips import synthetic_clips
from apps.benchmarks.common import milliseconds
from networks.classical_depth import ClassicalDepthModule
from networks.classical_motion import ClassicalMotionModule
from networks.deepv2d import AlternationConfig, DeepV2D
from networks.depth import DepthNetConfig, LearnedDepthModule
from networks.interfaces import DepthModule, MotionModule
from networks.motion import LearnedMotionModule, MotionNetConfig


def suite(args: argparse.Namespace) -> str:
    clip = synthetic_clips("room", 1, neighbours=4, spacing=3)[0]
    images, intrinsics = clip.images, clip.intrinsics
    systems: dict[str, tuple[DepthModule, MotionModule]] = {
        "classical": (ClassicalDepthModule(), ClassicalMotionModule()),
        "lite": (LearnedDepthModule(DepthNetConfig.lite()).eval(), LearnedMotionModule(MotionNetConfig.lite()).eval()),
    }
    if not args.quick:
        systems["paper"] = (
            LearnedDepthModule(DepthNetConfig.paper()).eval(),
            LearnedMotionModule(MotionNetConfig.paper()).eval(),
        )
    rows = ["| modules | one round (ms) | three rounds (ms) |", "|---|---|---|"]
    for name, (depth, motion) in systems.items():
        timings = []
        for rounds in (1, 3):
            system = DeepV2D(depth, motion, AlternationConfig(rounds=rounds, motion_steps=2, init="constant"))

            def run(system: DeepV2D = system) -> object:
                return system(images, intrinsics)

            with torch.no_grad():
                timings.append(milliseconds(run, 1 if name == "paper" else 3))
        rows.append(f"| {name} | {timings[0]:.0f} | {timings[1]:.0f} |")
    return (
        "### Full alternation\n\nKeyframe and 4 neighbours, 240 x 320 images, keyframe mode, both encoders "
        "included; each round is 2 motion steps (flow + Gauss-Newton) and one depth update.\n\n" + "\n".join(rows)
    )
