"""Sim(3) helpers and the pose-graph optimization: conversions agree with the SE3 poses and the
depth units they promise; a loop edge's error is spread over the chain that closes it, scale
drift included; the fixed nodes stay."""

from __future__ import annotations

import math

import pytest
import torch

from slam.geometry import pose_graph as pg
from slam.geometry.lie import SE3


def test_a_similarity_split_into_a_rigid_pose_and_a_scale_maps_points_the_same_way():
    torch.manual_seed(0)
    sim3 = pg.exp(torch.randn(5, 7, dtype=torch.float64) * 0.5)
    points = torch.randn(5, 3, dtype=torch.float64)
    pose, scale = pg.se3_and_scale(sim3)
    # camera coordinates in the similarity's units are `scale` times the rigid pose's
    expected = pg.compose(sim3, torch.cat([points, torch.tensor([[0, 0, 0, 1, 1.0]]).double().expand(5, -1)], -1))
    assert torch.allclose(expected[:, :3], scale[:, None] * pose.act(points), atol=1e-10)
    rigid = SE3.exp(torch.randn(4, 6, dtype=torch.float64) * 0.3)
    back, unit = pg.se3_and_scale(pg.sim3_from_se3(rigid))
    assert torch.allclose(back.data, rigid.data) and torch.allclose(unit, torch.ones(4, dtype=torch.float64))


def _circle(count: int, radius: float = 3.0) -> torch.Tensor:
    """(count, 8) world-to-camera similarities of cameras on a circle, turning with it."""
    poses = [
        pg.exp(torch.tensor([radius * math.cos(a), radius * math.sin(a), 0, 0, 0, a, 0], dtype=torch.float64))
        for a in (2 * math.pi * k / count for k in range(count))
    ]
    return torch.stack(poses)


def test_a_loop_edge_corrects_a_chain_that_drifted_in_scale_and_rotation():
    """Odometry that shrinks by 1% and turns 0.2 degrees too far per step, then a loop edge
    with the true relative pose of the last camera to the first: after the optimization the
    loop is met and every camera is far closer to the truth than before."""
    count = 60
    truth = _circle(count)
    ii, jj = torch.arange(1, count), torch.arange(0, count - 1)
    bias = pg.exp(torch.tensor([0, 0, 0, 0, 0, math.radians(0.2), math.log(0.99)], dtype=torch.float64))
    odometry = pg.compose(bias[None], pg.compose(truth[ii], pg.inverse(truth[jj])))
    chain = [truth[0]]
    for k in range(count - 1):
        chain.append(pg.compose(odometry[k], chain[-1]))
    drifted = torch.stack(chain)
    loop = pg.compose(truth[-1], pg.inverse(truth[0]))[None]
    edges_i, edges_j = torch.cat([ii, torch.tensor([count - 1])]), torch.cat([jj, torch.tensor([0])])
    measured = torch.cat([odometry, loop])
    fixed = torch.zeros(count, dtype=torch.bool)
    fixed[0] = True
    corrected = pg.optimise_pose_graph(drifted, edges_i, edges_j, measured, torch.ones(count), fixed)

    def centre_errors(nodes: torch.Tensor) -> torch.Tensor:
        centres = pg.inverse(nodes)[:, :3]
        return (centres - pg.inverse(truth)[:, :3]).norm(dim=1)

    assert torch.equal(corrected[0], drifted[0])
    loop_residual = pg.edge_residuals(corrected, edges_i[-1:], edges_j[-1:], loop)
    assert loop_residual.abs().max() < 0.02, loop_residual
    before, after = centre_errors(drifted).max(), centre_errors(corrected).max()
    assert after < 0.25 * before, (before, after)


def test_per_component_weights_and_a_graph_without_a_fixed_node():
    nodes = _circle(4)
    ii, jj = torch.tensor([1, 2, 3]), torch.tensor([0, 1, 2])
    measured = pg.compose(nodes[ii], pg.inverse(nodes[jj]))
    fixed = torch.tensor([True, False, False, False])
    same = pg.optimise_pose_graph(nodes, ii, jj, measured, torch.ones(3, 7), fixed)
    assert torch.allclose(same, nodes, atol=1e-9)  # a consistent graph stays where it is
    with pytest.raises(ValueError, match="fixed"):
        pg.optimise_pose_graph(nodes, ii, jj, measured, torch.ones(3), torch.zeros(4, dtype=torch.bool))
