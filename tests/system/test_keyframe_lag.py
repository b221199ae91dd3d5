"""A new keyframe's depth is computed in a worker thread while tracking goes on against the
previous keyframe (``frontend.keyframe_lag``): the keyframe joins the map exactly
``keyframe_lag`` frames later in a run that must repeat (backend inline or disabled), as soon as
it is ready (and never later than that) with the backend thread; the frames tracked meanwhile
are tracked again against it when it joins; ``finish`` adds the keyframe still being computed;
a depth that is not finite makes no keyframe."""

from __future__ import annotations

import concurrent.futures
import logging

import numpy as np
import pytest
import torch

from slam.geometry.lie import SE3
from slam.io.sources.synthetic import SyntheticSource
from slam.system.map import Keyframe
from slam.system.slam_system import SlamSystem
from tests.system.classical_systems import classical_system, nan_depths

LAG = 2

#: the most a frame tracked during a keyframe's depth work may move when it is tracked again on the
#: new keyframe (map units, about metres here; measured 5-14 mm, the camera moves about 16 mm a
#: frame, and a pose composed the wrong way round would move a frame by the keyframes' distance)
MOVED = 0.02


@pytest.fixture(scope="module")
def frames():
    """Sixteen frames of the synthetic room at 240 x 320."""
    return list(SyntheticSource("room", 0, 16, 240, 320))


def _system(frames, *settings: str) -> SlamSystem:
    """A small classical system with every tracked frame asking for a keyframe and
    ``keyframe_lag`` :data:`LAG` (``settings`` on top)."""
    return classical_system(frames, "frontend.keyframe_parallax=0.0", f"frontend.keyframe_lag={LAG}", *settings)


def _poses_c2w(system: SlamSystem) -> dict[int, np.ndarray]:
    snapshot = system.snapshot(with_images=False)
    return dict(zip(snapshot.frame_indices.tolist(), snapshot.frame_poses_c2w))


def test_a_keyframe_joins_the_map_lag_frames_later_and_the_frames_between_are_tracked_on_it(frames, monkeypatch):
    system = _system(frames, "backend.mode=disabled")
    track = system.frontend.tracker.track
    starts: list[tuple[Keyframe, SE3]] = []  # each tracking's keyframe and start pose (G_frame G_keyframe^-1)

    def tracking(keyframe, features, start, *args, **kwargs):
        starts.append((keyframe, start))
        return track(keyframe, features, start, *args, **kwargs)

    monkeypatch.setattr(system.frontend.tracker, "track", tracking)
    keyframe_frames: list[int] = []
    for frame in frames:
        before = _poses_c2w(system)
        keyframes = len(system.map.keyframes)
        starts.clear()
        system.process(frame)
        if len(system.map.keyframes) > keyframes and keyframes > 0:  # one joined before this frame
            keyframe = system.map.keyframe_list()[-1]
            keyframe_frames.append(keyframe.frame_index)
            record = next(r for r in system.map.frames if r.index == keyframe.frame_index)
            assert record.status == "keyframe" and record.keyframe_id == keyframe.id
            assert torch.equal(record.frame_from_keyframe.data, torch.tensor([0.0] * 6 + [1.0]))
            # it was asked for LAG + 1 frames ago; the LAG frames between stay on the previous keyframe
            assert frame.index == keyframe.frame_index + LAG + 1
            between = [r for r in system.map.frames if keyframe.frame_index < r.index < frame.index]
            assert len(between) == LAG and all(r.keyframe_id == keyframe.id for r in between)
            after = _poses_c2w(system)
            # tracked again on the new keyframe, each from where it was: they hardly move
            assert [kf for kf, _ in starts[:LAG]] == [keyframe] * LAG
            for r, (_, start) in zip(between, starts):
                assert r.index in before and r.status == "tracked"
                start_c2w = (start * keyframe.pose_w2c).inv().matrix().numpy()
                np.testing.assert_allclose(start_c2w, before[r.index], atol=1e-4)
                moved = np.linalg.norm(after[r.index][:3, 3] - before[r.index][:3, 3])
                assert moved < MOVED, (r.index, moved)
            assert system.frontend.keyframe is keyframe  # this frame was tracked against it
            assert system.map.frames[-1].keyframe_id == keyframe.id
    assert len(keyframe_frames) >= 2  # every tracked frame asked: one keyframe per LAG + 1 frames
    assert np.diff(keyframe_frames).tolist() == [LAG + 1] * (len(keyframe_frames) - 1)
    system.finish()


