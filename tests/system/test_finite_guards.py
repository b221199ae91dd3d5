"""NaN or infinite values from the networks or the solvers never reach the map: a tracked pose
that is not finite loses the frame, a keyframe depth that is not finite makes no keyframe, a
backend pass that is not finite is not written."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import slam.system.tracker as tracker_module
from slam.geometry.lie import SE3
from slam.io.sources.synthetic import SyntheticSource
from slam.system.slam_system import SlamSystem
from tests.system.classical_systems import classical_system, nan_depths

NAN = float("nan")


@pytest.fixture(scope="module")
def frames():
    """Ten frames of the synthetic room at 240 x 320."""
    return list(SyntheticSource("room", 0, 10, 240, 320))


def _assert_map_finite(system: SlamSystem) -> None:
    for keyframe in system.map.keyframe_list():
        assert keyframe.depth is None or bool(torch.isfinite(keyframe.depth).all()), keyframe.id
        assert bool(torch.isfinite(keyframe.pose_w2c.data).all()), keyframe.id
    snapshot = system.snapshot()
    assert np.isfinite(snapshot.frame_poses_c2w).all()
    cloud = system.fusion.cloud(system.held_keyframes(snapshot))
    assert len(cloud.points) > 0 and np.isfinite(cloud.points).all()


def test_a_tracked_pose_that_is_not_finite_loses_the_frame(frames, monkeypatch, caplog):
    system = classical_system(frames, "backend.mode=disabled")
    for frame in frames[:4]:
        system.process(frame)
    assert system.frontend.keyframe is not None
    monkeypatch.setattr(
        tracker_module, "relative_pose_step", lambda pose, *args, **kwargs: SE3(torch.full_like(pose.data, NAN))
    )
    with caplog.at_level(logging.DEBUG, logger="slam.system.frontend"):
        system.process(frames[4])
    record = system.map.frames[-1]
    assert record.index == frames[4].index and record.status == "lost" and record.frame_from_keyframe is None
    assert "pose not finite" in caplog.text
    monkeypatch.undo()
    system.process(frames[5])  # tracking goes on from the last good pose
    assert system.map.frames[-1].status != "lost"
    system.finish()
    _assert_map_finite(system)


def test_a_keyframe_depth_that_is_not_finite_makes_no_keyframe(frames, monkeypatch, caplog):
    # every tracked frame asks for a keyframe, computed before the next frame
    system = classical_system(
        frames, "backend.mode=disabled", "frontend.keyframe_parallax=0.0", "frontend.keyframe_lag=0"
    )
    for frame in frames[:4]:
        system.process(frame)
    keyframes = len(system.map.keyframes)
    nan_depths(system.frontend.depth_module, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="slam.system.frontend"):
        for frame in frames[4:8]:
            system.process(frame)
    assert len(system.map.keyframes) == keyframes
    assert system.frontend.counts["nonfinite_depths"] == 4
    assert [r.status for r in system.map.frames[-4:]] == ["tracked"] * 4
    assert caplog.text.count("holds NaN or infinite values") == 1  # logged once, counted always
    system.finish()
    _assert_map_finite(system)


def test_a_cold_start_whose_depth_is_not_finite_starts_no_map(frames, monkeypatch):
    system = classical_system(frames, "backend.mode=disabled")
    nan_depths(system.frontend.depth_module, monkeypatch)
    for frame in frames[:4]:
        system.process(frame)
    assert system.frontend.keyframe is None and not system.map.keyframes
    assert [r.status for r in system.map.frames] == ["lost"] * 4
    assert system.frontend.counts["nonfinite_depths"] == 1


def test_a_backend_pass_that_is_not_finite_leaves_the_map_as_it_was(frames, monkeypatch):
    system = classical_system(
        frames,
        "backend.mode=inline",
        "frontend.keyframe_parallax=0.0",
        "frontend.refine_keyframes=0",
        "frontend.keyframe_lag=0",
    )
    for frame in frames[:7]:
        system.process(frame)
    assert len(system.map.keyframes) >= 3
    before = {kf.id: (kf.pose_w2c.data.clone(), kf.depth.clone()) for kf in system.backend.window()}
    refine = system.backend.bundle.refine

    def broken(*args, **kwargs):
        poses, depths, support = refine(*args, **kwargs)
        return poses, torch.full_like(depths, NAN), support

    monkeypatch.setattr(system.backend.bundle, "refine", broken)
    passes, rejected = system.backend.passes, system.backend.rejected_passes
    assert system.backend.optimise()
    assert system.backend.rejected_passes == rejected + 1 and system.backend.passes == passes + 1
    for keyframe in system.backend.window():
        pose, depth = before[keyframe.id]
        assert torch.equal(keyframe.pose_w2c.data, pose) and torch.equal(keyframe.depth, depth)
    monkeypatch.undo()
    system.finish()
    _assert_map_finite(system)
