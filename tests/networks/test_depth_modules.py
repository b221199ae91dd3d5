"""Depth modules: shared layers, the plane-sweep cost volume, the learned DeepV2D depth network
(shapes, gradients) and the classical plane-sweep twin (depth recovered with true poses)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from networks.classical_depth import (
    ClassicalDepthConfig,
    ClassicalDepthModule,
    aggregate_neighbours,
    semi_global,
)
from networks.cost_volume import (
    depth_bins,
    entropy_confidence,
    expected_depth,
    neighbour_transforms,
    plane_sweep,
)
from networks.depth import DepthNetConfig, LearnedDepthModule
from networks.layers import Conv3d, FeatureEncoder, Hourglass2d, Hourglass3d
from slam.errors import V2DError
from slam.evaluation.depth import depth_metrics
from slam.geometry.lie import SE3
from slam.geometry.projection import backproject, warp
from slam.synthetic import SyntheticSequence

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_poses(batch: int, frames: int, scale: float = 0.05, seed: int = 0) -> SE3:
    """World-to-camera poses (B, N) near the identity, the keyframe's exactly the identity."""
    generator = torch.Generator().manual_seed(seed)
    xi = torch.randn(batch, frames, 6, generator=generator) * scale
    xi[:, 0] = 0
    return SE3.exp(xi)


def smooth_texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) smooth random colours in [0, 1] (bilinear resampling barely changes it)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8 + 2, width // 8 + 2, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return smooth.clamp(0, 1)


def synthetic_clip(offsets: list[int], height: int, width: int, seed: int = 0, key: int = 12):
    """Keyframe ``key`` of a synthetic room and neighbours at ``key + offsets``: images
    (1, N, 3, H, W), world-to-camera poses SE3 (1, N), intrinsics (1, 4), keyframe depth (H, W)."""
    sequence = SyntheticSequence("room", seed=seed, num_frames=key + max(offsets) + 1, height=height, width=width)
    indices = [key] + [key + o for o in offsets]
    renders = [sequence.render(i) for i in indices]
    images = torch.from_numpy(np.stack([r[0] for r in renders])).permute(0, 3, 1, 2).float()[None] / 255.0
    world_to_camera = torch.from_numpy(np.linalg.inv(sequence.poses[indices])).float()
    intrinsics = torch.tensor(sequence.camera.intrinsics, dtype=torch.float32)[None]
    return images, SE3.from_matrix(world_to_camera)[None], intrinsics, renders[0][1]


# ---------------------------------------------------------------------------------------- layers


def test_encoder_output_shape_and_size_check():
    encoder = FeatureEncoder(out_channels=12, base_channels=8)
    assert encoder(torch.rand(2, 3, 32, 48)).shape == (2, 12, 8, 12)
    with pytest.raises(V2DError, match="multiples of 16"):
        encoder(torch.rand(1, 3, 40, 48))


def test_hourglasses_keep_shape_and_check_size():
    assert Hourglass2d(8)(torch.rand(1, 8, 12, 16)).shape == (1, 8, 12, 16)
    assert Hourglass3d(8)(torch.rand(2, 8, 8, 12, 16)).shape == (2, 8, 8, 12, 16)
    with pytest.raises(ValueError, match="divisible by 4"):
        Hourglass3d(8)(torch.rand(1, 8, 6, 12, 16))


@pytest.mark.parametrize("stride", [1, 2])
def test_conv3d_matches_torch_values_and_gradients(stride):
    torch.manual_seed(0)
    ours = Conv3d(4, 6, 3, stride=stride, padding=1)
    reference = torch.nn.Conv3d(4, 6, 3, stride=stride, padding=1)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(1, 4, 8, 10, 12, requires_grad=True)
    y_ours, y_ref = ours(x), reference(x)
    assert torch.allclose(y_ours, y_ref, atol=1e-5)
    g_ours = torch.autograd.grad(y_ours.square().sum(), [x, ours.weight, ours.bias])
    g_ref = torch.autograd.grad(y_ref.square().sum(), [x, reference.weight, reference.bias])
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------- cost volume


