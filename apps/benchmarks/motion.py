"""Motion module (Flow-SE3) benchmarks: speed of the learned (lite, paper) and classical modules
in the tracking step, and the classical module's two-frame pose accuracy with the Gauss-Newton
layer on synthetic and real clips."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from apps.benchmarks.clips import Clip, real_clips, synthetic_clips
from apps.benchmarks.common import CAMERA_SIZE, SHARED_DATA, milliseconds
from networks.classical_motion import ClassicalMotionConfig, ClassicalMotionModule
from networks.motion import LearnedMotionModule, MotionNetConfig
from slam.lie import SE3
from slam.solver import gauss_newton_step, keyframe_edges

#: tracking step budget (ms) of the lite size
TRACKING_BUDGET_MS = 30.0
#: Gauss-Newton rounds (flow, then one step) in the accuracy table
ROUNDS = 3
#: start perturbation of every neighbour's pose: rotation (degrees) and translation (metres)
PERTURB_DEGREES, PERTURB_METRES = 2.5, 0.03


def _speed_row(name: str, module: torch.nn.Module, repeats: int) -> str:
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
        ls_ms = milliseconds(lambda: gauss_newton_step(poses, depths, flow.intrinsics, ii, jj, flow.targets, flow.weights),
                              repeats)
        step_ms = milliseconds(tracking_step, repeats)
    parameters = sum(p.numel() for p in module.parameters())
    size = module.config.input_size
    budget = "-"
    if name == "lite":
        budget = f"< {TRACKING_BUDGET_MS:.0f} ms: " + ("met" if step_ms < TRACKING_BUDGET_MS else "MISSED")
    return (f"| {name} | {size[0]} x {size[1]} | {h} x {w} | {parameters / 1e3:.0f}k | {encode_ms:.1f} | {flow_ms:.1f} | "
            f"{ls_ms:.1f} | {step_ms:.1f} | {budget} |")


def _speed_table(quick: bool) -> str:
    modules = [("lite", LearnedMotionModule(MotionNetConfig.lite()).eval()),
               ("paper", LearnedMotionModule(MotionNetConfig.paper()).eval()),
               ("classical", ClassicalMotionModule())]
    rows = ["| module | internal input (H x W) | features (h x w) | parameters | encoder / frame (ms) | flow / edge (ms) | "
            "LS step (ms) | tracking step (ms) | budget |", "|---|---|---|---|---|---|---|---|---|"]
    for name, module in modules:
        repeats = 3 if quick else (5 if name == "paper" else 30)
        rows.append(_speed_row(name, module, repeats))
    return ("### Motion modules: speed\n\nOne new frame tracked against a keyframe (features cached): encode the frame, "
            f"flow for the edge keyframe -> frame, one Gauss-Newton step. Input {CAMERA_SIZE[0]} x {CAMERA_SIZE[1]} "
            "(resized inside to the module's internal size); median of repeated runs; untrained weights (speed does "
            "not depend on them).\n\n" + "\n".join(rows))


def _depth_at(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) depth with 0 = unknown -> (h, w) area average over the known values, 0 where any of
    the averaged pixels is unknown (no blend of depth and holes)."""
    known = (depth > 0).to(depth.dtype)[None, None]
    total = F.interpolate(depth[None, None] * known, size=size, mode="area")[0, 0]
    share = F.interpolate(known, size=size, mode="area")[0, 0]
    return torch.where(share > 0.999, total / share.clamp(min=1e-6), torch.zeros_like(total))


def _relative_to_keyframe(poses: SE3) -> SE3:
    """(N-1,) transforms from the keyframe (frame 0) to each neighbour, for world-to-camera (N,)."""
    return poses[1:] * poses[0:1].inv()


def _motion(poses: SE3) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (degrees) and translation (cm) of every neighbour relative to the keyframe."""
    relative = _relative_to_keyframe(poses)
    return np.degrees(relative.log()[:, 3:].norm(dim=-1).numpy()), 100 * relative.translation().norm(dim=-1).numpy()


def _pair_errors(poses: SE3, truth: SE3) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation-direction errors (degrees) of every neighbour's pose relative to
    the keyframe (frame 0), (N-1,) each, for world-to-camera poses (N,)."""
    estimate, true = _relative_to_keyframe(poses), _relative_to_keyframe(truth)
    rotation = (estimate * true.inv()).log()[:, 3:].norm(dim=-1)
    a, b = estimate.translation(), true.translation()
    cosine = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=1e-12)
    return np.degrees(rotation.numpy()), np.degrees(torch.arccos(cosine.clamp(-1, 1)).numpy())


def _perturbation(count: int, seed: int) -> torch.Tensor:
    """(count, 6) tangent vectors: random axes, rotation PERTURB_DEGREES, translation PERTURB_METRES."""
    g = torch.Generator().manual_seed(seed)
    axes = F.normalize(torch.randn(count, 6, generator=g).view(count, 2, 3), dim=-1)
    return torch.cat([PERTURB_METRES * axes[:, 0], math.radians(PERTURB_DEGREES) * axes[:, 1]], dim=-1)


