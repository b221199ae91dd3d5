"""Similarity transforms (Sim(3)) and a pose-graph optimization over them, for loop closure in
monocular SLAM, where a drifted map is off in scale as well as in position and rotation.

A Sim(3) is stored as a (..., 8) float64 tensor ``[tx, ty, tz, qx, qy, qz, qw, s]``: translation,
unit quaternion (scalar last), scale; it maps a point ``p`` to ``s R p + t``. Tangent vectors are
(..., 7) ``[tau, phi, sigma]`` (pypose's ``sim3``; ``sigma`` is the log of the scale).

The graph's nodes are world-to-camera similarities ``S_i`` (camera coordinates in the units the
camera's own depth is in); an edge ``(i, j)`` measures ``S_i S_j^-1`` (camera j to camera i). Its
residual is ``log(M_ij^-1 S_i S_j^-1)``, weighted by the edge's weight; the optimization
(Levenberg-Marquardt, left perturbations ``S_i <- exp(d_i) S_i``, Jacobians by central
differences, the sparse normal equations solved by scipy) holds the ``fixed`` nodes and moves
the others so that every edge is met as well as it can be: a loop edge's error is spread over
the chain of edges that closes the loop.
"""

from __future__ import annotations

import numpy as np
import pypose as pp
import scipy.sparse
import scipy.sparse.linalg
import torch

from slam.geometry.lie import SE3

#: the central differences' step in the tangent space
_STEP = 1e-6