@pytest.mark.parametrize("spacing", ["linear", "inverse", "log"])
def test_depth_bins_span_the_range(spacing):
    bins = depth_bins(0.5, 8.0, 9, spacing)
    assert bins[0].item() == pytest.approx(0.5) and bins[-1].item() == pytest.approx(8.0)
    assert (bins[1:] > bins[:-1]).all()
    steps = {"linear": bins.diff(), "inverse": (1 / bins).diff(), "log": bins.log().diff()}[spacing]
    assert torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-4)


def test_plane_sweep_equals_warping_at_each_constant_depth():
    features = torch.rand(2, 3, 4, 12, 16)
    poses = random_poses(2, 4, scale=0.1)
    intrinsics = torch.tensor([[14.0, 13.0, 7.5, 5.5], [15.0, 15.0, 8.0, 6.0]])
    bins = torch.tensor([0.5, 1.0, 3.0])
    warped, valid = plane_sweep(features, neighbour_transforms(poses), intrinsics, bins)
    assert warped.shape == (2, 3, 4, 3, 12, 16) and valid.shape == (2, 3, 3, 12, 16)
    T = neighbour_transforms(poses)
    for m in range(3):
        for d, depth in enumerate(bins.tolist()):
            expected, expected_valid = warp(features[:, m], torch.full((2, 12, 16), depth), T[:, m], intrinsics)
            assert torch.allclose(warped[:, m, :, d], expected, atol=1e-4)
            assert torch.equal(valid[:, m, d], expected_valid)


def test_cost_volume_matches_at_the_true_depth_of_a_fronto_parallel_plane():
    """Identity features (the images): a neighbour sees a textured plane at 2 m; sampled at the
    2 m bin, it gives back the keyframe image, and not at other bins."""
    height, width = 48, 64
    intrinsics = torch.tensor([[50.0, 50.0, 31.5, 23.5]])
    keyframe = smooth_texture(height, width)
    # neighbour 0.2 m to the right and a little rotated; the plane at depth 2 in the keyframe
    neighbour_pose = SE3.exp(torch.tensor([[-0.2, 0.05, 0.0, 0.01, -0.02, 0.0]]))
    T_0j = SE3.identity(1) * neighbour_pose.inv()  # neighbour -> keyframe
    # render the neighbour: each of its pixels looks up the keyframe texture on the plane
    plane_in_neighbour = _plane_depth_in_camera(neighbour_pose, intrinsics, height, width, plane_depth=2.0)
    neighbour, _ = warp(keyframe, plane_in_neighbour, T_0j, intrinsics)
    poses = SE3(torch.stack([SE3.identity(1).data, neighbour_pose.data], dim=1))
    bins = torch.tensor([1.0, 1.5, 2.0, 2.5, 3.5])
    warped, valid = plane_sweep(neighbour[:, None], neighbour_transforms(poses), intrinsics, bins)
    inner = valid[0, 0, 2].clone()
    inner[:6], inner[-6:], inner[:, :6], inner[:, -6:] = False, False, False, False
    errors = [(warped[0, 0, :, d] - keyframe[0]).abs().mean(0)[inner].mean().item() for d in range(len(bins))]
    assert errors[2] < 0.01
    assert min(errors[:2] + errors[3:]) > 4 * errors[2]


def _plane_depth_in_camera(
    world_to_camera: SE3, intrinsics: torch.Tensor, height: int, width: int, plane_depth: float
) -> torch.Tensor:
    """(1, H, W) depth, in the camera ``world_to_camera``, of the world plane z = plane_depth
    (the keyframe is the world frame)."""
    rays = backproject(torch.ones(1, height, width), intrinsics)  # camera frame, z = 1
    camera_to_world = world_to_camera.inv()
    origin = camera_to_world.translation()[0]
    directions = (camera_to_world.rotation()[0] @ rays.reshape(-1, 3).T).T  # world frame
    scale = (plane_depth - origin[2]) / directions[:, 2]
    return scale.reshape(1, height, width)


