"""The fixed synthetic validation set and the metrics every checkpoint is judged by.

Any pair of depth and motion modules (learned or classical) is scored the same way on the same
clips: keyframe depth from the true poses (abs rel, sq rel, RMSE, delta < 1.25, as
:func:`slam.evaluation.trajectory.depth_metrics`), and the poses the motion module reaches from a perturbed
start on true depth (rotation and translation-direction errors in degrees, and the end-point
error of the induced flow in pixels at the module's feature resolution).
"""

from __future__ import annotations

import numpy as np
import torch

from networks.interfaces import DepthModule, MotionModule
from slam.evaluation.depth import average_depth_metrics, depth_metrics
from slam.geometry.resize import resize_depth
from slam.geometry.solver import gauss_newton_step, keyframe_edges
from training.clips import Clip, collate
from training.config import TrainConfig
from training.losses import induced_flow_error, pose_errors
from training.model import perturb
from training.synthetic_data import SyntheticClips

#: the validation set does not depend on the training seed: every run is judged on the same clips
VALIDATION_SEED = 20260101


def validation_clips(config: TrainConfig) -> list[Clip]:
    """``config.run.validation_clips`` clips from validation-only scene seeds, no augmentation."""
    stream = SyntheticClips(
        config.data, config.augment, config.model.depth_range, seed=VALIDATION_SEED, validation=True
    )
    return stream.take(config.run.validation_clips)


def validation_score(metrics: dict[str, float]) -> float:
    """One number to rank checkpoints, lower is better: depth abs rel plus the motion module's
    final end-point error in tenths of a pixel (both are typically 0.05-1)."""
    return metrics["abs_rel"] + metrics["flow_px"] / 10.0


@torch.no_grad()
def evaluate_modules(
    depth_module: DepthModule,
    motion_module: MotionModule,
    clips: list[Clip],
    config: TrainConfig,
    motion_steps: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Mean metrics of the modules over ``clips``: depth metrics of the keyframe (from true
    poses, inside the depth range), and pose errors after ``motion_steps`` Gauss-Newton steps
    (default: the schedule's, doubled as at test time) from the same seeded perturbations."""
    schedule = config.schedule
    steps = motion_steps or 2 * schedule.gauss_newton_steps
    low, high = config.model.depth_range
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    per_clip_depth, motion = [], []
    for clip in clips:
        batch = collate([clip]).to(device)
        size = (batch.images.shape[-2], batch.images.shape[-1])
        estimate = depth_module.depth(depth_module.encode(batch.images), batch.poses, batch.intrinsics, size)
        assert clip.depths is not None  # validation clips are synthetic, always with depth
        per_clip_depth.append(
            depth_metrics(estimate.depth[0].cpu().numpy(), clip.depths[0], min_depth=low, max_depth=high)
        )

        frames = batch.images.shape[1]
        keyframe_depth = batch.depths[:, 0]
        median = keyframe_depth[keyframe_depth > 0].median().view(1)
        start = perturb(batch.poses, schedule.rotation_noise, schedule.translation_noise * median, generator)
        features = motion_module.encode(batch.images)
        small = (
            resize_depth(keyframe_depth, (features.shape[-2], features.shape[-1]))
            .unsqueeze(1)
            .expand(-1, frames, -1, -1)
        )
        ii, jj = keyframe_edges(frames, device=batch.images.device)
        poses = start
        for _ in range(steps):
            flow = motion_module.flow(features, small, poses, batch.intrinsics, ii, jj, size)
            poses = gauss_newton_step(poses, small, flow.intrinsics, ii, jj, flow.targets, flow.weights)
        errors = pose_errors(poses, batch.poses, median)
        motion.append(
            {
                "flow_px": float(induced_flow_error(poses, batch.poses, small, flow.intrinsics, ii, jj)),
                "start_flow_px": float(induced_flow_error(start, batch.poses, small, flow.intrinsics, ii, jj)),
                **{k: float(v) for k, v in errors.items()},
            }
        )
    depth = average_depth_metrics(per_clip_depth)
    metrics = {k: depth[k] for k in ("abs_rel", "sq_rel", "rmse", "delta1")}
    metrics.update({k: float(np.mean([m[k] for m in motion])) for k in motion[0]})
    metrics["score"] = validation_score(metrics)
    return metrics