def sim3_from_se3(pose: SE3, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """(..., 8) float64 Sim(3) with the rotation and translation of ``pose`` and ``scale``."""
    data = pose.data.double()
    scales = torch.as_tensor(scale, dtype=torch.float64, device=data.device).expand(*data.shape[:-1], 1)
    return torch.cat([data, scales], dim=-1)


def se3_and_scale(sim3: torch.Tensor) -> tuple[SE3, torch.Tensor]:
    """A world-to-camera Sim(3) ``(s, R, t)`` (..., 8) as the rigid pose of the same camera in
    the world's units, ``(R, t / s)`` (SE3 (...)), and its scale ``s`` (...,): camera coordinates
    in the Sim(3)'s units are ``s`` times those in the world's (a depth map in them is divided by
    ``s`` to be in the world's units)."""
    scale = sim3[..., 7]
    return SE3(torch.cat([sim3[..., :3] / scale[..., None], sim3[..., 3:7]], dim=-1)), scale


def compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a b`` of (..., 8) similarities (broadcast)."""
    return (pp.Sim3(a) * pp.Sim3(b)).tensor()


def inverse(a: torch.Tensor) -> torch.Tensor:
    """``a^-1`` of (..., 8) similarities."""
    return pp.Sim3(a).Inv().tensor()


def log(a: torch.Tensor) -> torch.Tensor:
    """(..., 7) tangent vectors ``[tau, phi, sigma]`` of (..., 8) similarities."""
    return pp.Sim3(a).Log().tensor()


def exp(xi: torch.Tensor) -> torch.Tensor:
    """(..., 8) similarities of (..., 7) tangent vectors."""
    return pp.sim3(xi).Exp().tensor()


def edge_residuals(nodes: torch.Tensor, ii: torch.Tensor, jj: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
    """(E, 7) residuals ``log(M_e^-1 S_i S_j^-1)`` of edges ``ii -> jj`` (E,) with measurements
    ``measured`` (E, 8) between ``nodes`` (N, 8)."""
    return _relative([nodes[ii], nodes[jj]], measured)


def optimise_pose_graph(
    nodes: torch.Tensor,
    ii: torch.Tensor,
    jj: torch.Tensor,
    measured: torch.Tensor,
    weights: torch.Tensor,
    fixed: torch.Tensor,
    iterations: int = 20,
    tolerance: float = 1e-10,
) -> torch.Tensor:
    """The nodes (N, 8) world-to-camera similarities that minimise the weighted squared residuals
    (:func:`edge_residuals`) of edges ``ii -> jj`` (E,) with ``measured`` (E, 8) relative
    similarities and ``weights`` (E,) or per residual component (E, 7), holding the nodes where
    ``fixed`` (N,) bool is True, by at most ``iterations`` Levenberg-Marquardt steps (until the
    cost falls by less than ``tolerance`` relative). The input is not changed. ValueError when no node is fixed (the
    problem would have no unique solution)."""
    if not bool(fixed.any()):
        raise ValueError("a pose graph needs at least one fixed node")
    nodes = nodes.double().clone()
    measured = measured.double()
    weights = (weights[:, None] if weights.dim() == 1 else weights).double().expand(-1, 7)
    free = (~fixed).nonzero().flatten()
    if free.numel() == 0 or ii.numel() == 0:
        return nodes
    column = torch.full((nodes.shape[0],), -1, dtype=torch.long)
    column[free] = torch.arange(free.numel())
    damping = 1e-4
    cost = _cost(nodes, ii, jj, measured, weights)
    for _ in range(iterations):
        residuals = edge_residuals(nodes, ii, jj, measured)
        jacobian_i, jacobian_j = _jacobians(nodes, ii, jj, measured)
        hessian, gradient = _normal_equations(
            residuals, jacobian_i, jacobian_j, weights, column[ii], column[jj], free.numel()
        )
        while True:
            damped = hessian + scipy.sparse.diags(damping * (hessian.diagonal() + 1e-9))
            step = torch.from_numpy(scipy.sparse.linalg.spsolve(damped.tocsc(), -gradient)).view(-1, 7)
            candidate = nodes.clone()
            candidate[free] = compose(exp(step), nodes[free])
            new_cost = _cost(candidate, ii, jj, measured, weights)
            if new_cost <= cost:
                break
            damping *= 10
            if damping > 1e8:
                return nodes
        nodes, improvement = candidate, (cost - new_cost) / max(cost, 1e-300)
        cost, damping = new_cost, max(damping / 10, 1e-8)
        if improvement < tolerance:
            break
    return nodes


def _cost(nodes: torch.Tensor, ii: torch.Tensor, jj: torch.Tensor, measured: torch.Tensor, weights: torch.Tensor):
    return float((weights * edge_residuals(nodes, ii, jj, measured).square()).sum())


def _jacobians(
    nodes: torch.Tensor, ii: torch.Tensor, jj: torch.Tensor, measured: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, 7, 7) derivatives of each edge's residual with respect to left perturbations of its
    nodes i and j, by central differences (all 28 perturbed residuals in one batch)."""
    count = ii.numel()
    steps = torch.cat([torch.eye(7, dtype=nodes.dtype), -torch.eye(7, dtype=nodes.dtype)]) * _STEP  # (14, 7)
    perturbations = exp(steps)[:, None].expand(-1, count, -1)  # (14, E, 8)
    end_i, end_j = nodes[ii].expand(14, -1, -1), nodes[jj].expand(14, -1, -1)
    ends_i = torch.cat([compose(perturbations, end_i), end_i])  # (28, E, 8): i moved, then j moved
    ends_j = torch.cat([end_j, compose(perturbations, end_j)])
    residuals = _relative([ends_i, ends_j], measured.expand(28, -1, -1)).view(2, 2, 7, count, 7)
    difference = (residuals[:, 0] - residuals[:, 1]) / (2 * _STEP)  # (2, 7 perturbed, E, 7 residual)
    blocks = difference.permute(0, 2, 3, 1)  # (2, E, residual, perturbed)
    return blocks[0], blocks[1]


def _relative(ends: list[torch.Tensor], measured: torch.Tensor) -> torch.Tensor:
    """(E, 7) residuals of edges between the (E, 8) similarities ``ends[0]`` and ``ends[1]``."""
    return log(compose(inverse(measured), compose(ends[0], inverse(ends[1]))))


def _normal_equations(
    residuals: torch.Tensor,
    jacobian_i: torch.Tensor,
    jacobian_j: torch.Tensor,
    weights: torch.Tensor,
    column_i: torch.Tensor,
    column_j: torch.Tensor,
    num_free: int,
) -> tuple[scipy.sparse.csr_matrix, np.ndarray]:
    """The sparse (7F, 7F) Gauss-Newton matrix and (7F,) gradient over the F free nodes (a
    column of -1: the node is fixed and has no unknowns), with (E, 7) ``weights``."""
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    values: list[np.ndarray] = []
    gradient = np.zeros(7 * num_free)
    jacobians = {0: (jacobian_i, column_i), 1: (jacobian_j, column_j)}
    offsets = torch.arange(7)
    for a in (0, 1):
        jacobian_a, column_a = jacobians[a]
        keep_a = column_a >= 0
        weighted = weights[:, :, None] * jacobian_a  # (E, 7, 7)
        g = torch.einsum("eki,ek->ei", weighted, residuals)[keep_a]
        np.add.at(gradient, (7 * column_a[keep_a, None] + offsets).numpy(), g.numpy())
        for b in (0, 1):
            jacobian_b, column_b = jacobians[b]
            keep = keep_a & (column_b >= 0)
            block = torch.einsum("eki,ekj->eij", weighted, jacobian_b)[keep]  # (E', 7, 7)
            row = (7 * column_a[keep, None, None] + offsets[:, None]).expand(-1, 7, 7)
            col = (7 * column_b[keep, None, None] + offsets[None, :]).expand(-1, 7, 7)
            rows.append(row.flatten().numpy())
            cols.append(col.flatten().numpy())
            values.append(block.flatten().numpy())
    size = 7 * num_free
    hessian = scipy.sparse.coo_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size)
    ).tocsr()
    return hessian, gradient