def test_cost_volume_on_rendered_frames_prefers_the_true_depth():
    images, poses, intrinsics, depth = synthetic_clip([3], height=96, width=128)
    bins = depth_bins(0.5, 8.0, 96, "log")
    warped, valid = plane_sweep(images[:, 1:], neighbour_transforms(poses), intrinsics, bins)
    gt = torch.from_numpy(depth)
    true_bin = (torch.log(gt / bins[0]) / torch.log(bins[1] / bins[0])).round().long().clamp(0, len(bins) - 1)
    errors = (warped[0, 0] - images[0, 0][:, None]).abs().mean(0)  # (D, H, W)
    seen = valid[0, 0].gather(0, true_bin[None])[0]
    at_truth = errors.gather(0, true_bin[None])[0][seen]
    assert at_truth.median() < 0.01  # measured 0.0033
    for offset in (-16, 16):  # a factor of about 1.6 in depth
        wrong = errors.gather(0, (true_bin + offset).clamp(0, len(bins) - 1)[None])[0][seen]
        assert wrong.median() > 2.5 * at_truth.median()  # measured 3.6x and 5.2x
        assert (at_truth < wrong).float().mean() > 0.7  # measured 0.78 and 0.82 (flat walls match anywhere)


def test_soft_argmax_and_confidence():
    bins = torch.tensor([1.0, 2.0, 3.0, 4.0])
    sharp = torch.tensor([-50.0, 50.0, -50.0, -50.0]).view(1, 4, 1, 1)
    flat = torch.zeros(1, 4, 1, 1)
    depth, prob = expected_depth(sharp, bins)
    assert depth.item() == pytest.approx(2.0) and entropy_confidence(prob).item() == pytest.approx(1.0, abs=1e-4)
    depth, prob = expected_depth(flat, bins)
    assert depth.item() == pytest.approx(2.5) and entropy_confidence(prob).item() == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- learned depth module


def small(config: DepthNetConfig) -> DepthNetConfig:
    """The same architecture at a tiny internal resolution (64 x 96 -> 16 x 24 features)."""
    return replace(config, input_size=(64, 96))


@pytest.mark.parametrize("size", ["lite", "paper"])
def test_learned_depth_module_runs_end_to_end(size):
    config = small(getattr(DepthNetConfig, size)())
    module = LearnedDepthModule(config).eval()
    images = torch.rand(2, 3, 3, 60, 80)
    intrinsics = torch.tensor([[70.0, 70.0, 39.5, 29.5]]).expand(2, 4)
    with torch.no_grad():
        features = module.encode(images)
        estimate = module.depth(features, random_poses(2, 3), intrinsics, (60, 80))
    assert features.shape == (2, 3, config.feature_channels, 16, 24)
    assert estimate.depth.shape == (2, 60, 80) and estimate.confidence.shape == (2, 60, 80)
    assert len(estimate.head_depths) == config.volume_hourglasses
    assert torch.equal(estimate.head_depths[-1], estimate.depth)
    assert all(logits.shape == (2, config.depth_bins, 16, 24) for logits in estimate.head_logits)
    assert estimate.depth.min() >= config.min_depth - 1e-4 and estimate.depth.max() <= config.max_depth + 1e-4
    assert estimate.confidence.min() >= 0 and estimate.confidence.max() <= 1


def test_learned_depth_gradients_reach_every_parameter():
    torch.manual_seed(0)
    module = LearnedDepthModule(small(DepthNetConfig.lite()))
    images = torch.rand(1, 3, 3, 64, 96)
    intrinsics = torch.tensor([[80.0, 80.0, 47.5, 31.5]])
    estimate = module.depth(module.encode(images), random_poses(1, 3, scale=0.1), intrinsics, (64, 96))
    loss = sum(head.mean() for head in estimate.head_depths)
    loss.backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient reaches {missing}"


def test_learned_depth_module_rejects_bad_input():
    with pytest.raises(ValueError, match="multiples of 16"):
        DepthNetConfig(input_size=(100, 128))
    with pytest.raises(ValueError, match="multiple of 4"):
        DepthNetConfig(depth_bins=30)
    module = LearnedDepthModule(small(DepthNetConfig.lite()))
    features = module.encode(torch.rand(1, 1, 3, 64, 96))
    with pytest.raises(V2DError, match="at least one neighbour"):
        module.depth(features, random_poses(1, 1), torch.tensor([[80.0, 80.0, 47.5, 31.5]]), (64, 96))


def test_depth_range_for_driving():
    config = DepthNetConfig.lite().with_depth_range(1.0, 80.0)
    bins = LearnedDepthModule(config).bins
    assert bins[0].item() == pytest.approx(1.0) and bins[-1].item() == pytest.approx(80.0)


# ------------------------------------------------------------------------- classical depth module


@pytest.fixture(scope="module")
def room_clip():
    return synthetic_clip([-3, 3, -6, 6], height=240, width=320)


