"""Motion module (Flow-SE3) benchmarks: speed of the learned (lite, paper) and classical modules
in the tracking step, and the relative-pose accuracy of the classical and the trained lite module
with the Gauss-Newton layer on ground-truth depth, from a perturbed start and from identity, in
keyframe (two-frame) and global (N-frame) mode, on the clip sets of
:func:`apps.benchmarks.clips.benchmark_sets`."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from apps.bench import NO_WEIGHTS, weights_description
from apps.benchmarks.clips import benchmark_sets
from apps.benchmarks.common import CAMERA_SIZE, milliseconds
from networks.classical_motion import ClassicalMotionConfig, ClassicalMotionModule
from networks.cost_volume import neighbour_transforms
from networks.factory import build_motion_module
from networks.interfaces import MotionModule
from networks.motion import LearnedMotionModule, MotionNetConfig
from slam.geometry.lie import SE3
from slam.geometry.resize import resize_depth
from slam.geometry.solver import all_pairs_edges, gauss_newton_step, keyframe_edges
from training.clips import Batch
from training.losses import relative_pose_errors

#: tracking step budget (ms) of the lite size
TRACKING_BUDGET_MS = 30.0
#: Gauss-Newton rounds (flow, then one step) in the accuracy table
ROUNDS = 3
#: learned module kind scored beside the classical one
LEARNED = "lite"
#: pose optimization modes of the accuracy table: edges of a clip of N frames, and table labels
EDGES: dict[str, Callable[[int], tuple[torch.Tensor, torch.Tensor]]] = {
    "keyframe": keyframe_edges,
    "global": all_pairs_edges,
}
MODE_LABELS = {"keyframe": "two frames (keyframe mode)", "global": "N frames (global mode)"}
#: start perturbation of every neighbour's pose: rotation (degrees) and translation (metres)
PERTURB_DEGREES, PERTURB_METRES = 2.5, 0.03


def _speed_row(name: str, module: LearnedMotionModule | ClassicalMotionModule, repeats: int) -> str:
    """One table row: encoder per frame, flow per edge, one LS step, one tracking step, at
    :data:`CAMERA_SIZE` input (the module resizes to its internal resolution)."""
    g = torch.Generator().manual_seed(0)
    frame = torch.rand(1, 1, 3, *CAMERA_SIZE, generator=g)
    intrinsics = torch.tensor([[525.0, 525.0, 319.5, 239.5]])
    ii, jj = keyframe_edges(2)
    with torch.inference_mode():
        keyframe_features = module.encode(torch.rand(1, 1, 3, *CAMERA_SIZE, generator=g))
        features = torch.cat([keyframe_features, module.encode(frame)], dim=1)
        h, w = features.shape[-2:]
        depths = 1.0 + 2.0 * torch.rand(1, 2, h, w, generator=g)
        poses = SE3.exp(torch.cat([torch.zeros(1, 1, 6), 0.02 * torch.randn(1, 1, 6, generator=g)], dim=1))
        flow = module.flow(features, depths, poses, intrinsics, ii, jj, CAMERA_SIZE)

        def tracking_step() -> SE3:
            pair = torch.cat([keyframe_features, module.encode(frame)], dim=1)
            estimate = module.flow(pair, depths, poses, intrinsics, ii, jj, CAMERA_SIZE)
            return gauss_newton_step(poses, depths, estimate.intrinsics, ii, jj, estimate.targets, estimate.weights)

        encode_ms = milliseconds(lambda: module.encode(frame), repeats)
        flow_ms = milliseconds(lambda: module.flow(features, depths, poses, intrinsics, ii, jj, CAMERA_SIZE), repeats)
        ls_ms = milliseconds(
            lambda: gauss_newton_step(poses, depths, flow.intrinsics, ii, jj, flow.targets, flow.weights), repeats
        )
        step_ms = milliseconds(tracking_step, repeats)
    parameters = sum(p.numel() for p in module.parameters())
    size = module.config.input_size
    budget = "-"
    if name == "lite":
        budget = f"< {TRACKING_BUDGET_MS:.0f} ms: " + ("met" if step_ms < TRACKING_BUDGET_MS else "MISSED")
    return (
        f"| {name} | {size[0]} x {size[1]} | {h} x {w} | {parameters / 1e3:.0f}k | {encode_ms:.1f} | {flow_ms:.1f} | "
        f"{ls_ms:.1f} | {step_ms:.1f} | {budget} |"
    )


def _speed_table(quick: bool) -> str:
    modules: list[tuple[str, LearnedMotionModule | ClassicalMotionModule]] = [
        ("lite", LearnedMotionModule(MotionNetConfig.lite()).eval()),
        ("paper", LearnedMotionModule(MotionNetConfig.paper()).eval()),
        ("classical", ClassicalMotionModule()),
    ]
    rows = [
        "| module | internal input (H x W) | features (h x w) | parameters | encoder / frame (ms) | flow / edge (ms) | "
        "LS step (ms) | tracking step (ms) | budget |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, module in modules:
        repeats = 3 if quick else (5 if name == "paper" else 30)
        rows.append(_speed_row(name, module, repeats))
    return (
        "### Motion modules: speed\n\nOne new frame tracked against a keyframe (features cached): encode the frame, "
        f"flow for the edge keyframe -> frame, one Gauss-Newton step. Input {CAMERA_SIZE[0]} x {CAMERA_SIZE[1]} "
        "(resized inside to the module's internal size); median of repeated runs; freshly built networks (speed does "
        "not depend on them).\n\n" + "\n".join(rows)
    )


def _motion(poses: SE3) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (degrees) and translation (cm) of every neighbour relative to the keyframe."""
    relative = neighbour_transforms(poses)
    return np.degrees(relative.log()[:, 3:].norm(dim=-1).numpy()), 100 * relative.translation().norm(dim=-1).numpy()


