"""The LS-optimization layer of DeepV2D: one differentiable, weighted Gauss-Newton step on SE3
poses, from dense target correspondences and their confidences.

For every edge ``e = (i -> j)`` and every pixel ``p`` of frame i with depth ``d_i(p)``, the
reprojection ``x_ij(p) = pi(T_ji pi^-1(p, d_i(p)))`` with ``T_ji = G_j G_i^-1`` should land on the
target ``t_e(p)`` (the motion module's reprojection plus residual flow). One step minimises

    sum_e sum_p  || t_e(p) - x_ij(p) ||^2_{W_e(p)}

linearised in left perturbations ``G_k <- exp(xi_k) G_k`` of the free poses, by solving the damped
normal equations with a Cholesky factorisation. Poses are world-to-camera (``G``).

Modes (the paper's): *keyframe* pose optimization uses the edges keyframe -> frame with the
keyframe fixed (the normal equations are then block diagonal: each frame is solved on its own);
*global* pose optimization uses all frame pairs in one joint solve, with the first poses fixed.
Both are this one function with different edges (see :func:`keyframe_edges`, :func:`all_pairs_edges`).
"""

from __future__ import annotations

import torch

from slam.geometry import reproject
from slam.lie import SE3


def keyframe_edges(num_frames: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges ``0 -> j`` for j = 1..N-1 (keyframe mode): ``(ii, jj)`` LongTensors of shape (N-1,)."""
    jj = torch.arange(1, num_frames, device=device)
    return torch.zeros_like(jj), jj


def all_pairs_edges(num_frames: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ordered pair ``i -> j``, i != j (global mode): ``(ii, jj)`` of shape (N(N-1),)."""
    ii, jj = torch.meshgrid(torch.arange(num_frames, device=device), torch.arange(num_frames, device=device), indexing="ij")
    keep = ii != jj
    return ii[keep], jj[keep]


def _edge_systems(poses: SE3, depths: torch.Tensor, intrinsics: torch.Tensor, ii: torch.Tensor, jj: torch.Tensor,
                  targets: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-edge normal equations in the stacked variables ``[xi_i, xi_j]``:
    H (B, E, 12, 12) and g (B, E, 12).

    Only frame j's 6x6 block is summed over pixels: ``G_i <- exp(xi) G_i`` moves ``T_ji`` by
    ``T_ji exp(-xi) = exp(-Adj(T_ji) xi) T_ji``, so ``J_i = -J_j A`` with ``A = Adj(T_ji)``, and
    ``H_ii = A^T H_jj A``, ``H_ij = -A^T H_jj``, ``H_ji = H_ij^T``, ``g_i = -A^T g_j``."""
    batch, edges = targets.shape[:2]
    height, width = depths.shape[-2:]
    T_ji = poses[:, jj] * poses[:, ii].inv()                                   # (B, E)
    coords, valid, J_j, _ = reproject(depths[:, ii].reshape(batch * edges, height, width),
                                      T_ji.view(batch * edges), intrinsics[:, None].expand(batch, edges, 4).reshape(-1, 4),
                                      with_jacobians=True)
    rows = height * width * 2
    J_j = J_j.reshape(batch * edges, rows, 6)
    w = (weights.reshape(batch * edges, height * width, 2) * valid.reshape(batch * edges, -1, 1)).reshape(-1, rows, 1)
    residual = targets.reshape(batch * edges, rows, 1) - coords.reshape(batch * edges, rows, 1)
    wJ_t = (w * J_j).transpose(1, 2)                                           # (BE, 6, 2P)
    H_jj = wJ_t @ J_j                                                          # (BE, 6, 6)
    g_j = wJ_t @ residual                                                      # (BE, 6, 1)
    A = T_ji.adj_matrix().reshape(batch * edges, 6, 6)
    H_ij = -A.transpose(1, 2) @ H_jj
    H = torch.cat([torch.cat([-H_ij @ A, H_ij], dim=2), torch.cat([H_ij.transpose(1, 2), H_jj], dim=2)], dim=1)
    g = torch.cat([-A.transpose(1, 2) @ g_j, g_j], dim=1)
    return H.view(batch, edges, 12, 12), g.view(batch, edges, 12)


def gauss_newton_step(poses: SE3, depths: torch.Tensor, intrinsics: torch.Tensor, ii: torch.Tensor, jj: torch.Tensor,
                      targets: torch.Tensor, weights: torch.Tensor, num_fixed: int = 1, damping: float = 1e-4,
                      epsilon: float = 1e-4) -> SE3:
    """One weighted Gauss-Newton step on the free poses.

    Args:
        poses: SE3 (B, N), world-to-camera.
        depths: (B, N, h, w) depth of each frame in metres (only frames in ``ii`` are read).
        intrinsics: (B, 4) at the (h, w) resolution.
        ii, jj: (E,) long, edges ``ii[e] -> jj[e]``.
        targets: (B, E, h, w, 2) target pixel coordinates in frame ``jj[e]``.
        weights: (B, E, h, w, 2) non-negative confidences of the u and v residuals.
        num_fixed: the first ``num_fixed`` poses are held fixed (gauge freedom; at least 1).
        damping: Levenberg-Marquardt damping, relative to the diagonal of the normal matrix.
        epsilon: absolute damping added to the diagonal (keeps unobserved poses solvable).

    Returns the updated SE3 (B, N): ``exp(xi_k) G_k`` for free poses, fixed ones unchanged. Where
    a batch element's system cannot be factorised, its poses are returned unchanged. The step is
    differentiable with respect to every tensor input.
    """
    batch, num_frames = poses.shape
    if not 1 <= num_fixed < num_frames:
        raise ValueError(f"num_fixed must be in [1, {num_frames - 1}], got {num_fixed}")
    H_edge, g_edge = _edge_systems(poses, depths, intrinsics, ii, jj, targets, weights)
    # Scatter the 12x12 edge blocks into the (N*6) x (N*6) system with one-hot selectors.
    select_i = torch.nn.functional.one_hot(ii, num_frames).to(H_edge.dtype)   # (E, N)
    select_j = torch.nn.functional.one_hot(jj, num_frames).to(H_edge.dtype)
    selectors = (select_i, select_j)
    H = sum(torch.einsum("ea,ec,bexy->baxcy", selectors[r], selectors[c], H_edge[:, :, 6 * r:6 * r + 6, 6 * c:6 * c + 6])
            for r in range(2) for c in range(2))
    g = sum(torch.einsum("ea,bex->bax", selectors[r], g_edge[:, :, 6 * r:6 * r + 6]) for r in range(2))
    free = num_frames - num_fixed
    H = H[:, num_fixed:, :, num_fixed:].reshape(batch, 6 * free, 6 * free)
    g = g[:, num_fixed:].reshape(batch, 6 * free)
    diagonal = torch.diagonal(H, dim1=-2, dim2=-1)
    H = H + torch.diag_embed(damping * diagonal + epsilon)
    L, info = torch.linalg.cholesky_ex(H)
    ok = info == 0
    L = torch.where(ok[:, None, None], L, torch.eye(6 * free, dtype=H.dtype, device=H.device))
    xi = torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1).view(batch, free, 6)
    xi = torch.where(ok[:, None, None], xi, torch.zeros_like(xi))
    updated = poses[:, num_fixed:].retr(xi)
    return SE3(torch.cat([poses.data[:, :num_fixed], updated.data], dim=1))
