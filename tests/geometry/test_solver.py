"""The LS-optimization layer: recovers known poses from exact correspondences, holds fixed poses,
survives degenerate systems, and is differentiable (gradcheck in float64). The dense bundle
adjustment recovers poses and depths together; pooled correspondences stay consistent."""

from __future__ import annotations

import pytest
import torch

from slam.geometry.lie import SE3
from slam.geometry.projection import project, reproject
from slam.geometry.solver import (
    all_pairs_edges,
    bundle_adjustment_step,
    gauss_newton_step,
    keyframe_edges,
    pool_correspondences,
    relative_pose_step,
)

HEIGHT, WIDTH = 12, 16
INTRINSICS = torch.tensor([[14.0, 14.0, 7.5, 5.5]], dtype=torch.float64)


def scene_depths(num_frames: int, dtype=torch.float64) -> torch.Tensor:
    """A slanted, bumpy surface seen by every frame: (1, N, H, W) depths between 1.5 and 3.5 m."""
    v, u = torch.meshgrid(
        torch.linspace(0, 1, HEIGHT, dtype=dtype), torch.linspace(0, 1, WIDTH, dtype=dtype), indexing="ij"
    )
    depth = 2.0 + 0.8 * u - 0.4 * v + 0.3 * torch.sin(6 * u) * torch.cos(5 * v)
    return depth.expand(1, num_frames, HEIGHT, WIDTH).clone()


