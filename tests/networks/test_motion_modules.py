"""Motion modules (Flow-SE3): the learned network's shapes and gradients, the classical (DIS)
module's targets on synthetic frames, and pose recovery with the Gauss-Newton layer."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from networks.classical_motion import ClassicalMotionConfig, ClassicalMotionModule
from networks.flow_geometry import (
    edge_reprojection,
    feature_intrinsics,
    resize_intrinsics,
)
from networks.motion import LearnedMotionModule, MotionNetConfig
from slam.geometry.lie import SE3
from slam.geometry.projection import pixel_grid
from slam.geometry.resize import scale_intrinsics
from slam.synthetic import SyntheticSequence

IMAGE_SIZE = (240, 320)


def _random_clip(batch: int, frames: int, size: tuple[int, int] = IMAGE_SIZE, seed: int = 0):
    """Random images, world-to-camera poses near identity, and full-resolution intrinsics."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, frames, 3, *size, generator=g)
    poses = SE3.exp(0.05 * torch.randn(batch, frames, 6, generator=g))
    intrinsics = torch.tensor([0.9 * size[1], 0.9 * size[1], (size[1] - 1) / 2, (size[0] - 1) / 2]).repeat(batch, 1)
    return images, poses, intrinsics


EDGES = (torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 0, 1]))


@pytest.fixture(scope="module")
def room_pair():
    """Frames 0 and 6 of a synthetic room (about 10 cm and 4 degrees apart): images (1, 2, 3, H, W),
    frame 0's depth (H, W), true world-to-camera poses (1, 2), intrinsics (1, 4)."""
    sequence = SyntheticSequence("room", seed=0, num_frames=7)
    renders = [sequence.render(i) for i in (0, 6)]
    images = torch.from_numpy(np.stack([r[0] for r in renders])).permute(0, 3, 1, 2).float()[None] / 255.0
    poses = SE3.from_matrix(torch.from_numpy(np.linalg.inv(sequence.poses[[0, 6]])).float())[None]
    intrinsics = torch.from_numpy(np.asarray(sequence.camera.intrinsics, np.float32))[None]
    return images, torch.from_numpy(renders[0][1]), poses, intrinsics


def _depths_at(depth: torch.Tensor, size: tuple[int, int], frames: int) -> torch.Tensor:
    """(H, W) depth -> (1, frames, h, w) area-averaged copies (only frame 0's is read)."""
    small = F.interpolate(depth[None, None], size=size, mode="area")[0]
    return small[:, None].expand(1, frames, *size)


def _perturb(poses: SE3, xi: list[float]) -> SE3:
    """Left-perturb frame 1's world-to-camera pose by exp(xi)."""
    moved = SE3.exp(torch.tensor(xi)) * poses[0, 1]
    return SE3(torch.stack([poses.data[0, 0], moved.data]))[None]


def _relative_pose_errors(estimate: SE3, truth: SE3) -> tuple[float, float]:
    """Rotation error (degrees) and translation direction error (degrees) of T_10."""
    T_est, T_true = estimate[0, 1] * estimate[0, 0].inv(), truth[0, 1] * truth[0, 0].inv()
    rotation = (T_est * T_true.inv()).log()[3:].norm().item()
    a, b = T_est.translation(), T_true.translation()
    direction = torch.arccos((a @ b / (a.norm() * b.norm())).clamp(-1, 1)).item()
    return math.degrees(rotation), math.degrees(direction)


# ---------------------------------------------------------------- shared geometry


def test_feature_intrinsics_compose_resize_and_stride():
    K = torch.tensor([[500.0, 510.0, 319.5, 239.5]])
    direct = resize_intrinsics(K, (480, 640), (60, 80))
    assert torch.allclose(feature_intrinsics(K, (480, 640), (240, 320), 4), direct, atol=1e-4)
    assert torch.allclose(resize_intrinsics(K, (480, 640), (120, 160)), scale_intrinsics(K, 4), atol=1e-4)
    # a centred principal point stays centred
    assert torch.allclose(direct[0, 2:], torch.tensor([39.5, 29.5]), atol=1e-4)


# ---------------------------------------------------------------- learned module


