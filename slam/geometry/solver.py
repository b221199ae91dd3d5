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

from slam.geometry.lie import SE3
from slam.geometry.projection import reproject
from slam.geometry.resize import scale_intrinsics

#: frames whose pose-depth coupling blocks the bundle adjustment's Schur complement multiplies
#: at once (bounds its memory on large graphs)
SCHUR_CHUNK = 64


def keyframe_edges(num_frames: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges ``0 -> j`` for j = 1..N-1 (keyframe mode): ``(ii, jj)`` LongTensors of shape (N-1,)."""
    jj = torch.arange(1, num_frames, device=device)
    return torch.zeros_like(jj), jj


def all_pairs_edges(
    num_frames: int, device: torch.device | str | None = None, max_span: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ordered pair ``i -> j``, i != j (global mode): ``(ii, jj)`` of shape (N(N-1),); with
    ``max_span``, only the pairs at most that many frames apart."""
    ii, jj = torch.meshgrid(
        torch.arange(num_frames, device=device), torch.arange(num_frames, device=device), indexing="ij"
    )
    keep = ii != jj
    if max_span is not None:
        keep &= (ii - jj).abs() <= max_span
    return ii[keep], jj[keep]


def _frame_blocks(
    T_ji: SE3,
    depth_i: torch.Tensor,
    intrinsics: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    huber: float | None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Frame j's normal equations for E edges ``i -> j`` (E = batch times edges, flattened):
    SE3 (E,) ``T_ji``, (E, h, w) ``depth_i``, (E, 4) ``intrinsics``, (E, h, w, 2) ``targets`` and
    ``weights``. Returns H_jj (E, 6, 6) and g_j (E, 6, 1) for ``T_ji <- exp(xi) T_ji``, and what
    the depth terms need: J_j (E, 2P, 6), J_depth (E, h, w, 2), the weights with validity and
    ``huber`` applied (E, 2P, 1) and the residuals (E, 2P, 1), P = h w (see :func:`_edge_systems`)."""
    edges, height, width = depth_i.shape
    coords, valid, J_j, J_depth = reproject(depth_i, T_ji, intrinsics, with_jacobians=True)
    rows = height * width * 2
    assert J_j is not None and J_depth is not None  # with_jacobians=True returns both
    J_j = J_j.reshape(edges, rows, 6)
    w = (weights.reshape(edges, height * width, 2) * valid.reshape(edges, -1, 1)).reshape(-1, rows, 1)
    residual = targets.reshape(edges, rows, 1) - coords.reshape(edges, rows, 1)
    if huber is not None:  # iteratively reweighted: a pixel's weight falls as 1 / |residual| beyond huber pixels
        norm = residual.view(edges, height * width, 1, 2).norm(dim=-1, keepdim=True)
        w = w * (huber / norm.clamp(min=huber)).expand(-1, -1, 2, 1).reshape(edges, rows, 1)
    wJ_t = (w * J_j).transpose(1, 2)  # (E, 6, 2P)
    return wJ_t @ J_j, wJ_t @ residual, (J_j, J_depth, w, residual)


def _edge_systems(
    poses: SE3,
    depths: torch.Tensor,
    intrinsics: torch.Tensor,
    ii: torch.Tensor,
    jj: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    with_depth: bool = False,
    huber: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]:
    """Per-edge normal equations in the stacked variables ``[xi_i, xi_j]``:
    H (B, E, 12, 12) and g (B, E, 12); with ``with_depth`` also the terms of frame i's per-pixel
    inverse depth ``z = 1 / d_i``: the pose-depth blocks (B, E, 12, P) and the depth diagonal and
    gradient (B, E, P) each, P = h w (otherwise None).

    ``huber``: residuals longer than this many pixels are down-weighted by ``huber / |r|`` (one
    step of iteratively reweighted least squares on the Huber cost); None: plain least squares.

    Only frame j's 6x6 block is summed over pixels: ``G_i <- exp(xi) G_i`` moves ``T_ji`` by
    ``T_ji exp(-xi) = exp(-Adj(T_ji) xi) T_ji``, so ``J_i = -J_j A`` with ``A = Adj(T_ji)``, and
    ``H_ii = A^T H_jj A``, ``H_ij = -A^T H_jj``, ``H_ji = H_ij^T``, ``g_i = -A^T g_j``."""
    batch, edges = targets.shape[:2]
    height, width = depths.shape[-2:]
    T_ji = poses[:, jj] * poses[:, ii].inv()  # (B, E)
    depth_i = depths[:, ii].reshape(batch * edges, height, width)
    H_jj, g_j, (J_j, J_depth, w, residual) = _frame_blocks(
        T_ji.view(batch * edges),
        depth_i,
        intrinsics[:, None].expand(batch, edges, 4).reshape(-1, 4),
        targets.reshape(batch * edges, height, width, 2),
        weights.reshape(batch * edges, height, width, 2),
        huber,
    )
    A = T_ji.adj_matrix().reshape(batch * edges, 6, 6)
    H_ij = -A.transpose(1, 2) @ H_jj
    H = torch.cat([torch.cat([-H_ij @ A, H_ij], dim=2), torch.cat([H_ij.transpose(1, 2), H_jj], dim=2)], dim=1)
    g = torch.cat([-A.transpose(1, 2) @ g_j, g_j], dim=1)
    H, g = H.view(batch, edges, 12, 12), g.view(batch, edges, 12)
    if not with_depth:
        return H, g, None
    # d coords / d z = d coords / d depth * (-depth^2), per pixel (2 rows each)
    J_z = (J_depth * -depth_i.square().unsqueeze(-1)).reshape(batch * edges, height * width, 2)
    w_pixel = w.view(batch * edges, height * width, 2)
    wJ_z = w_pixel * J_z
    E_j = (J_j.view(batch * edges, height * width, 2, 6) * wJ_z.unsqueeze(-1)).sum(2).transpose(1, 2)  # (BE, 6, P)
    E = torch.cat([-A.transpose(1, 2) @ E_j, E_j], dim=1).view(batch, edges, 12, height * width)
    C = (wJ_z * J_z).sum(-1).view(batch, edges, -1)
    g_z = (wJ_z * residual.view(batch * edges, height * width, 2)).sum(-1).view(batch, edges, -1)
    return H, g, (E, C, g_z)


def _pose_system(
    H_edge: torch.Tensor, g_edge: torch.Tensor, ii: torch.Tensor, jj: torch.Tensor, num_frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter per-edge 12x12 blocks and 12-gradients into the (B, N, 6, N, 6) normal matrix and
    the (B, N, 6) gradient of all poses (index sums: memory linear in the edges)."""
    batch = H_edge.shape[0]
    ends = (ii, jj)
    H = H_edge.new_zeros(batch, num_frames * num_frames, 6, 6)
    g = g_edge.new_zeros(batch, num_frames, 6)
    for r in range(2):
        g = g.index_add(1, ends[r], g_edge[:, :, 6 * r : 6 * r + 6])
        for c in range(2):
            H = H.index_add(1, ends[r] * num_frames + ends[c], H_edge[:, :, 6 * r : 6 * r + 6, 6 * c : 6 * c + 6])
    return H.view(batch, num_frames, num_frames, 6, 6).transpose(2, 3), g


def _solve_free_poses(H: torch.Tensor, g: torch.Tensor, num_fixed: int, damping: float, epsilon: float) -> torch.Tensor:
    """Damped Cholesky solve of (B, N, 6, N, 6) H and (B, N, 6) g for the free poses: (B, N - num_fixed, 6),
    zero for a batch element whose system cannot be factorised."""
    batch, num_frames = g.shape[:2]
    free = num_frames - num_fixed
    H = H[:, num_fixed:, :, num_fixed:].reshape(batch, 6 * free, 6 * free)
    g = g[:, num_fixed:].reshape(batch, 6 * free)
    diagonal = torch.diagonal(H, dim1=-2, dim2=-1)
    H = H + torch.diag_embed(damping * diagonal + epsilon)
    L, info = torch.linalg.cholesky_ex(H)
    ok = info == 0
    L = torch.where(ok[:, None, None], L, torch.eye(6 * free, dtype=H.dtype, device=H.device))
    xi = torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1).view(batch, free, 6)
    return torch.where(ok[:, None, None], xi, torch.zeros_like(xi))


def _check_num_fixed(num_fixed: int, num_frames: int) -> None:
    if not 1 <= num_fixed < num_frames:
        raise ValueError(f"num_fixed must be in [1, {num_frames - 1}], got {num_fixed}")


def _retract_free(poses: SE3, xi: torch.Tensor, num_fixed: int) -> SE3:
    """SE3 (B, N): ``exp(xi_k) G_k`` for the free poses (xi: (B, N - num_fixed, 6)), the first
    ``num_fixed`` unchanged."""
    updated = poses[:, num_fixed:].retr(xi)
    return SE3(torch.cat([poses.data[:, :num_fixed], updated.data], dim=1))


def gauss_newton_step(
    poses: SE3,
    depths: torch.Tensor,
    intrinsics: torch.Tensor,
    ii: torch.Tensor,
    jj: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    num_fixed: int = 1,
    damping: float = 1e-4,
    epsilon: float = 1e-4,
) -> SE3:
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
    num_frames = poses.shape[1]
    _check_num_fixed(num_fixed, num_frames)
    H_edge, g_edge, _ = _edge_systems(poses, depths, intrinsics, ii, jj, targets, weights)
    H, g = _pose_system(H_edge, g_edge, ii, jj, num_frames)
    xi = _solve_free_poses(H, g, num_fixed, damping, epsilon)
    return _retract_free(poses, xi, num_fixed)


def relative_pose_step(
    T_ji: SE3,
    depth_i: torch.Tensor,
    intrinsics: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    damping: float = 1e-4,
    epsilon: float = 1e-4,
) -> SE3:
    """One weighted Gauss-Newton step on the relative pose of one frame against a fixed one:
    :func:`gauss_newton_step` for the single edge ``i -> j`` with frame i held, without the
    stacked system. ``T_ji``: SE3 () camera i to camera j; ``depth_i`` (h, w); ``intrinsics`` (4,)
    at that resolution; ``targets`` (h, w, 2) pixels in frame j; ``weights`` (h, w, 2). Returns
    ``exp(xi) T_ji``; ``T_ji`` unchanged where the system cannot be factorised."""
    H, g, _ = _frame_blocks(T_ji.view(1), depth_i[None], intrinsics[None], targets[None], weights[None], None)
    xi = _solve_free_poses(H.view(1, 1, 6, 1, 6), g.view(1, 1, 6), 0, damping, epsilon)
    return T_ji.retr(xi.view(6))


def _schur_poses(E: torch.Tensor, C: torch.Tensor, key_frame: torch.Tensor, key_pose: torch.Tensor) -> torch.Tensor:
    """The pose system's Schur complement term ``sum_f E_f C_f^-1 E_f^T`` as (B, N * N, 6, 6)
    blocks of pose pairs (row-major ``a * N + b``), from the (B, K, 6, P) coupling blocks ``E``
    of (frame ``key_frame[k]``, pose ``key_pose[k]``) pairs sorted by frame and the (B, N, P) depth
    normal matrix ``C``: each frame's blocks stacked (padded to the most any frame has) and
    multiplied together, :data:`SCHUR_CHUNK` frames at a time."""
    batch, keys, _, pixels = E.shape
    num_frames = C.shape[1]
    firsts = torch.searchsorted(key_frame, key_frame)  # each key's frame's first key
    rank = torch.arange(keys, device=E.device) - firsts
    most = int(rank.max()) + 1
    # a padding slot's pose is N: its row and column land outside the N x N blocks kept
    slot_pose = torch.full((num_frames, most), num_frames, dtype=torch.long, device=E.device)
    slot_pose[key_frame, rank] = key_pose
    padded = E.new_zeros(batch, num_frames, most, 6, pixels)
    padded[:, key_frame, rank] = E
    scaled = padded / C[:, :, None, None]
    total = E.new_zeros(batch, (num_frames + 1) ** 2, 6, 6)
    for start in range(0, num_frames, SCHUR_CHUNK):
        frames = slice(start, start + SCHUR_CHUNK)
        left = scaled[:, frames].reshape(batch, -1, most * 6, pixels)
        right = padded[:, frames].reshape(batch, -1, most * 6, pixels)
        products = (left @ right.transpose(-1, -2)).view(batch, -1, most, 6, most, 6).transpose(3, 4)
        poses = slot_pose[frames]
        index = poses[:, :, None] * (num_frames + 1) + poses[:, None, :]
        total = total.index_add(1, index.reshape(-1), products.reshape(batch, -1, 6, 6))
    total = total.view(batch, num_frames + 1, num_frames + 1, 6, 6)[:, :num_frames, :num_frames]
    return total.reshape(batch, num_frames * num_frames, 6, 6)


def bundle_adjustment_step(
    poses: SE3,
    depths: torch.Tensor,
    intrinsics: torch.Tensor,
    ii: torch.Tensor,
    jj: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    prior_depths: torch.Tensor,
    prior_weight: float,
    num_fixed: int = 1,
    damping: float = 1e-4,
    epsilon: float = 1e-4,
    huber: float | None = None,
) -> tuple[SE3, torch.Tensor, torch.Tensor]:
    """One weighted Gauss-Newton step on the free poses *and* every frame's per-pixel inverse
    depth (DROID-SLAM's dense bundle adjustment, here on the motion module's targets).

    The cost is :func:`gauss_newton_step`'s plus a prior that keeps each inverse depth ``z`` near
    that of ``prior_depths``: ``prior_weight * ((z - z0) / z0)^2`` per pixel (in squared pixels
    per squared relative depth change). It holds the monocular scale and the pixels that no edge
    constrains. The depths are eliminated first (their normal matrix is diagonal: a Schur
    complement on the 6N x 6N pose system), then recovered from the pose step.

    Args are :func:`gauss_newton_step`'s, and ``prior_depths`` (B, N, h, w) > 0. ``depths`` must be
    > 0 everywhere. ``huber``: a robust data term, see :func:`_edge_systems`. Returns (SE3 (B, N)
    world-to-camera, (B, N, h, w) depths, (B, N, h, w) information); each inverse depth moves at
    most by a factor of 2 per step. The information is what the data term knows of each pixel's
    relative depth change at the depths given: the depth diagonal of its normal matrix times
    ``z^2``, ``sum_e w |d x / d log z|^2`` over the edges leaving the frame (squared pixels per
    squared relative change, on the prior's scale: the prior adds ``prior_weight``); 0 where no
    edge sees the pixel. With the poses held, ``1 / (information + prior_weight)`` is the
    variance of its relative depth in squared units of the targets' noise.
    """
    batch, num_frames = poses.shape
    _check_num_fixed(num_fixed, num_frames)
    pixels = depths.shape[-2] * depths.shape[-1]
    H_edge, g_edge, depth_terms = _edge_systems(
        poses, depths, intrinsics, ii, jj, targets, weights, with_depth=True, huber=huber
    )
    assert depth_terms is not None  # with_depth=True returns the depth terms
    E_edge, C_edge, gz_edge = depth_terms
    H, g = _pose_system(H_edge, g_edge, ii, jj, num_frames)
    z = 1.0 / depths.reshape(batch, num_frames, pixels)
    z0 = 1.0 / prior_depths.reshape(batch, num_frames, pixels)
    # depth normal matrix (diagonal) and gradient: edges leaving each frame, plus the prior
    C_data = torch.zeros_like(z).index_add_(1, ii, C_edge)
    C = C_data + prior_weight / z0.square()
    g_z = torch.zeros_like(z).index_add_(1, ii, gz_edge) - prior_weight * (z - z0) / z0.square()
    C = C * (1.0 + damping) + epsilon
    # pose-depth coupling: one (6, P) block per (frame, pose) pair that an edge leaving the frame
    # joins (the frame's own pose and each pose it has an edge to); index_add_ sums in a fixed
    # order, where index_put's accumulate does not on several CPU threads
    keys = torch.cat([ii * num_frames + ii, ii * num_frames + jj])
    unique_keys, slot = torch.unique(keys, return_inverse=True)
    key_frame, key_pose = unique_keys // num_frames, unique_keys % num_frames
    edges = ii.shape[0]
    E = z.new_zeros(batch, unique_keys.shape[0], 6, pixels)
    E = E.index_add_(1, slot[:edges], E_edge[:, :, :6]).index_add_(1, slot[edges:], E_edge[:, :, 6:])
    H = H.transpose(2, 3).reshape(batch, num_frames * num_frames, 6, 6) - _schur_poses(E, C, key_frame, key_pose)
    H = H.view(batch, num_frames, num_frames, 6, 6).transpose(2, 3)
    g = g.index_add(1, key_pose, -((E / C[:, key_frame, None]) @ g_z[:, key_frame, :, None]).squeeze(-1))
    xi = _solve_free_poses(H, g, num_fixed, damping, epsilon)
    xi_all = torch.cat([torch.zeros_like(xi[:, :1]).expand(batch, num_fixed, 6), xi], dim=1)
    coupled = (xi_all[:, key_pose, None, :] @ E).squeeze(-2)  # (B, K, P)
    dz = (g_z - torch.zeros_like(g_z).index_add_(1, key_frame, coupled)) / C
    z_new = torch.minimum(torch.maximum(z + dz, 0.5 * z), 2.0 * z)
    information = (C_data * z.square()).view_as(depths)
    return _retract_free(poses, xi, num_fixed), (1.0 / z_new).view_as(depths), information


def pool_correspondences(
    targets: torch.Tensor, weights: torch.Tensor, intrinsics: torch.Tensor, factor: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same correspondences on a grid ``factor`` times coarser, for a cheaper solve: each
    ``factor`` x ``factor`` block of (B, E, h, w, 2) targets becomes their weighted mean and the
    block's mean weight; target pixel coordinates and the (B, 4) intrinsics are mapped to the
    coarse grid's pixels (pixel-centre aligned: ``u' = (u + 0.5) / factor - 0.5``). ``h`` and
    ``w`` must be multiples of ``factor``. Returns (targets, weights, intrinsics)."""
    if factor == 1:
        return targets, weights, intrinsics
    batch, edges, height, width, _ = targets.shape
    if height % factor or width % factor:
        raise ValueError(f"a {height} x {width} grid does not pool by {factor}")

    def pool(x: torch.Tensor) -> torch.Tensor:
        channels_first = x.permute(0, 1, 4, 2, 3).reshape(batch * edges, 2, height, width)
        pooled = torch.nn.functional.avg_pool2d(channels_first, factor)
        return pooled.view(batch, edges, 2, height // factor, width // factor).permute(0, 1, 3, 4, 2)

    mean_weight = pool(weights)
    mean_target = pool(weights * targets) / mean_weight.clamp(min=1e-12)
    return (mean_target + 0.5) / factor - 0.5, mean_weight.contiguous(), scale_intrinsics(intrinsics, factor)