def _pair_errors(poses: SE3, truth: SE3) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation-direction errors (degrees) of every neighbour's pose relative to
    the keyframe (frame 0), (N-1,) each, for world-to-camera poses (N,). A zero translation has
    no direction: its direction error is 90 degrees."""
    rotation, direction = relative_pose_errors(neighbour_transforms(poses), neighbour_transforms(truth))
    return rotation.numpy(), direction.numpy()


def _perturbation(count: int, seed: int) -> torch.Tensor:
    """(count, 6) tangent vectors: random axes, rotation PERTURB_DEGREES, translation PERTURB_METRES."""
    g = torch.Generator().manual_seed(seed)
    axes = F.normalize(torch.randn(count, 6, generator=g).view(count, 2, 3), dim=-1)
    return torch.cat([PERTURB_METRES * axes[:, 0], math.radians(PERTURB_DEGREES) * axes[:, 1]], dim=-1)


def _starts(truth: SE3, seed: int) -> SE3:
    """Start poses (2, N) world-to-camera, keyframe (frame 0) at its true pose in both: row 0
    "perturbed" (every neighbour's true pose moved by :func:`_perturbation`), row 1 "identity"
    (every neighbour at the keyframe's pose: no motion)."""
    moved = SE3.exp(_perturbation(truth.shape[0] - 1, seed)) * truth[1:]
    perturbed = torch.cat([truth.data[:1], moved.data])
    identity = truth.data[:1].expand(truth.shape[0], -1)
    return SE3(torch.stack([perturbed, identity]))


def track_clip(module: MotionModule, clip: Batch, starts: SE3, mode: str) -> SE3:
    """World-to-camera poses (B, N) of ``clip`` after ROUNDS rounds of ``module``'s flow and one
    Gauss-Newton step each, from each of the B rows of ``starts`` (B, N), on ground-truth depth,
    frame 0 held fixed. ``mode`` "keyframe": edges keyframe -> neighbour (each pair solved on its
    own, only the keyframe's depth is used); "global": all ordered pairs in one joint solve
    (every frame's depth is used: the clip needs depth on every frame)."""
    height, width = clip.images.shape[-2:]
    batch, frames = starts.shape
    ii, jj = EDGES[mode](frames)
    intrinsics = clip.intrinsics.expand(batch, -1)
    with torch.inference_mode():
        features = module.encode(clip.images).expand(batch, -1, -1, -1, -1)
        depths = resize_depth(clip.depths, (features.shape[-2], features.shape[-1])).expand(batch, -1, -1, -1)
        poses = starts
        for _ in range(ROUNDS):
            flow = module.flow(features, depths, poses, intrinsics, ii, jj, (height, width))
            poses = gauss_newton_step(poses, depths, flow.intrinsics, ii, jj, flow.targets, flow.weights, num_fixed=1)
    return poses


def _median_p90(errors: list[tuple[np.ndarray, np.ndarray]], k: int) -> str:
    """ "median (p90)" of the ``k``-th error (0 rotation, 1 direction) over all pairs."""
    values = np.concatenate([e[k] for e in errors])
    return f"{np.median(values):.2f} ({np.quantile(values, 0.9):.2f})"


def _accuracy_cells(module: MotionModule, clips: list[Batch], mode: str) -> str:
    """The measured cells of one row: poses scored, true motion, perturbed start error, and the
    errors after tracking from the perturbed and identity starts."""
    start_errors, motions = [], []
    final: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"perturbed": [], "identity": []}
    for c, clip in enumerate(clips):
        truth = clip.poses[0]
        starts = _starts(truth, seed=c)
        start_errors.append(_pair_errors(starts[0], truth))
        motions.append(_motion(truth))
        tracked = track_clip(module, clip, starts, mode)
        final["perturbed"].append(_pair_errors(tracked[0], truth))
        final["identity"].append(_pair_errors(tracked[1], truth))
    poses = sum(len(e[0]) for e in start_errors)
    motion = np.concatenate([m[0] for m in motions]), np.concatenate([m[1] for m in motions])
    start = np.concatenate([e[0] for e in start_errors]), np.concatenate([e[1] for e in start_errors])
    return (
        f"{len(clips)} / {poses} | {np.median(motion[0]):.1f} / {np.median(motion[1]):.1f} | "
        f"{np.median(start[0]):.2f} / {np.median(start[1]):.1f} | "
        f"{_median_p90(final['perturbed'], 0)} | {_median_p90(final['perturbed'], 1)} | "
        f"{_median_p90(final['identity'], 0)} | {_median_p90(final['identity'], 1)} |"
    )


def _accuracy_table(quick: bool, checkpoint: dict | None) -> str:
    """One row per (clip set, module, mode): classical, and the learned lite module of
    ``checkpoint`` (a row saying there are no weights where it is None)."""
    sets = benchmark_sets(count=1 if quick else 4, validation_count=1 if quick else 8)
    rows = [
        "| clips | module | mode | clips / poses scored | true motion: rotation deg / translation cm (median) | "
        "perturbed start: rotation / direction (deg, median) | from perturbed: rotation (deg, median (p90)) | "
        "from perturbed: direction (deg, median (p90)) | from identity: rotation (deg, median (p90)) | "
        "from identity: direction (deg, median (p90)) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    empty = " | | | | | |"
    for clip_set in sets:
        if clip_set.clips is None:
            rows.append(f"| {clip_set.name} | all | all | {clip_set.missing} |{empty}")
            continue
        image_shape = clip_set.clips[0].images.shape
        size = (image_shape[-2], image_shape[-1])
        learned = build_motion_module(LEARNED, size, checkpoint) if checkpoint is not None else None
        for name, module in (("classical", build_motion_module("classical", size)), (LEARNED, learned)):
            for mode in EDGES:
                label = f"| {clip_set.name} | {name} | {MODE_LABELS[mode]} |"
                clips = clip_set.clips if mode == "keyframe" else [c for c in clip_set.clips if c.every_frame_has_depth]
                if module is None:
                    rows.append(f"{label} {NO_WEIGHTS} |{empty}")
                elif not clips:
                    rows.append(f"{label} no clip with ground-truth depth on every frame |{empty}")
                else:
                    rows.append(f"{label} {_accuracy_cells(module, clips, mode)}")
    return "\n".join(rows)


def _accuracy_section(args: argparse.Namespace) -> str:
    default = ClassicalMotionConfig()
    return (
        "### Motion modules: relative-pose accuracy, learned vs classical\n\n"
        "Clips of a keyframe and its neighbours with ground-truth poses and depth (the sets of the depth "
        "benchmark: the synthetic validation set of `v2d train`, rendered rooms, and the real sequences at "
        "several spacings). The keyframe's pose is fixed at its true value; every neighbour starts either "
        f"PERTURBED ({PERTURB_DEGREES} degrees and {100 * PERTURB_METRES:.0f} cm off its true pose, random axes) "
        "or at IDENTITY (at the keyframe's pose: no motion), and is refined by "
        f"{ROUNDS} rounds of the motion module's flow and one Gauss-Newton step each, on ground-truth depth "
        '(resized to the module\'s feature resolution). Two modes: "two frames" is keyframe pose '
        "optimization (edges keyframe -> neighbour; the normal equations are block-diagonal, so each pair is "
        'solved on its own: every neighbour\'s result is a two-frame result); "N frames" is global pose '
        "optimization (all ordered pairs of the clip's frames in one joint solve, the first pose fixed, each "
        "frame's own ground-truth depth), scored on the clips where every frame has a depth map (all synthetic "
        "clips; real clips whose neighbours all have one). Errors are of each neighbour's pose relative to the "
        "keyframe: the rotation angle, and the angle between the estimated and true translation directions "
        "(what a monocular system can recover); median and 90th percentile over all neighbours of the set. "
        "Classical: DIS optical flow (preset "
        f"{default.preset}, finest scale {default.finest_scale}, stride {default.stride}) at the clip size. "
        f"Learned: the lite Flow-SE3 network at its own internal size. {weights_description(args)}\n\n"
        f"{_accuracy_table(args.quick, args.checkpoint)}"
    )


def suite(args: argparse.Namespace) -> str:
    """Markdown tables of the motion benchmarks (``args.quick``: fewer repeats and clips;
    ``args.checkpoint``: the learned weights, or None)."""
    return _speed_table(args.quick) + "\n\n" + _accuracy_section(args)