def true_poses(num_frames: int, seed: int = 0, dtype=torch.float64) -> SE3:
    """World-to-camera poses: the first is identity, the others small motions."""
    xi = 0.05 * torch.randn(1, num_frames, 6, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    xi[:, 0] = 0
    return SE3.exp(xi)


def exact_targets(poses: SE3, depths: torch.Tensor, ii: torch.Tensor, jj: torch.Tensor) -> torch.Tensor:
    """Where each pixel of ii[e] lands in jj[e] under the given poses: (1, E, H, W, 2)."""
    T_ji = poses[:, jj] * poses[:, ii].inv()
    coords, _, _, _ = reproject(depths[0, ii], T_ji.view(-1), INTRINSICS.expand(len(ii), 4))
    return coords.unsqueeze(0)


def with_outliers(targets: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``targets`` with a fifth of them (pseudo-random) moved by 5 pixels along u and v, and the
    (1, E, H, W) bool mask of those outliers."""
    outliers = torch.rand(targets.shape[:-1], generator=torch.Generator().manual_seed(seed)) < 0.2
    return targets + 5.0 * outliers.unsqueeze(-1), outliers


def pose_error(a: SE3, b: SE3) -> torch.Tensor:
    return (a * b.inv()).log().norm(dim=-1)


@pytest.mark.parametrize("mode", ["keyframe", "global"])
def test_recovers_known_poses_from_exact_correspondences(mode):
    num_frames = 4
    truth = true_poses(num_frames)
    depths = scene_depths(num_frames)
    ii, jj = keyframe_edges(num_frames) if mode == "keyframe" else all_pairs_edges(num_frames)
    targets = exact_targets(truth, depths, ii, jj)
    weights = torch.ones_like(targets)
    noise = 0.01 * torch.randn(1, num_frames, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    noise[:, 0] = 0
    poses = truth.retr(noise)
    start = pose_error(poses, truth)[0, 1:].max()
    for _ in range(2):
        poses = gauss_newton_step(poses, depths, INTRINSICS, ii, jj, targets, weights)
    assert start > 0.01
    assert pose_error(poses, truth)[0, 1:].max() < 1e-4
    assert torch.equal(poses.data[:, 0], truth.data[:, 0])  # the fixed keyframe does not move


def test_keyframe_mode_solves_each_frame_on_its_own():
    """Keyframe edges give block-diagonal normal equations: corrupting frame 2's targets must not
    move frame 1's solution."""
    num_frames = 3
    truth, depths = true_poses(num_frames, seed=1), scene_depths(num_frames)
    ii, jj = keyframe_edges(num_frames)
    targets = exact_targets(truth, depths, ii, jj)
    start = truth.retr(torch.cat([torch.zeros(1, 1, 6), 0.02 * torch.ones(1, 2, 6)], dim=1).double())
    clean = gauss_newton_step(start, depths, INTRINSICS, ii, jj, targets, torch.ones_like(targets))
    corrupted_targets = targets.clone()
    corrupted_targets[:, 1] += 3.0
    corrupted = gauss_newton_step(start, depths, INTRINSICS, ii, jj, corrupted_targets, torch.ones_like(targets))
    assert torch.allclose(clean.data[:, 1], corrupted.data[:, 1], atol=1e-12)
    assert not torch.allclose(clean.data[:, 2], corrupted.data[:, 2], atol=1e-3)


def test_relative_pose_step_is_the_keyframe_step_of_one_frame_against_a_fixed_one():
    """Tracking's step (the relative pose alone, no stacked system) takes the pose where the
    keyframe-mode step takes the frame, whatever the fixed keyframe's pose, and recovers the
    true relative pose; a system with no weight leaves the pose as it was."""
    truth, depths = true_poses(2, seed=3), scene_depths(2)
    keyframe = SE3.exp(torch.tensor([[0.3, -0.2, 0.5, 0.1, 0.2, -0.3]], dtype=torch.float64))
    truth = SE3(torch.cat([keyframe.data, (truth[:, 1] * keyframe).data]).view(1, 2, 7))
    ii, jj = keyframe_edges(2)
    targets = exact_targets(truth, depths, ii, jj)
    weights = torch.rand(targets.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    start = truth.retr(torch.cat([torch.zeros(1, 1, 6), 0.02 * torch.ones(1, 1, 6)], dim=1).double())
    stacked = gauss_newton_step(start, depths, INTRINSICS, ii, jj, targets, weights)
    relative = relative_pose_step(
        start[0, 1] * start[0, 0].inv(), depths[0, 0], INTRINSICS[0], targets[0, 0], weights[0, 0]
    )
    assert torch.allclose((stacked[0, 1] * stacked[0, 0].inv()).data, relative.data, atol=1e-9)
    for _ in range(2):
        relative = relative_pose_step(relative, depths[0, 0], INTRINSICS[0], targets[0, 0], weights[0, 0])
    assert pose_error(relative, truth[0, 1] * truth[0, 0].inv()) < 1e-6
    unweighted = relative_pose_step(
        start[0, 1], depths[0, 0], INTRINSICS[0], targets[0, 0], torch.zeros_like(weights[0, 0])
    )
    assert torch.allclose(unweighted.data, start.data[0, 1])


def test_global_mode_holds_several_fixed_poses():
    num_frames = 4
    truth, depths = true_poses(num_frames, seed=2), scene_depths(num_frames)
    ii, jj = all_pairs_edges(num_frames)
    targets = exact_targets(truth, depths, ii, jj)
    start = truth.retr(0.02 * torch.ones(1, num_frames, 6, dtype=torch.float64))
    out = gauss_newton_step(start, depths, INTRINSICS, ii, jj, targets, torch.ones_like(targets), num_fixed=2)
    assert torch.equal(out.data[:, :2], start.data[:, :2])
    assert not torch.allclose(out.data[:, 2:], start.data[:, 2:])


def test_zero_weights_give_no_update_and_no_nan():
    num_frames = 3
    truth, depths = true_poses(num_frames, seed=3), scene_depths(num_frames)
    ii, jj = keyframe_edges(num_frames)
    targets = exact_targets(truth, depths, ii, jj)
    out = gauss_newton_step(truth, depths, INTRINSICS, ii, jj, targets + 1.0, torch.zeros_like(targets), epsilon=0.0)
    assert torch.isfinite(out.data).all()
    assert torch.allclose(out.data, truth.data)


def test_weights_downweight_outliers():
    num_frames = 2
    truth, depths = true_poses(num_frames, seed=4), scene_depths(num_frames)
    ii, jj = keyframe_edges(num_frames)
    targets = exact_targets(truth, depths, ii, jj)
    corrupted, outliers = with_outliers(targets, seed=0)
    weights = (~outliers).unsqueeze(-1).double().expand_as(targets)
    start = truth.retr(torch.tensor([[[0.0] * 6, [0.02, -0.01, 0.01, 0.01, 0.0, -0.01]]], dtype=torch.float64))
    robust = gauss_newton_step(
        gauss_newton_step(start, depths, INTRINSICS, ii, jj, corrupted, weights),
        depths,
        INTRINSICS,
        ii,
        jj,
        corrupted,
        weights,
    )
    naive = gauss_newton_step(start, depths, INTRINSICS, ii, jj, corrupted, torch.ones_like(targets))
    assert pose_error(robust, truth)[0, 1] < 1e-4
    assert pose_error(naive, truth)[0, 1] > 1e-2


def test_gradcheck_through_targets_weights_depth_and_poses():
    height, width = 3, 4
    intrinsics = torch.tensor([[4.0, 4.0, 1.5, 1.0]], dtype=torch.float64)
    depths = 2.0 + torch.rand(1, 2, height, width, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ii, jj = keyframe_edges(2)
    base = SE3.exp(torch.tensor([[[0.0] * 6, [0.05, -0.02, 0.01, 0.02, 0.01, -0.03]]], dtype=torch.float64))
    targets = exact_targets_small(base, depths, ii, jj, intrinsics) + 0.1
    weights = 0.5 + torch.rand(1, 1, height, width, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    xi = torch.zeros(1, 2, 6, dtype=torch.float64)

    def step(targets, weights, depths, xi):
        return gauss_newton_step(base.retr(xi), depths, intrinsics, ii, jj, targets, weights).matrix()

    inputs = tuple(t.clone().requires_grad_() for t in (targets, weights, depths, xi))
    assert torch.autograd.gradcheck(step, inputs, atol=1e-6)


def exact_targets_small(poses: SE3, depths: torch.Tensor, ii, jj, intrinsics) -> torch.Tensor:
    T_ji = poses[:, jj] * poses[:, ii].inv()
    return reproject(depths[0, ii], T_ji.view(-1), intrinsics.expand(len(ii), 4))[0].unsqueeze(0)


def test_batched_float32():
    num_frames = 3
    truth = SE3(torch.cat([true_poses(num_frames, seed=s).data for s in (6, 7)]).float())
    depths = scene_depths(num_frames, torch.float32).expand(2, -1, -1, -1)
    ii, jj = all_pairs_edges(num_frames)
    T_ji = truth[:, jj] * truth[:, ii].inv()
    coords, _, _, _ = reproject(
        depths[:, ii].reshape(-1, HEIGHT, WIDTH), T_ji.view(-1), INTRINSICS.float().expand(2 * len(ii), 4)
    )
    targets = coords.view(2, len(ii), HEIGHT, WIDTH, 2)
    perturbation = 0.02 * torch.ones(2, num_frames, 6)
    perturbation[:, 0] = 0  # the fixed frame sets the gauge
    poses = truth.retr(perturbation)
    for _ in range(3):
        poses = gauss_newton_step(
            poses, depths, INTRINSICS.float().expand(2, 4), ii, jj, targets, torch.ones_like(targets)
        )
    assert pose_error(poses, truth)[:, 1:].max() < 1e-3


def test_bundle_adjustment_recovers_poses_and_depths_where_fixed_depth_cannot():
    """Exact correspondences, poses perturbed and depths off by up to 40%: the joint step brings
    both back (depth up to the monocular scale, which the weak prior holds near the start);
    pose-only Gauss-Newton on the wrong depths stays wrong."""
    count = 4
    truth, depths = true_poses(count), scene_depths(count)
    ii, jj = all_pairs_edges(count)
    targets = exact_targets(truth, depths, ii, jj)
    weights = torch.ones_like(targets)
    noise = torch.rand(depths.shape, generator=torch.Generator().manual_seed(1), dtype=depths.dtype)
    wrong_depths = depths * (0.7 + 0.6 * noise)
    start = (
        SE3.exp(0.01 * torch.randn(1, count, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
        * truth
    )
    start = SE3(torch.cat([truth.data[:, :1], start.data[:, 1:]], dim=1))
    poses, estimate = start, wrong_depths
    for _ in range(6):
        poses, estimate, _ = bundle_adjustment_step(
            poses, estimate, INTRINSICS, ii, jj, targets, weights, wrong_depths, prior_weight=1e-4
        )
    scale = (estimate / depths).median()
    assert ((estimate / scale - depths).abs() / depths).max() < 1e-3
    rescaled = poses.data.clone()
    rescaled[..., :3] /= scale  # world-to-camera translations scale with the map
    assert pose_error(SE3(rescaled), truth)[0, 1:].max() < 1e-4
    pose_only = start
    for _ in range(6):
        pose_only = gauss_newton_step(pose_only, wrong_depths, INTRINSICS, ii, jj, targets, weights)
    assert pose_error(pose_only, truth)[0, 1:].max() > 1e-2


def test_bundle_adjustment_prior_holds_unobserved_depths():
    """Pixels with zero weight in every edge keep the prior's depth; nothing is NaN."""
    count = 3
    truth, depths = true_poses(count), scene_depths(count)
    ii, jj = all_pairs_edges(count)
    targets = exact_targets(truth, depths, ii, jj)
    prior = 1.5 * depths
    poses, estimate, information = bundle_adjustment_step(
        truth, prior, INTRINSICS, ii, jj, targets, torch.zeros_like(targets), prior, prior_weight=1.0
    )
    assert torch.allclose(estimate, prior) and torch.allclose(poses.data, truth.data)
    assert torch.equal(information, torch.zeros_like(information))  # no edge sees any pixel


def test_bundle_adjustment_information_is_what_the_views_know_of_each_relative_depth():
    """The information of a pixel is sum_e w |d x / d log z|^2 over the edges leaving its frame
    (finite differences of the reprojection); zero for a frame no edge leaves and for a turn on
    the spot (no parallax), four times larger for twice the baseline."""
    depths = scene_depths(3)
    ii, jj = torch.tensor([0, 0]), torch.tensor([1, 2])  # no edge leaves frames 1 and 2

    def information(translation: float, rotation: float = 0.0) -> torch.Tensor:
        xi = torch.zeros(1, 3, 6, dtype=torch.float64)
        xi[0, 1, 0], xi[0, 2, 1], xi[0, 1:, 4] = translation, -translation, rotation
        poses = SE3.exp(xi)
        targets = exact_targets(poses, depths, ii, jj)
        weights = torch.full_like(targets, 0.5)
        _, _, found = bundle_adjustment_step(poses, depths, INTRINSICS, ii, jj, targets, weights, depths, 1.0)
        return found[0]

    step = 1e-6  # relative change of the inverse depth
    xi = torch.zeros(1, 3, 6, dtype=torch.float64)
    xi[0, 1, 0], xi[0, 2, 1] = 0.1, -0.1
    T_ji = SE3.exp(xi)[:, jj] * SE3.exp(xi)[:, ii].inv()
    moved = [
        reproject(d.expand(2, -1, -1), T_ji.view(-1), INTRINSICS.expand(2, 4))[0]
        for d in (depths[0, 0], depths[0, 0] / (1 + step))
    ]
    expected = 0.5 * ((moved[1] - moved[0]) / step).square().sum(dim=(0, -1))
    found = information(0.1)
    assert torch.allclose(found[0], expected, rtol=1e-4)
    assert found[1:].abs().max() == 0
    assert torch.allclose(information(0.2)[0], 4 * found[0], rtol=0.05)
    assert information(0.0, rotation=0.05)[0].abs().max() < 1e-12


def test_pooled_correspondences_match_projection_with_pooled_intrinsics():
    """Targets that are a pinhole projection stay one on the coarse grid: mapping fine pixels to
    coarse ones equals projecting with the coarse intrinsics. Weighted means ignore zero weights."""
    points = torch.randn(1, 2, 4, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    points[..., 2] = points[..., 2].abs() + 2.0
    fine = project(points, INTRINSICS[:, None, None, None].expand(1, 2, 4, 6, 4), extra_dims=0)
    weights = torch.ones_like(fine)
    targets, pooled_weights, coarse = pool_correspondences(fine, weights, INTRINSICS, 2)
    assert targets.shape == (1, 2, 2, 3, 2) and torch.allclose(pooled_weights, torch.ones_like(pooled_weights))
    mapped_each = (fine + 0.5) / 2 - 0.5
    assert torch.allclose(project(points, coarse[:, None, None, None].expand(1, 2, 4, 6, 4), extra_dims=0), mapped_each)
    assert torch.allclose(targets, mapped_each.unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2)).permute(0, 1, 2, 3, 4))
    weights[:, :, 0::2, 0::2] = 0  # one pixel of each block has no say
    kept, _, _ = pool_correspondences(fine, weights, INTRINSICS, 2)
    expected = (mapped_each * weights).unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2)) / 3
    assert torch.allclose(kept, expected)
    with pytest.raises(ValueError, match="does not pool"):
        pool_correspondences(fine[:, :, :3], weights[:, :, :3], INTRINSICS, 2)


def test_huber_data_term_resists_outliers_the_confidences_missed():
    """A fifth of the correspondences are wrong by 5 pixels with full confidence: the bundle
    adjustment with the Huber term (reweighted each step) lands near the true poses, the plain
    least squares far from them."""
    count = 3
    truth, depths = true_poses(count, seed=5), scene_depths(count)
    ii, jj = all_pairs_edges(count)
    targets = exact_targets(truth, depths, ii, jj)
    corrupted, _ = with_outliers(targets, seed=3)
    weights = torch.ones_like(targets)
    start = SE3(
        torch.cat(
            [truth.data[:, :1], (SE3.exp(0.01 * torch.ones(1, count - 1, 6, dtype=torch.float64)) * truth[:, 1:]).data],
            dim=1,
        )
    )

    def solve(huber):
        poses, estimate = start, depths
        for _ in range(8):
            poses, estimate, _ = bundle_adjustment_step(
                poses, estimate, INTRINSICS, ii, jj, corrupted, weights, depths, prior_weight=10.0, huber=huber
            )
        return pose_error(poses, truth)[0, 1:].max()

    robust, plain = solve(0.5), solve(None)
    assert robust < 0.05 * plain and robust < 0.03, (robust, plain)


def test_window_edges_can_be_limited_to_near_keyframes():
    ii, jj = all_pairs_edges(5, max_span=2)
    assert len(ii) == 14 and bool(((ii - jj).abs() <= 2).all()) and bool((ii != jj).all())
    assert len(all_pairs_edges(5)[0]) == 20 and len(all_pairs_edges(5, max_span=4)[0]) == 20


def test_bundle_adjustment_on_a_long_sparse_graph(monkeypatch):
    """A chain of 40 frames (edges to the next two, both ways) closed by a loop edge between the
    first and the last: the sparse Schur complement, taken a few frames at a time, recovers the
    poses and depths as on a small window, and gives what one pass over all frames gives."""
    import slam.geometry.solver as solver

    count = 40
    xi = 0.01 * torch.randn(1, count, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    xi[:, 0] = 0
    truth, depths = SE3.exp(xi), scene_depths(count)
    ii, jj = all_pairs_edges(count, max_span=2)
    ii, jj = torch.cat([ii, torch.tensor([0, count - 1])]), torch.cat([jj, torch.tensor([count - 1, 0])])
    targets = exact_targets(truth, depths, ii, jj)
    weights = torch.ones_like(targets)
    start = SE3.exp(0.003 * torch.randn(1, count, 6, generator=torch.Generator().manual_seed(8), dtype=torch.float64))
    start = SE3(torch.cat([truth.data[:, :1], (start * truth).data[:, 1:]], dim=1))

    def solve():
        poses, estimate = start, depths
        for _ in range(12):
            poses, estimate, _ = bundle_adjustment_step(
                poses, estimate, INTRINSICS, ii, jj, targets, weights, depths, prior_weight=1.0
            )
        return poses, estimate

    monkeypatch.setattr(solver, "SCHUR_CHUNK", 3)
    poses, estimate = solve()
    assert pose_error(poses, truth)[0, 1:].max() < 1e-5
    assert ((estimate - depths).abs() / depths).max() < 1e-5
    monkeypatch.setattr(solver, "SCHUR_CHUNK", count)
    one_pass = solve()
    assert torch.allclose(one_pass[0].data, poses.data, atol=1e-10)
    assert torch.allclose(one_pass[1], estimate, atol=1e-10)
