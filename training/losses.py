"""The training losses of DeepV2D and the pose/depth errors they are made of.

Depth: L1 to ground truth on every head (pixels with ground truth inside the depth bins' range),
plus a small edge-aware smoothness term where ground truth is missing. Motion: the reprojection
error of the flow induced by the predicted poses against the flow induced by the true poses
(through true depth), plus small terms on the confidence-weighted error of the predicted targets
and on the confidences themselves (so that they do not all fall to zero).
"""

from __future__ import annotations

import torch

from networks.cost_volume import neighbour_transforms
from networks.flow_geometry import edge_reprojection
from networks.interfaces import DepthEstimate, FlowEstimate
from slam.geometry.lie import SE3
from training.config import LossConfig


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` (broadcastable, bool or 0/1) holds; 0 when it holds nowhere."""
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def depth_valid_mask(depth_gt: torch.Tensor, has_depth: torch.Tensor, depth_range: tuple[float, float]) -> torch.Tensor:
    """(B, H, W) bool: ground truth known and inside ``depth_range`` (what the bins can express)."""
    low, high = depth_range
    return (depth_gt > low) & (depth_gt < high) & has_depth.view(-1, 1, 1)


def smoothness(depth: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Edge-aware first-order smoothness of ``depth`` (B, H, W) relative to its mean, weighted by
    exp(-|image gradient|) of ``image`` (B, 3, H, W), averaged where ``mask`` (B, H, W) holds."""
    normalised = depth / depth.mean(dim=(1, 2), keepdim=True).clamp(min=1e-6)
    dx = (normalised[:, :, 1:] - normalised[:, :, :-1]).abs()
    dy = (normalised[:, 1:] - normalised[:, :-1]).abs()
    ix = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().mean(1)
    iy = (image[:, :, 1:] - image[:, :, :-1]).abs().mean(1)
    return masked_mean(dx * torch.exp(-10 * ix), mask[:, :, 1:] & mask[:, :, :-1]) + masked_mean(
        dy * torch.exp(-10 * iy), mask[:, 1:] & mask[:, :-1]
    )


def depth_loss(
    estimate: DepthEstimate,
    depth_gt: torch.Tensor,
    has_depth: torch.Tensor,
    image: torch.Tensor,
    depth_range: tuple[float, float],
    config: LossConfig,
) -> torch.Tensor:
    """Keyframe depth loss: sum over heads k of ``head_gamma^(K-1-k)`` times the L1 error (metres)
    where ground truth is valid, plus ``smoothness`` on the final depth where it is not.
    ``depth_gt`` (B, H, W), ``has_depth`` (B,), ``image`` (B, 3, H, W) in [0, 1]."""
    valid = depth_valid_mask(depth_gt, has_depth, depth_range)
    heads = estimate.head_depths
    loss = sum(
        config.head_gamma ** (len(heads) - 1 - k) * masked_mean((head - depth_gt).abs(), valid)
        for k, head in enumerate(heads)
    )
    assert isinstance(loss, torch.Tensor)  # head_depths is never empty (its last one is the depth)
    if config.smoothness:
        loss = loss + config.smoothness * smoothness(estimate.depth, image, ~valid)
    return loss


def induced_flow_error(
    poses: SE3, poses_true: SE3, depths: torch.Tensor, intrinsics: torch.Tensor, ii: torch.Tensor, jj: torch.Tensor
) -> torch.Tensor:
    """Mean end-point distance (pixels at the depths' resolution) between the reprojections of
    frame ii's pixels into frame jj under ``poses`` and under ``poses_true`` (both SE3 (B, N)
    world-to-camera), through ``depths`` (B, N, h, w), over pixels valid under the true poses."""
    coords, _ = edge_reprojection(depths, poses, intrinsics, ii, jj)
    coords_true, valid = edge_reprojection(depths, poses_true, intrinsics, ii, jj)
    return masked_mean((coords - coords_true).norm(dim=-1), valid)


def flow_terms(
    flow: FlowEstimate, poses_true: SE3, depths: torch.Tensor, ii: torch.Tensor, jj: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two small motion terms: the confidence-weighted L1 distance between the predicted
    targets and the true reprojections, and the mean of -log(confidence), both over the pixels
    valid under the true poses (through ``depths``, (B, N, h, w))."""
    coords_true, valid = edge_reprojection(depths, poses_true, flow.intrinsics, ii, jj)
    valid = valid.unsqueeze(-1)
    weighted = masked_mean(flow.weights * (flow.targets - coords_true).abs(), valid)
    confidence = masked_mean(-torch.log(flow.weights.clamp(min=1e-4)), valid)
    return weighted, confidence


def relative_pose_errors(estimate: SE3, truth: SE3) -> tuple[torch.Tensor, torch.Tensor]:
    """Errors of relative transforms (e.g. keyframe-to-frame, :func:`neighbour_transforms`) of
    any shape (...): the geodesic angle of ``estimate * truth^-1`` and the angle between the
    estimated and true translation directions, both (...) in degrees. A zero translation has no
    direction: its direction error is 90 degrees."""
    rotation = (estimate * truth.inv()).log()[..., 3:].norm(dim=-1)
    a, b = estimate.translation(), truth.translation()
    cosine = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=1e-12)
    return torch.rad2deg(rotation), torch.rad2deg(torch.arccos(cosine.clamp(-1, 1)))


def pose_errors(poses: SE3, poses_true: SE3, scale: torch.Tensor) -> dict[str, torch.Tensor]:
    """Errors of the non-keyframe poses (SE3 (B, N) world-to-camera, keyframe first) in the
    keyframe's frame: ``rotation_deg`` (geodesic angle of the relative rotation), and
    ``translation_deg`` (angle between estimated and true translation directions, for
    translations above 1% of ``scale`` (B,), e.g. the median depth), ``translation_rel`` (the
    translation error over ``scale``). Each is a mean over frames and the batch (a 0-d tensor)."""
    relative, relative_true = neighbour_transforms(poses), neighbour_transforms(poses_true)
    rotation, direction = relative_pose_errors(relative, relative_true)
    # camera-from-keyframe translations: the keyframe's centre seen from the frame
    t, t_true = relative.translation(), relative_true.translation()
    moving = t_true.norm(dim=-1) > 0.01 * scale[:, None]
    return {
        "rotation_deg": rotation.mean(),
        "translation_deg": masked_mean(direction, moving),
        "translation_rel": ((t - t_true).norm(dim=-1) / scale[:, None]).mean(),
    }
