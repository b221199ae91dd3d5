"""SE3 wrapper: round trips, known transforms, conventions (composition, retraction, adjoint)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from slam.geometry.lie import SE3, skew
from slam.io.trajectory import poses_to_tum


def random_se3(n: int, dtype: torch.dtype, scale: float = 1.0, seed: int = 0) -> SE3:
    generator = torch.Generator().manual_seed(seed)
    return SE3.exp(scale * torch.randn(n, 6, generator=generator, dtype=dtype))


DTYPES = [torch.float32, torch.float64]


def tol(dtype: torch.dtype) -> float:
    return 1e-4 if dtype == torch.float32 else 1e-10


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_log_round_trip(dtype):
    xi = 0.8 * torch.randn(16, 6, generator=torch.Generator().manual_seed(1), dtype=dtype)
    angle = xi[:, 3:].norm(dim=-1, keepdim=True)
    xi[:, 3:] *= torch.clamp(3.0 / angle, max=1.0)  # the log map returns angles below pi
    xi[0, 3:] = 1e-9  # near-identity rotation
    assert torch.allclose(SE3.exp(xi).log(), xi, atol=tol(dtype) * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inverse_and_composition(dtype):
    X, Y = random_se3(8, dtype, seed=1), random_se3(8, dtype, seed=2)
    identity = SE3.identity(8, dtype=dtype)
    assert torch.allclose((X * X.inv()).matrix(), identity.matrix(), atol=tol(dtype))
    assert torch.allclose((X * Y).matrix(), X.matrix() @ Y.matrix(), atol=tol(dtype))
    p = torch.randn(8, 3, dtype=dtype)
    assert torch.allclose((X * Y).act(p), X.act(Y.act(p)), atol=tol(dtype) * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matrix_round_trip(dtype):
    X = random_se3(8, dtype, seed=3)
    Y = SE3.from_matrix(X.matrix())
    assert torch.allclose(Y.matrix(), X.matrix(), atol=tol(dtype))


def test_known_transform():
    # 90 degrees about z, then translate by (1, 2, 3): x axis goes to y axis.
    xi_rot = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, math.pi / 2]], dtype=torch.float64)
    R = SE3.exp(xi_rot)
    T = SE3(torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)) * R
    p = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(T.act(p), torch.tensor([[1.0, 3.0, 3.0]], dtype=torch.float64), atol=1e-12)
    # pure translation tangent: exp([tau, 0]) translates by tau
    tau = torch.tensor([[0.5, -1.0, 2.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(SE3.exp(tau).translation(), tau[:, :3], atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_act_broadcasts_over_pixels(dtype):
    X = random_se3(2, dtype, seed=4)
    points = torch.randn(2, 5, 7, 3, dtype=dtype)
    out = X.view(2, 1, 1).act(points)
    expected = torch.einsum("bij,bhwj->bhwi", X.matrix()[:, :3, :3], points) + X.translation()[:, None, None]
    assert out.shape == (2, 5, 7, 3)
    assert torch.allclose(out, expected, atol=tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_retraction_is_left_perturbation(dtype):
    X = random_se3(4, dtype, seed=5)
    xi = 0.1 * torch.randn(4, 6, dtype=dtype)
    assert torch.allclose(X.retr(xi).matrix(), SE3.exp(xi).matrix() @ X.matrix(), atol=tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adjoint(dtype):
    X = random_se3(4, dtype, seed=6)
    xi = 0.3 * torch.randn(4, 6, dtype=dtype)
    left = (X * SE3.exp(xi)).matrix()
    right = (SE3.exp(X.adj(xi)) * X).matrix()
    assert torch.allclose(left, right, atol=tol(dtype) * 10)
    via_matrix = (X.adj_matrix() @ xi.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(via_matrix, X.adj(xi), atol=tol(dtype) * 10)


def test_tum_conversion_matches_scipy_convention():
    X = random_se3(6, torch.float64, seed=7)
    ours = X.tum().numpy()
    reference = poses_to_tum(X.matrix().numpy())
    assert np.allclose(ours, reference, atol=1e-10)
    back = SE3.from_tum(torch.from_numpy(reference))
    assert torch.allclose(back.matrix(), X.matrix(), atol=1e-10)


def test_gradients_flow_through_exp_act():
    xi = (0.2 * torch.randn(3, 6, dtype=torch.float64)).requires_grad_()
    p = torch.randn(3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: SE3.exp(a).act(p), (xi,))


def test_skew_is_cross_product():
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.allclose((skew(a) @ b.unsqueeze(-1)).squeeze(-1), torch.linalg.cross(a, b), atol=1e-6)


def test_gradients_through_composition_inverse_and_log():
    X = random_se3(2, torch.float64, seed=8)
    xi = (0.2 * torch.randn(2, 6, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: (SE3.exp(a) * X).inv().matrix(), (xi,))
    assert torch.autograd.gradcheck(lambda a: X.retr(a).log(), (xi,))


def test_long_chains_of_compositions_stay_on_the_group():
    step = SE3.exp(torch.tensor([[0.01, -0.02, 0.03, 0.02, -0.01, 0.015]]))
    pose = SE3.identity(1)
    for _ in range(500):
        pose = step * pose * SE3.exp(torch.tensor([[0.0, 0.0, 0.0, 1e-3, 0.0, 0.0]])).inv()
    assert torch.allclose(pose.data[:, 3:].norm(dim=-1), torch.ones(1), atol=1e-5)
    assert torch.allclose(SE3.from_matrix(pose.matrix()).data[:, 3:].norm(dim=-1), torch.ones(1), atol=1e-6)


def test_untracked_operations_match_pypose():
    """Without autograd, composition, inversion and matrix() take plain quaternion formulas;
    they must agree with pypose's operators (taken when gradients are recorded), broadcasting
    included."""
    torch.manual_seed(3)
    a, b = SE3.exp(torch.randn(4, 1, 6, dtype=torch.float64)), SE3.exp(torch.randn(1, 3, 6, dtype=torch.float64))
    tracked = SE3(a.data.clone().requires_grad_())
    assert torch.allclose((a * b).data, (tracked * b).data.detach(), atol=1e-12)
    assert torch.allclose(a.inv().data, tracked.inv().data.detach(), atol=1e-12)
    assert torch.allclose(a.matrix(), tracked.matrix().detach(), atol=1e-12)
    assert torch.allclose((a * a.inv()).data, SE3.identity(4, 1, dtype=torch.float64).data, atol=1e-12)
