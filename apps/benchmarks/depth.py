"""Depth module benchmarks: speed of a depth update (keyframe + 4 neighbours) for the learned
module (lite, paper) and the classical one, and the accuracy of the classical and the trained
lite module with ground-truth poses on the synthetic validation set, rendered rooms and real
clips at several baselines (:func:`apps.benchmarks.clips.benchmark_sets`)."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from apps.bench import NO_WEIGHTS, weights_description
from apps.benchmarks.clips import NEIGHBOURS, REAL_SEQUENCES, benchmark_sets
from apps.benchmarks.common import CAMERA_SIZE, milliseconds
from networks.classical_depth import ClassicalDepthConfig, ClassicalDepthModule
from networks.depth import DepthNetConfig, LearnedDepthModule
from networks.factory import build_depth_module
from networks.interfaces import DepthModule
from slam.evaluation.depth import depth_metrics, valid_depth_mask
from slam.geometry.lie import SE3
from training.clips import Batch
from training.config import TrainConfig

#: depth update budget (ms) of the lite size: keyframe + neighbours, features included
DEPTH_BUDGET_MS = 250.0
#: learned module kind scored beside the classical one
LEARNED = "lite"
#: depth range (metres) of both modules' hypotheses (the learned one's as trained); the
#: metrics consider the ground truth inside it
DEPTH_RANGE = (0.2, 10.0)
#: what the synthetic validation set of training holds
VALIDATION_DESCRIPTION = (
    f"rendered rooms and streets scaled into the depth range, a keyframe and "
    f"{TrainConfig().data.frames - 1} neighbours up to {TrainConfig().data.max_gap} frames "
    "away, no augmentation"
)


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
    return (
        f"{h} x {w} -> {h // 4} x {w // 4}, {config.depth_bins} bins, {config.feature_channels}/"
        f"{config.volume_channels} ch"
    )


def _classical_internal(config: ClassicalDepthConfig) -> str:
    h, w = config.cost_size
    return f"{config.input_size[0]} x {config.input_size[1]} -> {h} x {w}, {config.depth_bins} bins"


def speed_table(quick: bool) -> str:
    repeats = 3 if quick else 10
    rows = [
        "| module | internal resolution | encode 5 frames (ms) | depth (ms) | depth update (ms) | budget |",
        "|---|---|---|---|---|---|",
    ]
    lite, paper = DepthNetConfig.lite(), DepthNetConfig.paper()
    rows += _speed_rows("lite", LearnedDepthModule(lite).eval(), _learned_internal(lite), repeats)
    rows += _speed_rows("paper", LearnedDepthModule(paper).eval(), _learned_internal(paper), 1 if quick else 2)
    classical = ClassicalDepthConfig()
    rows += _speed_rows("classical", ClassicalDepthModule(classical), _classical_internal(classical), repeats)
    return "\n".join(rows)


def _evaluate(module: DepthModule, clips: list[Batch]) -> dict[str, float]:
    """Mean metrics over ``clips`` of the keyframe depth from the true poses against ground
    truth, over the pixels with ground truth inside :data:`DEPTH_RANGE`: the metrics of
    :func:`slam.evaluation.trajectory.depth_metrics` without median scaling, ``median_abs_rel`` and
    ``median_scale`` with it, ``coverage`` (share of those pixels with a prediction) and
    ``confident_abs_rel`` (abs rel of the more confident half of them)."""
    low, high = DEPTH_RANGE
    rows = []
    for clip in clips:
        size = (clip.images.shape[-2], clip.images.shape[-1])
        with torch.inference_mode():
            features = module.encode(clip.images)
            estimate = module.depth(features, clip.poses, clip.intrinsics, size)
        predicted, confidence = estimate.depth[0].numpy(), estimate.confidence[0].numpy()
        gt = clip.depths[0, 0].numpy()
        known = valid_depth_mask(gt, low, high)
        metrics = depth_metrics(predicted, gt, min_depth=low, max_depth=high)
        scaled = depth_metrics(predicted, gt, median_scaling=True, min_depth=low, max_depth=high)
        metrics["median_abs_rel"], metrics["median_scale"] = scaled["abs_rel"], scaled["scale"]
        confident_gt = np.where(confidence >= np.median(confidence[known]), gt, 0.0)
        metrics["confident_abs_rel"] = depth_metrics(predicted, confident_gt, min_depth=low, max_depth=high)["abs_rel"]
        metrics["coverage"] = float(np.mean(predicted[known] > 0))
        rows.append(metrics)
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def accuracy_table(quick: bool, checkpoint: dict | None) -> str:
    """One row per (clip set, module): classical, and the learned lite module of
    ``checkpoint`` (a row saying there are no weights where it is None)."""
    sets = benchmark_sets(count=1 if quick else 8, validation_count=1 if quick else None)
    rows = [
        "| clips | module | keyframes | abs rel | sq rel | RMSE (m) | delta < 1.25 | abs rel, median-scaled "
        "(scale) | coverage | abs rel, confident half |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for clip_set in sets:
        if clip_set.clips is None:
            rows.append(f"| {clip_set.name} | all | - | {clip_set.missing} | | | | | | |")
            continue
        image_shape = clip_set.clips[0].images.shape
        size = (image_shape[-2], image_shape[-1])
        learned = build_depth_module(LEARNED, size, DEPTH_RANGE, checkpoint) if checkpoint is not None else None
        modules = [("classical", build_depth_module("classical", size, DEPTH_RANGE)), (LEARNED, learned)]
        for name, module in modules:
            if module is None:
                rows.append(f"| {clip_set.name} | {name} | - | {NO_WEIGHTS} | | | | | | |")
                continue
            m = _evaluate(module, clip_set.clips)
            rows.append(
                f"| {clip_set.name} | {name} | {len(clip_set.clips)} | {m['abs_rel']:.3f} | {m['sq_rel']:.3f} | "
                f"{m['rmse']:.3f} | {m['delta1']:.3f} | {m['median_abs_rel']:.3f} (x{m['median_scale']:.2f}) | "
                f"{m['coverage']:.3f} | {m['confident_abs_rel']:.3f} |"
            )
    return "\n".join(rows)


def suite(args: argparse.Namespace) -> str:
    """Markdown tables: depth update speed (lite, paper, classical), and the accuracy of the
    classical and learned (``args.checkpoint``) modules with ground-truth poses."""
    low, high = DEPTH_RANGE
    classical = ClassicalDepthConfig()
    return (
        "### Depth modules: speed\n\n"
        f"One depth update for a keyframe and {NEIGHBOURS} neighbours from {CAMERA_SIZE[0]} x {CAMERA_SIZE[1]} camera "
        "images: `encode` (resize to the internal resolution, features of all 5 frames) and `depth` (cost volume "
        "over all bins and neighbours, matching, soft-argmax, upsampling to the camera size). Median wall time; the "
        "paper size is meant for a GPU and is measured here only for reference. The learned modules are freshly built "
        "networks (speed does not depend on the weights).\n\n"
        f"{speed_table(args.quick)}\n\n"
        "### Depth modules: accuracy with ground-truth poses, learned vs classical\n\n"
        "Keyframe depth from the keyframe and its neighbours with their ground-truth poses. Clip sets: the "
        f"synthetic validation set of `v2d train` ({VALIDATION_DESCRIPTION}); rendered rooms (keyframe and "
        f"{NEIGHBOURS} neighbours at +-spacing and +-2 spacing frames); real sequences (same layout, "
        f"{', '.join(f'{folder} at {h} x {w}' for folder, (h, w), _ in REAL_SEQUENCES)}, metric ground-truth "
        "poses and depth maps). Modules: classical (`ClassicalDepthConfig` at the clip size, "
        f"{classical.depth_bins} log-spaced bins over {low:g}-{high:g} m) and the learned lite network (run at its own "
        f"internal size, depth returned at the clip size, trained range {low:g}-{high:g} m). "
        f"{weights_description(args)} Poses and depth are metric, so the main columns have NO median scaling: a "
        'module must get the scale right from the poses. The "median-scaled" column rescales each prediction by '
        "median(ground truth) / median(prediction) first (mean scale factor in brackets): a gap between the two abs "
        f"rel columns is a scale bias. Metrics over the pixels with ground truth in {low:g}-{high:g} m, averaged "
        "over keyframes (spread evenly over each real sequence); pixels without a prediction (no neighbour sees "
        "them) count as errors at the minimum depth. Coverage: share of those pixels with a prediction. Last "
        "column: abs rel over the more confident half of the pixels (does the module's confidence rank its "
        "errors?). For reference, DeepV2D reports abs rel about 0.09 on NYU with 8 frames and a GPU-trained model "
        "of the paper size.\n\n"
        f"{accuracy_table(args.quick, args.checkpoint)}"
    )
