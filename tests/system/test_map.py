"""The shared map: keyframes, frame records relative to keyframes, snapshots, concurrent readers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from slam.geometry.lie import SE3
from slam.system.map import FrameRecord, Keyframe, MapState


def make_keyframe(state: MapState, frame_index: int, xi: list[float]) -> Keyframe:
    keyframe = Keyframe(
        state.new_keyframe_id(),
        frame_index,
        frame_index / 30,
        torch.rand(3, 6, 8),
        SE3.exp(torch.tensor(xi)),
        torch.full((6, 8), 2.0),
        torch.ones(6, 8),
    )
    state.add_keyframe(keyframe)
    return keyframe


def test_frames_follow_their_keyframe_when_the_backend_moves_it():
    state = MapState()
    kf = make_keyframe(state, 0, [0.0] * 6)
    relative = SE3.exp(torch.tensor([0.1, 0.0, 0.0, 0.0, 0.0, 0.0]))
    state.add_frame(FrameRecord(0, 0.0, kf.id, SE3.identity()))
    state.add_frame(FrameRecord(1, 1 / 30, kf.id, relative))
    state.add_frame(FrameRecord(2, 2 / 30, kf.id, None, status="lost"))
    before = state.snapshot()
    assert before.frame_indices.tolist() == [0, 1]
    # world-to-camera translation +0.1 in x means the camera centre is at -0.1 in x
    assert np.allclose(before.frame_poses_c2w[1][:3, 3], [-0.1, 0.0, 0.0], atol=1e-6)
    moved = SE3.exp(torch.tensor([[0.0, 0.0, -1.0, 0.0, 0.0, 0.0]]))
    state.update_keyframes([kf.id], poses=moved)
    after = state.snapshot()
    assert after.version > before.version
    assert np.allclose(after.frame_poses_c2w[0][:3, 3], [0.0, 0.0, 1.0], atol=1e-6)
    assert np.allclose(after.frame_poses_c2w[1][:3, 3], [-0.1, 0.0, 1.0], atol=1e-6)
    assert np.allclose(after.keyframes[0].pose_c2w, after.frame_poses_c2w[0], atol=1e-6)


def test_a_detached_copy_moves_without_the_live_map_and_the_live_map_without_it():
    """A loop correction (a similarity) applied to a detached copy shows in the copy's keyframes
    and frames only; a keyframe the live map then moves or releases stays as it was in the copy."""
    state = MapState()
    first, second = make_keyframe(state, 0, [0.0] * 6), make_keyframe(state, 5, [0.2, 0.0, 0.0, 0.0, 0.0, 0.0])
    state.add_frame(FrameRecord(6, 0.2, second.id, SE3.exp(torch.tensor([0.0, 0.1, 0.0, 0.0, 0.0, 0.0]))))
    before = state.snapshot()
    copy = state.detached_copy()
    copy.apply_similarities({second.id: (SE3.identity(), 2.0)})
    np.testing.assert_array_equal(state.snapshot().frame_poses_c2w, before.frame_poses_c2w)
    assert torch.equal(second.depth, torch.full((6, 8), 2.0))
    assert torch.equal(copy.keyframes[second.id].depth, torch.full((6, 8), 1.0))
    assert np.allclose(copy.snapshot().frame_poses_c2w[0][:3, 3], [0.0, -0.05, 0.0], atol=1e-6)
    state.update_keyframes([first.id], poses=SE3.exp(torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])))
    first.release()
    kept = copy.keyframes[first.id]
    assert not kept.released and np.allclose(kept.pose_c2w, np.eye(4), atol=1e-6)


def test_keyframes_added_during_a_backend_pass_move_with_the_newest_it_optimised():
    """The frontend anchors a new keyframe to the newest one's pose as it was; when the backend
    writes back a pass begun before, the newer keyframes keep their pose relative to it; one
    anchored to a keyframe the pass did not move stays."""
    state = MapState()
    window = [make_keyframe(state, k, [0.0, 0.0, 0.1 * k, 0.0, 0.0, 0.0]) for k in range(3)]
    started_from = SE3.stack([kf.pose_w2c for kf in window])
    newer = [
        make_keyframe(state, 3, [0.0, 0.0, 0.3, 0.0, 0.1, 0.0]),
        make_keyframe(state, 4, [0.1, 0.0, 0.4, 0.0, 0.2, 0.0]),
    ]
    newer[0].anchor_id, newer[1].anchor_id = window[-1].id, newer[0].id  # a chain from the newest
    elsewhere = make_keyframe(state, 5, [0.3, 0.0, 0.0, 0.0, 0.0, 0.0])  # relocalized against an older one
    elsewhere.anchor_id = -7
    kept = elsewhere.pose_w2c.data.clone()
    relative = [(kf.pose_w2c * window[-1].pose_w2c.inv()).matrix() for kf in newer]
    optimised = SE3.exp(
        torch.tensor(
            [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.02, 0.1, 0.0, 0.0, 0.01], [0.01, 0.03, 0.25, 0.02, 0.0, 0.03]]
        )
    )
    state.update_keyframes([kf.id for kf in window], optimised, started_from=started_from)
    assert torch.allclose(window[-1].pose_w2c.data, optimised.data[-1])
    for kf, before in zip(newer, relative):
        assert torch.allclose((kf.pose_w2c * window[-1].pose_w2c.inv()).matrix(), before, atol=1e-5)
    assert torch.equal(elsewhere.pose_w2c.data, kept)
    untouched = newer[0].pose_w2c.data.clone()
    state.update_keyframes([kf.id for kf in window], optimised)  # no start given: nothing newer moves
    assert torch.equal(newer[0].pose_w2c.data, untouched)


def test_snapshot_copies_images_and_depth():
    state = MapState()
    kf = make_keyframe(state, 0, [0.0] * 6)
    snap = state.snapshot()
    view = snap.keyframes[0]
    assert view.image.shape == (6, 8, 3) and view.image.dtype == np.uint8
    kf.depth.fill_(5.0)
    assert np.all(view.depth == 2.0)
    light = state.snapshot(with_images=False)
    assert light.keyframes[0].image is None and not light.keyframes[0].has_pixels


def test_readers_get_consistent_snapshots_while_a_writer_updates():
    state = MapState()
    ids = [make_keyframe(state, i, [0.0] * 6).id for i in range(4)]
    stop = threading.Event()
    seen = []

    def writer():
        step = 0
        while not stop.is_set():
            step += 1
            state.update_keyframes(
                ids,
                poses=SE3.exp(torch.tensor([[0.0, 0.0, float(step), 0, 0, 0]] * 4)),
                depths=torch.full((4, 6, 8), float(step)),
            )

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(50):
            snap = state.snapshot()
            # every keyframe of one snapshot comes from the same write
            seen.append({float(v.depth[0, 0]) for v in snap.keyframes})
    finally:
        stop.set()
        thread.join()
    assert all(len(values) == 1 for values in seen)


def test_compacted_keyframes_keep_what_fusion_needs_in_less_memory():
    state = MapState()
    keyframe = make_keyframe(state, 0, [0.1, 0, 0, 0, 0, 0])
    keyframe.depth_features = torch.rand(4, 2, 2)
    before = state.snapshot().keyframes[0]
    size = keyframe.image.nbytes + keyframe.depth.nbytes + keyframe.confidence.nbytes
    keyframe.compact()
    after = state.snapshot().keyframes[0]
    assert keyframe.depth_features is None and keyframe.compacted
    assert keyframe.image.nbytes + keyframe.depth.nbytes + keyframe.confidence.nbytes <= size / 2.5
    assert np.array_equal(after.image, before.image)
    assert np.allclose(after.depth, before.depth, rtol=1e-3) and np.allclose(
        after.confidence, before.confidence, atol=1e-3
    )


def test_backend_results_are_stored_as_copies_not_views():
    state = MapState()
    ids = [make_keyframe(state, k, [0.1 * k, 0, 0, 0, 0, 0]).id for k in range(3)]
    depths = torch.rand(3, 6, 8)
    state.update_keyframes(ids, SE3.identity(3), depths, depths.clone())
    for keyframe in state.keyframe_list():
        assert keyframe.depth.untyped_storage().nbytes() == keyframe.depth.nbytes  # not the whole batch
        assert keyframe.pose_w2c.data.untyped_storage().nbytes() == keyframe.pose_w2c.data.nbytes


def test_released_keyframes_keep_their_pose_and_frames_only():
    state = MapState()
    keyframe = make_keyframe(state, 0, [0.1, 0, 0, 0, 0, 0])
    state.add_frame(FrameRecord(1, 1 / 30, keyframe.id, SE3.exp(torch.tensor([0.0, 0.2, 0, 0, 0, 0]))))
    before = state.snapshot()
    keyframe.release()
    assert keyframe.released and keyframe.compacted and keyframe.image is None and keyframe.depth is None
    after = state.snapshot()
    assert not after.keyframes[0].has_pixels and after.keyframes[0].depth is None
    np.testing.assert_allclose(after.keyframes[0].pose_c2w, before.keyframes[0].pose_c2w)
    np.testing.assert_allclose(after.frame_poses_c2w, before.frame_poses_c2w)


def test_a_released_keyframe_stays_a_place_to_match_against():
    """Compaction keeps the motion features (float16) and a coarse depth for relocalization;
    release keeps them too, so every keyframe can be matched for the whole run."""
    state = MapState()
    keyframe = make_keyframe(state, 0, [0.1, 0, 0, 0, 0, 0])
    keyframe.motion_features = torch.rand(1, 6, 8)
    features, depth = keyframe.matching()
    assert features is keyframe.motion_features and depth is keyframe.depth
    expected = keyframe.motion_features.clone()
    keyframe.release()
    assert keyframe.motion_features is None and keyframe.depth is None
    features, depth = keyframe.matching()
    assert features.dtype == depth.dtype == torch.float32
    assert torch.allclose(features, expected, atol=1e-3)
    assert depth.shape == (3, 4) and torch.allclose(depth, torch.full((3, 4), 2.0))
    assert keyframe.place_features.dtype == keyframe.place_depth.dtype == torch.float16


def test_a_keyframe_without_features_or_place_cannot_be_matched():
    state = MapState()
    keyframe = make_keyframe(state, 0, [0.0] * 6)
    assert keyframe.matching() is None  # never had motion features
    keyframe.release()
    assert keyframe.matching() is None


def _x(metres: float) -> SE3:
    """A world-to-camera (or relative) pose that moves points by ``metres`` along x."""
    return SE3.exp(torch.tensor([metres, 0.0, 0.0, 0.0, 0.0, 0.0]))


def _walk_on_one_keyframe() -> tuple[MapState, Keyframe, Keyframe]:
    """Keyframe 0 at frame 0; frames 1-4 tracked against it 1 cm apart; keyframe 1 made from frame
    5, tracked at 5 cm but refined and optimised to 10 cm; frames 6-7 tracked against keyframe 1."""
    state = MapState()
    first = make_keyframe(state, 0, [0.0] * 6)
    state.add_frame(FrameRecord(0, 0.0, first.id, SE3.identity(), "keyframe"))
    for index in range(1, 5):
        state.add_frame(FrameRecord(index, index / 30, first.id, _x(0.01 * index)))
    second = make_keyframe(state, 5, [0.10, 0.0, 0.0, 0.0, 0.0, 0.0])
    second.anchor_id, second.tracked_from_anchor = first.id, _x(0.05)
    state.add_frame(FrameRecord(5, 5 / 30, second.id, SE3.identity(), "keyframe"))
    for index in (6, 7):
        state.add_frame(FrameRecord(index, index / 30, second.id, _x(0.01 * (index - 5))))
    return state, first, second


def _centres_x(state: MapState) -> list[float]:
    return [round(-float(pose[0, 3]), 6) for pose in state.snapshot(with_images=False).frame_poses_c2w]


def test_frames_before_a_keyframe_take_their_share_of_its_correction():
    """Tracking put keyframe 1's frame at 5 cm, the backend at 10: the frames tracked before it on
    keyframe 0 were measured the same way and are spread to match (2 cm apart, not 1); the frames
    after it, tracked against keyframe 1, keep their poses relative to it."""
    state, _, _ = _walk_on_one_keyframe()
    assert _centres_x(state) == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08, 0.10, 0.11, 0.12], abs=1e-5)


def test_frames_keep_their_tracked_poses_where_no_keyframe_was_made_from_their_keyframe():
    """The same walk where keyframe 1 was not made from a frame tracked on keyframe 0 (a
    relocalization, say): nothing to spread."""
    state, _, second = _walk_on_one_keyframe()
    second.tracked_from_anchor = None
    assert _centres_x(state) == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04, 0.10, 0.11, 0.12], abs=1e-5)


def test_a_keyframes_tracked_pose_is_rescaled_with_its_anchor():
    """A loop correction that halves keyframe 0's units halves the translations measured in
    them: its frames' and keyframe 1's tracked pose alike, so the frames still end at keyframe 1."""
    state, first, second = _walk_on_one_keyframe()
    state.apply_similarities({first.id: (first.pose_w2c, 2.0), second.id: (_x(0.05), 2.0)})
    assert second.tracked_from_anchor is not None
    assert float(second.tracked_from_anchor.data[0]) == pytest.approx(0.025)
    assert _centres_x(state) == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.055, 0.06], abs=1e-5)