def _track_clip(clip: Clip, start: SE3) -> SE3:
    """Neighbours' world-to-camera poses after ROUNDS of classical flow + one Gauss-Newton step
    each, against the keyframe with ground-truth depth (keyframe held fixed)."""
    height, width = clip.images.shape[-2:]
    module = ClassicalMotionModule(ClassicalMotionConfig(input_size=(height, width)))
    frames = clip.images.shape[0]
    ii, jj = keyframe_edges(frames)
    with torch.inference_mode():
        features = module.encode(clip.images[None])
        depth = _depth_at(clip.depth_gt, tuple(features.shape[-2:]))
        depths = depth.expand(1, frames, *depth.shape)
        poses = SE3(start.data[None])
        for _ in range(ROUNDS):
            flow = module.flow(features, depths, poses, clip.intrinsics[None], ii, jj, (height, width))
            poses = gauss_newton_step(poses, depths, flow.intrinsics, ii, jj, flow.targets, flow.weights)
    return poses[0]


def _accuracy_row(name: str, clips: list[Clip]) -> str:
    """One table row: the clips' true motion, start errors, errors after tracking from the
    perturbed start and from the ground truth."""
    starts, finals, from_truth, motions = [], [], [], []
    for c, clip in enumerate(clips):
        truth = clip.poses
        moved = SE3.exp(_perturbation(truth.shape[0] - 1, seed=c)) * truth[1:]
        start = SE3(torch.cat([truth.data[:1], moved.data]))
        starts.append(_pair_errors(start, truth))
        finals.append(_pair_errors(_track_clip(clip, start), truth))
        from_truth.append(_pair_errors(_track_clip(clip, truth), truth))
        motions.append(_motion(truth))

    def median(errors: list[tuple[np.ndarray, np.ndarray]], k: int) -> float:
        return float(np.median(np.concatenate([e[k] for e in errors])))

    def p90(errors: list[tuple[np.ndarray, np.ndarray]], k: int) -> float:
        return float(np.quantile(np.concatenate([e[k] for e in errors]), 0.9))

    pairs = sum(len(e[0]) for e in starts)
    return (f"| {name} | {pairs} | {median(motions, 0):.1f} / {median(motions, 1):.1f} | "
            f"{median(starts, 0):.2f} / {median(starts, 1):.1f} | "
            f"{median(finals, 0):.3f} ({p90(finals, 0):.3f}) / {median(finals, 1):.1f} ({p90(finals, 1):.1f}) | "
            f"{median(from_truth, 0):.3f} / {median(from_truth, 1):.1f} |")


def _accuracy_table(quick: bool) -> str:
    count, neighbours = (2, 2) if quick else (8, 4)
    datasets: list[tuple[str, Callable[[], list[Clip]]]] = [
        ("synthetic room, 240 x 320", lambda: synthetic_clips("room", count, neighbours=neighbours, spacing=3)),
    ]
    notes = []
    if SHARED_DATA.is_dir():
        datasets += [
            ("tum_fr1_rpy, 240 x 320", lambda: real_clips(SHARED_DATA / "tum_fr1_rpy", count, neighbours=neighbours,
                                                          spacing=3, height=240, width=320)),
            ("hololens_000, 240 x 360", lambda: real_clips(SHARED_DATA / "hololens_000", count, neighbours=neighbours,
                                                           spacing=1, height=240, width=360)),
        ]
    else:
        notes.append(f"Real clips skipped: {SHARED_DATA} not found (it is only on developer machines and in CI).")
    rows = ["| clips | pairs | true motion: rotation deg / translation cm (median) | start: rotation / direction (deg, median) "
            f"| after {ROUNDS} rounds: rotation / direction (deg, median (p90)) | from ground truth: rotation / direction "
            "(deg, median) |", "|---|---|---|---|---|---|"]
    rows += [_accuracy_row(name, make()) for name, make in datasets]
    default = ClassicalMotionConfig()
    text = ("### Classical motion module: two-frame pose accuracy\n\n"
            f"Keyframe with ground-truth depth and {neighbours} neighbours per clip ({count} clips per set); each "
            f"neighbour's pose starts {PERTURB_DEGREES} degrees and {100 * PERTURB_METRES:.0f} cm off (random axes) and "
            f"is refined by {ROUNDS} rounds of classical flow (DIS preset {default.preset}, finest scale "
            f"{default.finest_scale}, stride {default.stride}) and one Gauss-Newton step, keyframe fixed. Errors are of "
            "each neighbour's pose relative to the keyframe: rotation angle and the angle between translation "
            "directions. \"From ground truth\" starts at the true poses: what the flow and data agree on (the floor "
            "set by ground-truth, depth and image imperfections).\n\n" + "\n".join(rows))
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def suite(args: argparse.Namespace) -> str:
    """Markdown tables of the motion benchmarks (``args.quick``: fewer repeats and clips)."""
    return _speed_table(args.quick) + "\n\n" + _accuracy_table(args.quick)
