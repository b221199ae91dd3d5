"""Depth module benchmarks: speed of a depth update (keyframe + 4 neighbours) for the learned
module (lite, paper) and the classical one, and the classical module's accuracy with
ground-truth poses on synthetic and real clips."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from apps.benchmarks.clips import Clip, real_clips, synthetic_clips
from apps.benchmarks.common import CAMERA_SIZE, SHARED_DATA, milliseconds
from networks.classical_depth import ClassicalDepthConfig, ClassicalDepthModule
from networks.depth import DepthNetConfig, LearnedDepthModule
from networks.interfaces import DepthModule
from slam.evaluation import depth_metrics
from slam.lie import SE3

#: depth update budget (ms) of the lite size: keyframe + neighbours, features included
DEPTH_BUDGET_MS = 250.0
NEIGHBOURS = 4
#: real sequences: (folder name, neighbour spacing in frames). TUM fr1 is 30 Hz video; the
#: HoloLens frames are already about 8 cm apart.
REAL_SEQUENCES = (("tum_fr1_rpy", 4), ("hololens_000", 1))
#: clips are rendered / resized to this (H, W)
CLIP_SIZE = (240, 320)
#: depth metrics consider ground truth up to this (metres): the indoor bins' range
MAX_DEPTH = 10.0


def _speed_rows(name: str, module: DepthModule, internal: str, repeats: int) -> list[str]:
    """Rows for one module: encoder (5 frames), depth (cost volume + matching), and both, at
    :data:`CAMERA_SIZE` input (the module resizes to its internal resolution)."""
    g = torch.Generator().manual_seed(0)
    frames = NEIGHBOURS + 1
    images = torch.rand(1, frames, 3, *CAMERA_SIZE, generator=g)
    intrinsics = torch.tensor([[525.0, 525.0, 319.5, 239.5]])
    xi = torch.cat([torch.zeros(1, 1, 6), 0.03 * torch.randn(1, frames - 1, 6, generator=g)], dim=1)
    poses = SE3.exp(xi)
    with torch.inference_mode():
        features = module.encode(images)
        encode_ms = milliseconds(lambda: module.encode(images), repeats)
        depth_ms = milliseconds(lambda: module.depth(features, poses, intrinsics, CAMERA_SIZE), repeats)
    total = encode_ms + depth_ms
    budget = "-"
    if name == "lite":
        budget = f"< {DEPTH_BUDGET_MS:.0f} ms: " + ("met" if total < DEPTH_BUDGET_MS else "MISSED")
    return [f"| {name} | {internal} | {encode_ms:.0f} | {depth_ms:.0f} | {total:.0f} | {budget} |"]


def _learned_internal(config: DepthNetConfig) -> str:
    h, w = config.input_size
    return (f"{h} x {w} -> {h // 4} x {w // 4}, {config.depth_bins} bins, {config.feature_channels}/"
            f"{config.volume_channels} ch")


def _classical_internal(config: ClassicalDepthConfig) -> str:
    h, w = config.cost_size
    return f"{config.input_size[0]} x {config.input_size[1]} -> {h} x {w}, {config.depth_bins} bins"


def speed_table(quick: bool) -> str:
    repeats = 3 if quick else 10
    rows = ["| module | internal resolution | encode 5 frames (ms) | depth (ms) | depth update (ms) | budget |",
            "|---|---|---|---|---|---|"]
    lite, paper = DepthNetConfig.lite(), DepthNetConfig.paper()
    rows += _speed_rows("lite", LearnedDepthModule(lite).eval(), _learned_internal(lite), repeats)
    rows += _speed_rows("paper", LearnedDepthModule(paper).eval(), _learned_internal(paper), 1 if quick else 2)
    classical = ClassicalDepthConfig()
    rows += _speed_rows("classical", ClassicalDepthModule(classical), _classical_internal(classical), repeats)
    return "\n".join(rows)


def _evaluate(module: ClassicalDepthModule, clips: list[Clip]) -> dict[str, float]:
    """Mean metrics over ``clips`` of the keyframe depth against ground truth (no median
    scaling), plus the coverage (share of ground-truth pixels with a prediction) and the abs
    rel of the more confident half of the pixels."""
    rows = []
    for clip in clips:
        size = tuple(clip.images.shape[-2:])
        features = module.encode(clip.images[None])
        estimate = module.depth(features, SE3(clip.poses.data[None]), clip.intrinsics[None], size)
        predicted, confidence = estimate.depth[0].numpy(), estimate.confidence[0].numpy()
        gt = clip.depth_gt.numpy()
        known = (gt > 0) & (gt <= MAX_DEPTH)
        metrics = depth_metrics(predicted, gt, max_depth=MAX_DEPTH)
        confident = confidence >= np.median(confidence[known])
        confident_gt = np.where(confident, gt, 0.0)
        metrics["confident_abs_rel"] = depth_metrics(predicted, confident_gt, max_depth=MAX_DEPTH)["abs_rel"]
        metrics["coverage"] = float(np.mean(predicted[known] > 0))
        rows.append(metrics)
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def accuracy_table(quick: bool) -> str:
    count = 3 if quick else 8
    module = ClassicalDepthModule()
    height, width = CLIP_SIZE
    room = synthetic_clips("room", count, NEIGHBOURS, spacing=3, height=height, width=width)
    sets: list[tuple[str, list[Clip] | None]] = [("synthetic room (spacing 3)", room)]
    for folder, spacing in REAL_SEQUENCES:
        path = SHARED_DATA / folder
        clips = None
        if path.is_dir():
            clips = real_clips(path, count, NEIGHBOURS, spacing=spacing, height=height, width=width)
        sets.append((f"{folder} (spacing {spacing})", clips))
    rows = ["| clips | keyframes | abs rel | sq rel | RMSE (m) | delta < 1.25 | coverage | abs rel, confident half |",
            "|---|---|---|---|---|---|---|---|"]
    for name, clips in sets:
        if clips is None:
            rows.append(f"| {name} | - | real data not found at {SHARED_DATA} | | | | | |")
            continue
        m = _evaluate(module, clips)
        rows.append(f"| {name} | {len(clips)} | {m['abs_rel']:.3f} | {m['sq_rel']:.3f} | {m['rmse']:.3f} | "
                    f"{m['delta1']:.3f} | {m['coverage']:.3f} | {m['confident_abs_rel']:.3f} |")
    return "\n".join(rows)


def suite(args: argparse.Namespace) -> str:
    """Markdown tables: depth update speed (lite, paper, classical) and classical accuracy."""
    return (
        "### Depth modules: speed\n\n"
        f"One depth update for a keyframe and {NEIGHBOURS} neighbours from {CAMERA_SIZE[0]} x {CAMERA_SIZE[1]} camera "
        "images: `encode` (resize to the internal resolution, features of all 5 frames) and `depth` (cost volume "
        "over all bins and neighbours, matching, soft-argmax, upsampling to the camera size). Median wall time; the "
        "paper size is meant for a GPU and is measured here only for reference. The learned modules are untrained "
        "(speed does not depend on the weights).\n\n"
        f"{speed_table(args.quick)}\n\n"
        "### Classical depth module: accuracy with ground-truth poses\n\n"
        f"Keyframe depth from the keyframe and {NEIGHBOURS} neighbours (at +-spacing and +-2 spacing frames), "
        f"{CLIP_SIZE[0]} x {CLIP_SIZE[1]} images, default `ClassicalDepthConfig` (0.2-10 m, log-spaced bins). Poses "
        "are metric, so there is NO median scaling. Metrics over the pixels with ground truth up to "
        f"{MAX_DEPTH:.0f} m, averaged over keyframes spread over each sequence; pixels without a prediction "
        "(no neighbour sees them) count as errors at the minimum depth. Coverage: share of those pixels with a "
        "prediction. Last column: abs rel over the more confident half of the pixels (does the confidence rank "
        "errors?). The untrained learned module is not scored (it would be meaningless).\n\n"
        f"{accuracy_table(args.quick)}"
    )