@pytest.mark.parametrize("config", [MotionNetConfig.lite(), MotionNetConfig.paper()], ids=["lite", "paper"])
def test_learned_module_shapes(config):
    module = LearnedMotionModule(config).eval()
    images, poses, intrinsics = _random_clip(batch=2, frames=3, size=(96, 128))
    ii, jj = EDGES
    h, w = config.input_size[0] // 4, config.input_size[1] // 4
    with torch.inference_mode():
        features = module.encode(images)
        assert features.shape == (2, 3, config.feature_channels, h, w)
        depths = 1.0 + torch.rand(2, 3, h, w)
        estimate = module.flow(features, depths, poses, intrinsics, ii, jj, (96, 128))
    for name in ("targets", "weights", "residual"):
        assert getattr(estimate, name).shape == (2, 4, h, w, 2), name
    assert estimate.intrinsics.shape == (2, 4)
    assert torch.allclose(estimate.intrinsics, feature_intrinsics(intrinsics, (96, 128), config.input_size, 4))
    assert ((estimate.weights >= 0) & (estimate.weights <= 1)).all()
    coords, _ = edge_reprojection(depths, poses, estimate.intrinsics, ii, jj)
    assert torch.allclose(estimate.targets, coords + estimate.residual, atol=1e-4)


def test_learned_module_gradients_reach_every_parameter():
    module = LearnedMotionModule(MotionNetConfig.lite())
    images, poses, intrinsics = _random_clip(batch=2, frames=3)
    h, w = (s // 4 for s in module.config.input_size)
    depths = (1.0 + torch.rand(2, 3, h, w)).requires_grad_()
    estimate = module.flow(module.encode(images), depths, poses, intrinsics, *EDGES, IMAGE_SIZE)
    (estimate.targets.square().mean() + estimate.weights.mean()).backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"
    assert depths.grad is not None and depths.grad.abs().sum() > 0


def test_motion_net_config_round_trips_and_validates():
    config = MotionNetConfig.paper()
    stored = asdict(config)
    stored["input_size"] = list(stored["input_size"])  # as read back from YAML or JSON
    assert MotionNetConfig(**stored) == config
    with pytest.raises(ValueError, match="multiples of 16"):
        MotionNetConfig(input_size=(100, 128))


@pytest.mark.parametrize(
    "make_module",
    [lambda: LearnedMotionModule(MotionNetConfig.lite()).eval(), lambda: ClassicalMotionModule()],
    ids=["learned", "classical"],
)
def test_invalid_reprojections_get_zero_weight(make_module):
    module = make_module()
    images, poses, intrinsics = _random_clip(batch=1, frames=2)
    ii, jj = torch.tensor([0]), torch.tensor([1])
    with torch.inference_mode():
        features = module.encode(images)
        h, w = features.shape[-2:]
        depths = torch.full((1, 2, h, w), 2.0)
        depths[:, :, : h // 2] = 0.0  # no depth in the top half
        estimate = module.flow(features, depths, poses, intrinsics, ii, jj, IMAGE_SIZE)
        _, valid = edge_reprojection(depths, poses, estimate.intrinsics, ii, jj)
    assert (estimate.weights[:, :, : h // 2] == 0).all()
    assert (estimate.weights[~valid] == 0).all()


# ---------------------------------------------------------------- classical module


def _plane_homography(poses: SE3, K: torch.Tensor, depth: float) -> torch.Tensor:
    """3x3 map of frame 0's pixels to frame 1's for a fronto-parallel plane at ``depth`` in frame 0."""
    T = (poses[0, 1] * poses[0, 0].inv()).matrix()
    fx, fy, cx, cy = K[0].tolist()
    Km = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    plane = T[:3, :3] + T[:3, 3:] @ torch.tensor([[0.0, 0.0, 1.0 / depth]])
    return Km @ plane @ torch.linalg.inv(Km)


def _apply_homography(H: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    p = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1) @ H.T
    return p[..., :2] / p[..., 2:]


def test_classical_targets_read_the_reprojection_at_the_displaced_pixel(monkeypatch):
    """target(u) = x(u + f(u)) exactly, with f the flow from frame i to warped frame j: checked
    with a stand-in for DIS that returns the exact flows of a plane under a wrong pose."""
    module = ClassicalMotionModule()
    images, _, intrinsics = _random_clip(batch=1, frames=2)
    true_poses = SE3(torch.stack([SE3.identity().data, SE3.exp(torch.tensor([0.1, 0.0, 0.05, 0.0, 0.03, 0.0])).data]))[
        None
    ]
    wrong_poses = _perturb(true_poses, [0.0, 0.05, 0.1, 0.02, 0.0, 0.12])  # includes a 7 degree roll
    features = module.encode(images)
    h, w = features.shape[-2:]
    K = feature_intrinsics(intrinsics, IMAGE_SIZE, module.config.input_size, module.stride)
    H_true, H_wrong = _plane_homography(true_poses, K, 3.0), _plane_homography(wrong_poses, K, 3.0)
    uv = pixel_grid(h, w)
    forward = _apply_homography(torch.linalg.inv(H_wrong) @ H_true, uv) - uv
    backward = _apply_homography(torch.linalg.inv(H_true) @ H_wrong, uv) - uv
    monkeypatch.setattr(module, "_dis_flows", lambda grey_i, warped_j: (forward[None], backward[None]))
    depths = torch.full((1, 2, h, w), 3.0)
    estimate = module.flow(features, depths, wrong_poses, intrinsics, torch.tensor([0]), torch.tensor([1]), IMAGE_SIZE)
    used = estimate.weights[0, 0, ..., 0] > 0.5
    assert used.float().mean() > 0.5
    truth = _apply_homography(H_true, uv)
    start = (estimate.targets - estimate.residual)[0, 0][used] - truth[used]
    assert start.norm(dim=-1).median() > 5.0  # the wrong pose is far off
    assert (estimate.targets[0, 0][used] - truth[used]).norm(dim=-1).max() < 0.02


def test_classical_residual_vanishes_at_the_true_pose(room_pair):
    images, depth, poses, intrinsics = room_pair
    module = ClassicalMotionModule()
    features = module.encode(images)
    depths = _depths_at(depth, features.shape[-2:], 2)
    estimate = module.flow(features, depths, poses, intrinsics, torch.tensor([0]), torch.tensor([1]), IMAGE_SIZE)
    used = estimate.weights[..., 0] > 0.1
    assert used.float().mean() > 0.5
    residual = estimate.residual.norm(dim=-1)[used]
    assert residual.median() < 0.1 and residual.quantile(0.9) < 0.4


@pytest.mark.parametrize(
    "xi",
    [
        [0.03, -0.02, 0.02, 0.03, -0.035, 0.02],  # 2.8 degrees, 4 cm
        [0.0, 0.0, 0.3, 0.0, 0.0, 0.1],
    ],  # 30 cm forward, 5.7 degree roll
    ids=["general", "forward-roll"],
)
def test_classical_targets_find_the_true_reprojection_from_a_wrong_pose(room_pair, xi):
    images, depth, poses, intrinsics = room_pair
    module = ClassicalMotionModule()
    features = module.encode(images)
    depths = _depths_at(depth, features.shape[-2:], 2)
    ii, jj = torch.tensor([0]), torch.tensor([1])
    estimate = module.flow(features, depths, _perturb(poses, xi), intrinsics, ii, jj, IMAGE_SIZE)
    truth, valid = edge_reprojection(depths, poses, estimate.intrinsics, ii, jj)
    start = (estimate.targets - estimate.residual - truth).norm(dim=-1)[valid]
    assert start.median() > 4.0
    used = (estimate.weights[..., 0] > 0.1) & valid
    assert used.float().mean() > 0.3
    error = (estimate.targets - truth).norm(dim=-1)[used]
    assert error.median() < 0.5 and error.quantile(0.9) < 2.0


def test_classical_config_validates():
    with pytest.raises(ValueError, match="preset"):
        ClassicalMotionConfig(preset="slow")
    with pytest.raises(ValueError, match="multiple of the stride"):
        ClassicalMotionConfig(input_size=(242, 320), stride=4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_classical_module_accepts_cuda_tensors(room_pair):
    images, depth, poses, intrinsics = room_pair
    module = ClassicalMotionModule().to("cuda")
    features = module.encode(images.cuda())
    depths = _depths_at(depth, features.shape[-2:], 2).cuda()
    estimate = module.flow(
        features,
        depths,
        poses.to("cuda"),
        intrinsics.cuda(),
        torch.tensor([0], device="cuda"),
        torch.tensor([1], device="cuda"),
        IMAGE_SIZE,
    )
    assert estimate.targets.is_cuda and estimate.weights.is_cuda
    cpu = ClassicalMotionModule().flow(
        features.cpu(), depths.cpu(), poses, intrinsics, torch.tensor([0]), torch.tensor([1]), IMAGE_SIZE
    )
    assert (estimate.targets.cpu() - cpu.targets).abs().median() < 1e-2


def test_classical_flow_and_gauss_newton_recover_a_perturbed_pose(room_pair):
    from slam.geometry.solver import gauss_newton_step

    images, depth, poses, intrinsics = room_pair
    module = ClassicalMotionModule()
    features = module.encode(images)
    depths = _depths_at(depth, features.shape[-2:], 2)
    ii, jj = torch.tensor([0]), torch.tensor([1])
    estimate = _perturb(poses, [0.03, -0.02, 0.02, 0.03, -0.035, 0.02])
    start = _relative_pose_errors(estimate, poses)
    for _ in range(3):
        flow = module.flow(features, depths, estimate, intrinsics, ii, jj, IMAGE_SIZE)
        estimate = gauss_newton_step(estimate, depths, flow.intrinsics, ii, jj, flow.targets, flow.weights)
    rotation, direction = _relative_pose_errors(estimate, poses)
    assert start[0] > 2.5 and start[1] > 5.0
    assert rotation < 0.3 and direction < 4.0, (rotation, direction)