def test_finish_adds_the_keyframe_still_being_computed(frames):
    system = _system(frames, "backend.mode=disabled")
    for frame in frames[:6]:  # the cold start's frames, then a keyframe asked for on frame 4 or 5
        system.process(frame)
    keyframes = len(system.map.keyframes)
    asked = [r.index for r in system.map.frames if r.status == "tracked"][-1]
    system.finish()
    assert len(system.map.keyframes) == keyframes + 1
    newest = system.map.keyframe_list()[-1]
    assert newest.frame_index <= asked
    assert next(r for r in system.map.frames if r.index == newest.frame_index).status == "keyframe"


def test_a_keyframe_depth_that_is_not_finite_leaves_its_frame_tracked(frames, monkeypatch):
    system = _system(frames, "backend.mode=disabled")
    for frame in frames[:4]:
        system.process(frame)
    system.frontend.close()  # drops the keyframe asked for during the cold start: frame 1 stays tracked
    keyframes = len(system.map.keyframes)
    nan_depths(system.frontend.depth_module, monkeypatch)
    for frame in frames[4:10]:
        system.process(frame)
    system.finish()
    assert len(system.map.keyframes) == keyframes
    assert system.frontend.counts["nonfinite_depths"] >= 2
    assert [r.status for r in system.map.frames[4:10]] == ["tracked"] * 6


def test_with_the_backend_thread_a_keyframe_joins_when_ready_and_never_later_than_the_lag(frames):
    system = _system(frames, "backend.mode=thread")
    joined_after: list[int] = []  # frames from the keyframe's own to the one it joined before
    for k, frame in enumerate(frames):
        keyframes = len(system.map.keyframes)
        system.process(frame)
        if len(system.map.keyframes) > keyframes and keyframes > 0:
            joined_after.append(frame.index - system.map.keyframe_list()[-1].frame_index)
        building = system.frontend._building
        if k >= 8 and building is not None:  # a slow camera from here on: ready before the next frame
            concurrent.futures.wait([building.result])
    system.finish()
    assert len(joined_after) >= 3 and max(joined_after) <= LAG + 1, joined_after
    assert joined_after[-1] == 1, joined_after
    assert system.stage_seconds()["keyframe_depth"] > 0


def test_finish_keeps_the_run_when_the_last_keyframes_depth_failed(frames, monkeypatch, caplog):
    system = _system(frames, "backend.mode=disabled")
    for frame in frames[:4]:
        system.process(frame)
    system.frontend.close()  # drops the keyframe asked for during the cold start: frame 1 stays tracked

    def failing(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(system.frontend.depth_module, "depth", failing)
    system.process(frames[4])  # asks for a keyframe; its depth fails in the worker
    keyframes = len(system.map.keyframes)
    with caplog.at_level(logging.ERROR, logger="slam.system.frontend"):
        system.finish()
    assert "out of memory" in caplog.text
    assert len(system.map.keyframes) == keyframes
    assert system.map.frames[-1].index == frames[4].index and system.map.frames[-1].status == "tracked"
    assert system.frontend._worker is None


def test_a_keyframe_whose_previous_was_rescaled_meanwhile_joins_in_the_new_units(frames, monkeypatch):
    """A correction (the archive's live-end alignment, a loop closure) that rescales the
    previous keyframe while the new one's depth is computed: the new keyframe joins with its
    depth and its translation from the previous keyframe in the corrected units, not the ones
    its work began in."""
    system = _system(frames, "backend.mode=disabled")
    build = system.frontend._build_keyframe
    factor = 1.25
    built_work: list[tuple[Keyframe, torch.Tensor, torch.Tensor]] = []

    def rescaled_meanwhile(image, previous, *args):
        built = build(image, previous, *args)
        if not built_work:  # the first keyframe's work only
            system.map.apply_similarities({previous.id: (previous.pose_w2c, 1.0 / factor)})
            built_work.append((previous, built.depth.clone(), built.frame_from_previous.data.clone()))
        return built

    monkeypatch.setattr(system.frontend, "_build_keyframe", rescaled_meanwhile)
    for frame in frames:
        system.process(frame)
        if built_work and len(system.map.keyframes) > built_work[0][0].id + 1:
            break
    assert built_work, "no keyframe was computed in the worker"
    previous, depth, frame_from_previous = built_work[0]
    joined = system.map.keyframe_list()[previous.id + 1]
    assert joined.anchor_id == previous.id and previous.rescaled_by == pytest.approx(factor)
    torch.testing.assert_close(joined.depth, depth * factor)
    relative = (joined.pose_w2c * previous.pose_w2c.inv()).data
    torch.testing.assert_close(relative[:3], frame_from_previous[:3] * factor, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(relative[3:], frame_from_previous[3:], atol=1e-5, rtol=1e-4)