@pytest.mark.parametrize("device", DEVICES)
def test_classical_depth_recovers_a_synthetic_room(room_clip, device):
    images, poses, intrinsics, depth = room_clip
    module = ClassicalDepthModule()
    estimate = module.depth(module.encode(images.to(device)), poses.to(device), intrinsics.to(device), (240, 320))
    predicted = estimate.depth[0].cpu().numpy()
    metrics = depth_metrics(predicted, depth, max_depth=10.0)
    # measured: abs rel 0.040, delta1 0.978 (seed 0, keyframe 12)
    assert metrics["abs_rel"] < 0.10
    assert metrics["delta1"] > 0.90
    # the confident half of the pixels is more accurate than all of them
    confidence = estimate.confidence[0].cpu().numpy()
    confident = confidence >= np.median(confidence)
    confident_metrics = depth_metrics(np.where(confident, predicted, 0), np.where(confident, depth, 0), max_depth=10.0)
    assert confident_metrics["abs_rel"] < 0.8 * metrics["abs_rel"]


def test_classical_depth_shapes_for_a_batch():
    module = ClassicalDepthModule(ClassicalDepthConfig(input_size=(48, 64)))
    images = torch.rand(2, 3, 3, 60, 80)
    intrinsics = torch.tensor([[70.0, 70.0, 39.5, 29.5]]).expand(2, 4)
    features = module.encode(images)
    estimate = module.depth(features, random_poses(2, 3), intrinsics, (60, 80))
    assert features.shape == (2, 3, 1, 24, 32)
    assert estimate.depth.shape == (2, 60, 80) and estimate.confidence.shape == (2, 60, 80)
    assert estimate.head_depths == [estimate.depth]
    assert estimate.confidence.min() >= 0 and estimate.confidence.max() <= 1


def test_neighbour_aggregation_ignores_unseen_neighbours():
    cost = torch.tensor([0.1, 0.9, 0.2, 0.0]).view(1, 4, 1, 1, 1)
    valid = torch.tensor([True, True, True, False]).view(1, 4, 1, 1, 1)
    mean, seen = aggregate_neighbours(cost, valid, "mean")
    best, _ = aggregate_neighbours(cost, valid, "best_half")
    assert mean.item() == pytest.approx(0.4) and best.item() == pytest.approx(0.15) and seen.item()
    unseen, seen = aggregate_neighbours(cost, torch.zeros_like(valid), "mean")
    assert unseen.item() == 1.0 and not seen.item()


def test_semi_global_pass_overrules_an_isolated_wrong_minimum():
    bins = torch.arange(32.0).view(1, 32, 1, 1)
    cost = ((bins - 5).abs() / 32).expand(1, 32, 9, 9).clone()  # every pixel prefers bin 5
    cost[0, :, 4, 4] = 0.5
    cost[0, 20, 4, 4] = 0.0  # except a lone pixel, at bin 20
    filtered = semi_global(cost, torch.zeros(1, 9, 9), penalties=(0.1, 1.0), edge=0.05)
    assert cost[0, :, 4, 4].argmin() == 20
    assert filtered[0, :, 4, 4].argmin() == 5
    assert torch.all(filtered.argmin(dim=1) == 5)


def test_classical_depth_is_invalid_where_no_neighbour_sees():
    images = torch.rand(1, 3, 3, 48, 64)
    intrinsics = torch.tensor([[60.0, 60.0, 31.5, 23.5]])
    # both neighbours turned half a turn around the vertical axis: the keyframe's view is behind them
    behind = SE3.exp(torch.tensor([0.0, 0.0, 0.0, 0.0, math.pi, 0.0]))
    poses = SE3(torch.stack([SE3.identity().data, behind.data, behind.data])[None])
    module = ClassicalDepthModule(ClassicalDepthConfig(input_size=(48, 64)))
    estimate = module.depth(module.encode(images), poses, intrinsics, (48, 64))
    assert torch.all(estimate.depth == 0) and torch.all(estimate.confidence == 0)


def test_classical_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="multiples of the stride"):
        ClassicalDepthConfig(input_size=(241, 320))
    with pytest.raises(ValueError, match="odd"):
        ClassicalDepthConfig(window=4)
    with pytest.raises(ValueError, match="SGM penalties"):
        ClassicalDepthConfig(sgm_penalties=(1.0, 0.5))
