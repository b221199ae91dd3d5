"""The trained pair of networks and one training forward pass: losses and metrics for a batch, in
either stage of the schedule.

Stage "motion": the depth module sees the true poses; the motion module starts from perturbed
poses and works on true depth (predicted depth, detached, for clips without depth).
Stage "joint": one round of DeepV2D's alternation: depth from the perturbed poses, motion on that
depth, depth again from the poses the motion module found; gradients flow through the whole
round.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from networks.depth import DepthNetConfig, LearnedDepthModule
from networks.motion import LearnedMotionModule, MotionNetConfig
from slam.geometry.lie import SE3
from slam.geometry.resize import resize_depth
from slam.geometry.solver import gauss_newton_step, keyframe_edges
from training.clips import Batch
from training.config import TrainConfig
from training.losses import depth_loss, flow_terms, induced_flow_error, pose_errors


def build_networks(config: TrainConfig) -> tuple[LearnedDepthModule, LearnedMotionModule]:
    """Fresh depth and motion networks of ``config.model.size`` with its depth range."""
    depth_config = DepthNetConfig.lite() if config.model.size == "lite" else DepthNetConfig.paper()
    depth_config = depth_config.with_depth_range(*config.model.depth_range)
    motion_config = MotionNetConfig.lite() if config.model.size == "lite" else MotionNetConfig.paper()
    return LearnedDepthModule(depth_config), LearnedMotionModule(motion_config)


def perturb(poses: SE3, rotation_deg: float, translation: torch.Tensor, generator: torch.Generator) -> SE3:
    """World-to-camera ``poses`` (B, N) with every pose but the keyframe's (index 0) moved by a
    random left perturbation: a rotation of up to ``rotation_deg`` degrees about a random axis and
    a translation of up to ``translation`` (B,) in a random direction (uniform magnitudes)."""
    batch, frames = poses.shape
    shape = (batch, frames - 1)

    def random_vectors(magnitude: torch.Tensor) -> torch.Tensor:
        direction = torch.randn(*shape, 3, generator=generator)
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp(min=1e-9)
        return direction * torch.rand(*shape, 1, generator=generator) * magnitude

    rho = random_vectors(translation.cpu().view(batch, 1, 1))
    phi = random_vectors(torch.tensor(math.radians(rotation_deg)))
    xi = torch.cat([rho, phi], dim=-1).to(poses.data)
    moved = SE3.exp(xi) * poses[:, 1:]
    return SE3(torch.cat([poses.data[:, :1], moved.data], dim=1))


class DeepV2DTraining(nn.Module):
    """Both networks in one module (one DistributedDataParallel wrapper); ``forward`` returns
    the total loss and a dict of float metrics for the batch."""

    def __init__(self, depth: LearnedDepthModule, motion: LearnedMotionModule, config: TrainConfig):
        super().__init__()
        self.depth = depth
        self.motion = motion
        self.config = config

    def forward(self, batch: Batch, stage: str, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        config, schedule, losses = self.config, self.config.schedule, self.config.loss
        images, depth_gt, poses_true, intrinsics = batch.images, batch.depths, batch.poses, batch.intrinsics
        batch_size, frames = images.shape[:2]
        size = (images.shape[-2], images.shape[-1])
        keyframe_depth = depth_gt[:, 0]
        has_depth = batch.has_depth
        median = torch.stack([d[d > 0].median() if (d > 0).any() else d.new_tensor(2.0) for d in keyframe_depth])
        start = perturb(poses_true, schedule.rotation_noise, schedule.translation_noise * median, generator)

        depth_features = self.depth.encode(images)
        motion_features = self.motion.encode(images)
        feature_size = (motion_features.shape[-2], motion_features.shape[-1])
        ii, jj = keyframe_edges(frames, device=images.device)

        estimates = [self.depth.depth(depth_features, poses_true if stage == "motion" else start, intrinsics, size)]
        predicted = estimates[0].depth
        known = has_depth.view(-1, 1, 1)
        # the depth errors are measured through: true depth where there is some
        reference = resize_depth(torch.where(known, keyframe_depth, predicted.detach()), feature_size)
        reference = reference.unsqueeze(1).expand(-1, frames, -1, -1)
        if stage == "motion":  # the motion module works on the reference depth
            small = reference
        else:  # on the predicted depth, with gradients into the depth network
            small = resize_depth(predicted, feature_size).unsqueeze(1).expand(-1, frames, -1, -1)

        poses = start
        flow_loss: torch.Tensor | float = 0.0
        residual_loss: torch.Tensor | float = 0.0
        confidence_loss: torch.Tensor | float = 0.0
        for _ in range(schedule.gauss_newton_steps):
            flow = self.motion.flow(motion_features, small, poses, intrinsics, ii, jj, size)
            poses = gauss_newton_step(poses, small, flow.intrinsics, ii, jj, flow.targets, flow.weights)
            flow_loss = flow_loss + induced_flow_error(poses, poses_true, reference, flow.intrinsics, ii, jj)
            weighted, confidence = flow_terms(flow, poses_true, reference, ii, jj)
            residual_loss, confidence_loss = residual_loss + weighted, confidence_loss + confidence
        if stage == "joint":
            estimates.append(self.depth.depth(depth_features, poses, intrinsics, size))

        image_k = images[:, 0]
        depth_term = sum(
            depth_loss(e, keyframe_depth, has_depth, image_k, config.model.depth_range, losses) for e in estimates
        ) / len(estimates)
        assert isinstance(depth_term, torch.Tensor)  # estimates is never empty
        motion_term = losses.flow * flow_loss + losses.residual * residual_loss + losses.weights * confidence_loss
        total = depth_term + motion_term / schedule.gauss_newton_steps

        with torch.no_grad():
            valid = (keyframe_depth > 0) & known
            final = estimates[-1].depth
            abs_rel = (
                ((final - keyframe_depth).abs() / keyframe_depth.clamp(min=1e-6))[valid].mean()
                if valid.any()
                else final.new_tensor(float("nan"))
            )
            errors = pose_errors(poses, poses_true, median)
            start_flow = induced_flow_error(start, poses_true, reference, flow.intrinsics, ii, jj)
            final_flow = induced_flow_error(poses, poses_true, reference, flow.intrinsics, ii, jj)
        assert isinstance(flow_loss, torch.Tensor)  # the Gauss-Newton loop ran (flow is used above)
        metrics = {
            "loss": float(total.detach()),
            "depth_loss": float(depth_term.detach()),
            "flow_loss": float(flow_loss.detach()) / schedule.gauss_newton_steps,
            "abs_rel": float(abs_rel),
            "flow_px": float(final_flow),
            "start_flow_px": float(start_flow),
            **{k: float(v) for k, v in errors.items()},
        }
        return total, metrics
