"""Covisibility: the share of a keyframe's view that other keyframes see, and which older
keyframes join the backend's window."""

from __future__ import annotations

import math

import torch

from slam.geometry.lie import SE3
from slam.system.covisibility import covisible_keyframes, overlaps, reprojection_flow
from slam.system.map import Keyframe, MapState

INTRINSICS = torch.tensor([100.0, 100.0, 63.5, 47.5])
SIZE = (96, 128)


def _pose_w2c(x: float = 0.0, yaw: float = 0.0) -> SE3:
    """World-to-camera pose of a camera at (x, 0, 0) turned by ``yaw`` about its y axis."""
    return SE3.exp(torch.tensor([x, 0.0, 0.0, 0.0, yaw, 0.0])).inv()


def _keyframe(state: MapState, pose_w2c: SE3, features: bool = True) -> Keyframe:
    keyframe = Keyframe(
        state.new_keyframe_id(),
        0,
        0.0,
        torch.rand(3, *SIZE),
        pose_w2c,
        torch.full(SIZE, 2.0),
        torch.ones(SIZE),
        motion_features=torch.rand(1, 48, 64) if features else None,
    )
    state.add_keyframe(keyframe)
    return keyframe


def test_overlap_is_the_share_of_the_view_another_camera_sees():
    depth = torch.full(SIZE, 2.0)
    others = SE3.stack([_pose_w2c(), _pose_w2c(yaw=math.pi), _pose_w2c(x=1.0)])
    shares = overlaps(depth, _pose_w2c(), others, INTRINSICS, SIZE)
    assert abs(float(shares[0]) - 1) < 1e-6  # itself
    assert float(shares[1]) == 0  # turned around
    # a metre to the side at 2 m: the view (1.28 m wide there) shifts by 50 of 128 pixels
    assert 0.5 < float(shares[2]) < 0.7


def test_covisible_keyframes_are_the_most_overlapping_above_the_least_share():
    state = MapState()
    near = _keyframe(state, _pose_w2c(x=0.1))
    half = _keyframe(state, _pose_w2c(x=1.0))
    away = _keyframe(state, _pose_w2c(yaw=math.pi))
    unmatchable = _keyframe(state, _pose_w2c(), features=False)
    newest = _keyframe(state, _pose_w2c())
    older = [near, half, away, unmatchable]
    assert covisible_keyframes(newest, older, 3, 0.5, INTRINSICS, SIZE) == [near, half]
    assert covisible_keyframes(newest, older, 1, 0.5, INTRINSICS, SIZE) == [near]
    assert covisible_keyframes(newest, older, 3, 0.9, INTRINSICS, SIZE) == [near]
    assert covisible_keyframes(newest, older, 0, 0.5, INTRINSICS, SIZE) == []


def test_the_flow_a_relative_pose_predicts_is_the_focal_length_times_baseline_over_depth():
    """A wall 2 m away seen from a camera moved 0.1 m sideways moves by f t / z = 100 x 0.1 / 2
    = 5 pixels; none at the same pose; inf when the wall is behind the other camera or no pixel
    has depth."""
    wall = torch.full((48, 64), 2.0)
    sideways = SE3(torch.tensor([0.1, 0.0, 0.0, 0, 0, 0, 1]))
    assert abs(reprojection_flow(wall, sideways, INTRINSICS, SIZE) - 5.0) < 0.2
    assert reprojection_flow(wall, SE3.identity(), INTRINSICS, SIZE) < 1e-4
    behind = SE3(torch.tensor([0.0, 0.0, -3.0, 0, 0, 0, 1]))
    assert math.isinf(reprojection_flow(wall, behind, INTRINSICS, SIZE))
    assert math.isinf(reprojection_flow(torch.zeros(48, 64), sideways, INTRINSICS, SIZE))
