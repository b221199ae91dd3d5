"""Projection, backprojection, reprojection Jacobians (against finite differences) and warping."""

from __future__ import annotations

import pytest
import torch

from slam.geometry.lie import SE3
from slam.geometry.projection import (
    _projected_pose_jacobian,
    backproject,
    project,
    reproject,
    sample,
    warp,
)

INTRINSICS = torch.tensor([[60.0, 58.0, 31.5, 23.5]])


def smooth_depth(batch: int, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    v, u = torch.meshgrid(
        torch.linspace(0, 1, height, dtype=dtype), torch.linspace(0, 1, width, dtype=dtype), indexing="ij"
    )
    base = 2.0 + 0.5 * torch.sin(3 * u) + 0.3 * v
    return base.expand(batch, height, width).clone()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_project_backproject_round_trip(dtype):
    depth = smooth_depth(2, 12, 16, dtype)
    intrinsics = INTRINSICS.to(dtype).expand(2, 4)
    points = backproject(depth, intrinsics)
    uv = project(points, intrinsics)
    v, u = torch.meshgrid(torch.arange(12, dtype=dtype), torch.arange(16, dtype=dtype), indexing="ij")
    assert torch.allclose(uv[..., 0], u.expand(2, -1, -1), atol=1e-4)
    assert torch.allclose(uv[..., 1], v.expand(2, -1, -1), atol=1e-4)
    assert torch.allclose(points[..., 2], depth)


def test_projection_of_known_point():
    uv = project(torch.tensor([[0.5, -0.25, 2.0]]), INTRINSICS)
    assert torch.allclose(uv, torch.tensor([[60 * 0.25 + 31.5, 58 * -0.125 + 23.5]]))


def test_projection_jacobian_matches_finite_differences():
    """The translation columns of the projected pose Jacobian are d pi / d X (a translation
    moves the point by itself)."""
    points = torch.tensor([[[[0.3, -0.2, 1.7], [-1.0, 0.4, 3.0]]]], dtype=torch.float64)  # (1, 1, 2, 3)
    intrinsics = INTRINSICS.to(torch.float64).view(1, 4)
    jac = _projected_pose_jacobian(points, intrinsics)[0, 0, ..., :3]
    numeric = torch.autograd.functional.jacobian(lambda p: project(p, intrinsics, extra_dims=2)[0, 0].sum(0), points)
    assert torch.allclose(jac, numeric[..., 0, 0, :, :].permute(1, 0, 2), atol=1e-9)


def test_reprojection_jacobians_match_finite_differences():
    dtype = torch.float64
    depth = smooth_depth(1, 6, 8, dtype)
    intrinsics = torch.tensor([[20.0, 19.0, 3.5, 2.5]], dtype=dtype)
    T = SE3.exp(torch.tensor([[0.1, -0.05, 0.2, 0.02, -0.03, 0.05]], dtype=dtype))
    coords, valid, J_pose, J_depth = reproject(depth, T, intrinsics, with_jacobians=True)
    assert valid.all()

    def coords_of_perturbation(xi):
        return reproject(depth, T.retr(xi[None]), intrinsics)[0][0]

    numeric_pose = torch.autograd.functional.jacobian(coords_of_perturbation, torch.zeros(6, dtype=dtype))
    assert torch.allclose(J_pose[0], numeric_pose, atol=1e-7)

    eps = 1e-6
    up = reproject(depth + eps, T, intrinsics)[0]
    down = reproject(depth - eps, T, intrinsics)[0]
    assert torch.allclose(J_depth, (up - down) / (2 * eps), atol=1e-6)


def test_reprojection_with_identity_is_identity_and_known_translation_shifts():
    depth = torch.full((1, 8, 10), 2.0)
    coords, valid, _, _ = reproject(depth, SE3.identity(1), INTRINSICS)
    uv = torch.stack(torch.meshgrid(torch.arange(8.0), torch.arange(10.0), indexing="ij")[::-1], dim=-1)
    assert valid.all() and torch.allclose(coords[0], uv, atol=1e-5)
    # Camera j sits 0.1 m to the right of camera i: points move 0.1 m left, fx * 0.1 / 2 pixels.
    T_ji = SE3(torch.tensor([[-0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]))
    coords, _, _, _ = reproject(depth, T_ji, INTRINSICS)
    assert torch.allclose(coords[0, ..., 0], uv[..., 0] - 60.0 * 0.1 / 2.0, atol=1e-5)


def test_points_behind_camera_are_invalid():
    depth = torch.full((1, 4, 4), 1.0)
    T_ji = SE3(torch.tensor([[0.0, 0.0, -2.0, 0.0, 0.0, 0.0, 1.0]]))  # moves points behind camera j
    _, valid, _, _ = reproject(depth, T_ji, INTRINSICS)
    assert not valid.any()


def test_sample_is_exact_on_pixel_centres_and_bilinear_between():
    features = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(1, 2, 3, 4)
    coords = torch.tensor([[[[0.0, 0.0], [3.0, 2.0], [1.5, 0.5]]]], dtype=torch.float64)
    out = sample(features, coords)
    assert out.shape == (1, 2, 1, 3)
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 0, 1] == 11
    assert torch.isclose(out[0, 0, 0, 2], torch.tensor((1 + 2 + 5 + 6) / 4, dtype=torch.float64))


def test_warp_recovers_image_under_pure_translation_of_a_plane():
    # A fronto-parallel textured plane seen from two cameras related by a pure x translation.
    height, width, depth_value, baseline = 24, 32, 2.0, 0.2
    intrinsics = torch.tensor([[30.0, 30.0, 15.5, 11.5]])
    shift = 30.0 * baseline / depth_value  # 3 pixels
    u = torch.arange(width, dtype=torch.float32)

    def texture(x):
        return torch.sin(0.7 * x) + 0.3 * torch.cos(0.23 * x)

    image_i = texture(u).expand(height, width)[None, None]
    image_j = texture(u + shift).expand(height, width)[None, None]
    T_ji = SE3(torch.tensor([[-baseline, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]))
    warped, mask = warp(image_j, torch.full((1, height, width), depth_value), T_ji, intrinsics)
    # pixels u < 3 land left of camera j's image
    assert mask[0, :, 3:].all() and not mask[0, :, :3].any()
    assert torch.allclose(warped[0, 0][mask[0]], image_i[0, 0][mask[0]], atol=1e-4)


def test_gradcheck_reprojection_wrt_depth_and_pose():
    dtype = torch.float64
    depth = smooth_depth(1, 3, 4, dtype).requires_grad_()
    xi = (0.05 * torch.randn(1, 6, dtype=dtype)).requires_grad_()
    intrinsics = torch.tensor([[10.0, 10.0, 1.5, 1.0]], dtype=dtype)
    assert torch.autograd.gradcheck(lambda d, x: reproject(d, SE3.exp(x), intrinsics)[0], (depth, xi))
