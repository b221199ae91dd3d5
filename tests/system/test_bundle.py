"""The dense bundle adjustment (slam.system.bundle) on the classical motion module's
correspondences: a new keyframe's wrong depth and pose are corrected against keyframes held at
their true poses, and the fixed keyframes stay where they are."""

from __future__ import annotations

import pytest
import torch

from networks.classical_motion import ClassicalMotionConfig, ClassicalMotionModule
from slam.geometry.lie import SE3
from slam.io.sources.synthetic import SyntheticSource
from slam.system.bundle import BundleAdjuster

SIZE = (240, 320)


@pytest.fixture(scope="module")
def room():
    """Three synthetic room frames 4 apart: motion features (3, C, h, w), true depths (3, H, W),
    true world-to-camera poses SE3 (3,), (4,) intrinsics and the classical motion module."""
    source = SyntheticSource("room", 0, 9, *SIZE)
    frames = list(source)[::4]
    module = ClassicalMotionModule(ClassicalMotionConfig(input_size=SIZE))
    images = torch.stack([torch.from_numpy(f.image).permute(2, 0, 1).float() / 255 for f in frames])[None]
    features = module.encode(images)[0]
    depths = torch.stack([torch.from_numpy(f.depth_gt).float() for f in frames])
    poses_w2c = SE3.stack([SE3.from_matrix(torch.from_numpy(f.pose_gt).float()).inv() for f in frames])
    return features, depths, poses_w2c, torch.from_numpy(source.output_camera.intrinsics).float(), module


def _relative_depth_error(depth: torch.Tensor, truth: torch.Tensor) -> float:
    valid = truth > 0
    return float(((depth[valid] - truth[valid]).abs() / truth[valid]).median())


def _translation_error(pose_w2c: SE3, truth_w2c: SE3) -> float:
    return float((pose_w2c * truth_w2c.inv()).data[:3].norm())


@pytest.mark.parametrize("pool", [1, 2])
def test_a_new_keyframe_s_depth_and_pose_are_corrected_against_fixed_keyframes(room, pool):
    features, depths, truth_w2c, intrinsics, module = room
    # the newest keyframe's depth bulges (too far in the middle, too near at the sides) and its pose is off by 2 cm
    columns = torch.linspace(-1.0, 1.0, SIZE[1])
    wrong_depth = depths[2] * (1.0 + 0.25 * (1.0 - 2.0 * columns.abs()))[None, :]
    wrong_w2c = SE3.exp(torch.tensor([0.02, -0.01, 0.0, 0.0, 0.0, 0.0])) * truth_w2c[2]
    start_depths = torch.stack([depths[0], depths[1], wrong_depth])
    start_w2c = SE3.stack([truth_w2c[0], truth_w2c[1], wrong_w2c])
    adjuster = BundleAdjuster(module, intrinsics, SIZE, prior=0.5, pool=pool, iterations=2, huber=1.0)
    ii, jj = torch.tensor([2, 2]), torch.tensor([0, 1])

    poses_w2c, refined, support = adjuster.refine(features, start_depths, start_w2c, ii, jj, num_fixed=2, flow_steps=4)

    before = _relative_depth_error(wrong_depth, depths[2])
    after = _relative_depth_error(refined[2], depths[2])
    assert after < 0.5 * before, (before, after)
    assert _translation_error(poses_w2c[2], truth_w2c[2]) < 0.5 * _translation_error(wrong_w2c, truth_w2c[2])
    # the fixed keyframes keep their poses, and frames no edge leaves keep their depths
    assert torch.allclose(poses_w2c.data[:2], start_w2c.data[:2])
    assert torch.allclose(refined[:2], start_depths[:2], rtol=1e-5)
    # view support: none for the frames no edge leaves, most of the new keyframe's depth for the views
    assert support.shape == refined.shape and float(support[:2].abs().max()) == 0.0
    assert float(support[2].median()) > 0.6
    assert float(support.min()) >= 0.0 and float(support.max()) <= 1.0


def test_view_support_ranks_depth_errors(room):
    """Pixels whose depth the views pin down (high support) end nearer the truth than those the
    prior holds: the more supported half of the new keyframe's pixels has much the smaller error."""
    features, depths, truth_w2c, intrinsics, module = room
    rows = torch.linspace(0.0, 1.0, SIZE[0])[:, None]
    wrong_depth = depths[2] * (1.0 + 0.3 * torch.sin(9.0 * rows) * torch.cos(torch.linspace(0.0, 7.0, SIZE[1])))
    adjuster = BundleAdjuster(module, intrinsics, SIZE, prior=0.5, pool=2, iterations=2, huber=1.0)
    _, refined, support = adjuster.refine(
        features,
        torch.stack([depths[0], depths[1], wrong_depth]),
        truth_w2c,
        torch.tensor([2, 2]),
        torch.tensor([0, 1]),
        num_fixed=2,
        flow_steps=4,
    )
    error = (refined[2] - depths[2]).abs() / depths[2]
    strong = support[2] >= support[2].median()
    assert float(error[strong].median()) < 0.6 * float(error[~strong].median())
