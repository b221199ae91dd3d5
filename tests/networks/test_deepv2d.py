"""The full alternation with the classical twins, and the module factory with checkpoints."""

from __future__ import annotations

import pytest
import torch

from apps.benchmarks.clips import synthetic_clips
from networks.classical_depth import ClassicalDepthModule
from networks.classical_motion import ClassicalMotionModule
from networks.deepv2d import AlternationConfig, DeepV2D
from networks.depth import DepthNetConfig, LearnedDepthModule
from networks.factory import (
    WeightsError,
    build_depth_module,
    build_motion_module,
    load_checkpoint,
    save_checkpoint,
)
from networks.motion import LearnedMotionModule, MotionNetConfig
from slam.geometry.resize import resize_depth


def relative_errors(estimate, truth):
    """Rotation (degrees) and translation-direction (degrees) errors of frames 1.. relative to frame 0."""
    rel_est, rel_gt = estimate * estimate[0:1].inv(), truth * truth[0:1].inv()
    rotation = torch.rad2deg((rel_est * rel_gt.inv()).log()[1:, 3:].norm(dim=-1))
    cosine = torch.nn.functional.cosine_similarity(rel_est.translation()[1:], rel_gt.translation()[1:], dim=-1)
    return rotation, torch.rad2deg(torch.acos(cosine.clamp(-1, 1)))


@pytest.mark.slow
def test_classical_alternation_from_constant_depth_recovers_poses_and_depth():
    clip = synthetic_clips("room", 1, neighbours=4, spacing=3, seed=2)[0]
    system = DeepV2D(ClassicalDepthModule(), ClassicalMotionModule(), AlternationConfig(rounds=4, constant_depth=2.0))
    result = system(clip.images, clip.intrinsics)
    rotation, direction = relative_errors(result.poses[0], clip.poses[0])
    # measured: rotation under 0.1 deg, direction under 3 deg on this clip
    assert rotation.max() < 0.5 and direction.max() < 10, (rotation, direction)
    depth, truth = result.depth[0], clip.depths[0, 0]
    valid = (depth > 0) & (truth > 0)
    scale = (truth[valid] / depth[valid]).median()
    abs_rel = ((depth[valid] * scale - truth[valid]).abs() / truth[valid]).mean()
    assert valid.float().mean() > 0.5 and abs_rel < 0.15, abs_rel
    assert len(result.history) == 4 and len(result.depth_estimates) == 4


def test_resize_depth_ignores_invalid_pixels():
    depth = torch.tensor([[[2.0, 2.0, 0.0, 0.0], [2.0, 2.0, 0.0, 4.0]]])
    small = resize_depth(depth, (1, 2))
    assert small.tolist() == [[[2.0, 0.0]]]


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    depth = LearnedDepthModule(DepthNetConfig.lite())
    motion = LearnedMotionModule(MotionNetConfig.lite())
    path = tmp_path / "lite.pt"
    save_checkpoint(path, depth, motion, extra={"steps": 0})
    checkpoint = load_checkpoint(path)
    rebuilt = build_depth_module("lite", (192, 256), (0.2, 10.0), checkpoint)
    for name, tensor in depth.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], tensor), name
    assert build_motion_module("lite", (192, 256), checkpoint).config == motion.config


def test_weights_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_checkpoint(junk)
    with pytest.raises(WeightsError, match="needs trained weights"):
        build_motion_module("lite", (192, 256), None)
