"""The global bundle adjustment at a run's end: its graph's edges (temporal ones inside a map
segment, loops across), and on a synthetic run, keyframes knocked off their poses after tracking
are brought back by it, the frames tracked against them follow, and the map is fused again."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slam.config.loader import override
from slam.config.schema import BackendConfig, SystemConfig
from slam.evaluation.trajectory import associate_and_align
from slam.geometry.lie import SE3
from slam.io.sources.synthetic import SyntheticSource
from slam.io.trajectory import Trajectory
from slam.system.global_bundle import graph_edges
from slam.system.loop_closure import LoopEdge
from slam.system.map import Keyframe, MapState
from slam.system.slam_system import SlamSystem


def test_temporal_edges_stay_inside_a_segment_and_loops_cross():
    """Keyframes 0-9 with a cold start at 5: temporal edges to the next two keyframes of the same
    segment (none from 3 or 4 to 5 or 6); a loop from 8 to 1 joins the two; a loop between two
    keyframes a temporal edge joins already is not counted twice."""
    map_state = MapState()
    for k in range(10):
        anchor = None if k in (0, 5) else k - 1
        keyframe = Keyframe(k, k, float(k), None, SE3.identity(), None, None, anchor_id=anchor)
        keyframe.place_features, keyframe.place_depth = torch.zeros(1, 8, 8), torch.ones(4, 4)
        map_state.add_keyframe(keyframe)
    loops = [LoopEdge(8, 1, torch.zeros(8), "appearance"), LoopEdge(9, 8, torch.zeros(8), "proximity")]
    config = BackendConfig(covisible=0)
    edges = graph_edges(map_state.keyframe_list(), loops, config, 2, torch.tensor([8.0, 8.0, 4.0, 4.0]), (16, 16))
    assert sorted(edges["temporal"]) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4)] + [
        (5, 6),
        (5, 7),
        (6, 7),
        (6, 8),
        (7, 8),
        (7, 9),
        (8, 9),
    ]
    assert edges["loop"] == [(1, 8)] and edges["covisible"] == []


def _keyframe_errors(map_state: MapState, truth: np.ndarray) -> np.ndarray:
    """Each keyframe's camera-centre distance to the truth (metres) after a Sim(3) fit of all."""
    keyframes = map_state.keyframe_list()
    times = np.array([float(kf.frame_index) for kf in keyframes])
    estimate = np.stack([kf.pose_c2w for kf in keyframes])
    reference = np.stack([truth[kf.frame_index] for kf in keyframes])
    aligned = associate_and_align(Trajectory(times, reference), Trajectory(times, estimate), "sim3")
    positions = estimate[:, :3, 3] @ aligned.transform[:3, :3].T + aligned.transform[:3, 3]
    return np.linalg.norm(positions - reference[:, :3, 3], axis=1)


@pytest.mark.slow
def test_final_bundle_adjustment_brings_knocked_keyframes_back_in_an_export_and_at_the_end():
    """120 frames of the synthetic room, tracked inline; then every keyframe but the first is
    moved by about 5% of the scene depth and 2 degrees at random. An export while the run goes on
    gets a copy of the map refined by the global bundle adjustment, with every keyframe fused at
    the copy's poses, and leaves the live map as it was; ``finish`` then refines the live map:
    both bring the keyframes back to within the error tracking left them at, report what they
    did, and the map is fused again at the new poses."""
    frames = list(SyntheticSource.from_spec("synthetic:room:frames=120"))
    config = override(
        SystemConfig(), "backend.mode=inline", "fusion.mesh=false", "backend.final_bundle_adjustment=true"
    )
    system = SlamSystem(config, frames[0].camera)
    for frame in frames:
        system.process(frame)
    truth = np.stack([f.pose_gt for f in frames])
    tracked = _keyframe_errors(system.map, truth)
    keyframes = system.map.keyframe_list()
    depth = float(
        torch.stack([kf.place_depth.float().median() for kf in keyframes if kf.place_depth is not None]).median()
    )
    noise = torch.randn(len(keyframes) - 1, 6, generator=torch.Generator().manual_seed(0))
    noise[:, :3] *= 0.05 * depth / 3**0.5
    noise[:, 3:] *= np.radians(2.0) / 3**0.5
    with system.map.lock:
        for keyframe, xi in zip(keyframes[1:], noise):
            keyframe.pose_w2c = SE3.exp(xi) * keyframe.pose_w2c
    knocked = _keyframe_errors(system.map, truth)
    knocked_poses = system.snapshot(with_images=False).frame_poses_c2w

    export = system.export_map()
    try:
        exported = MapState()
        for view in export.snapshot.keyframes:  # the export's keyframe poses, to score
            pose = SE3.from_matrix(torch.from_numpy(np.linalg.inv(view.pose_c2w)).float())
            exported.add_keyframe(Keyframe(view.id, view.frame_index, view.timestamp, None, pose, None, None))
        assert export.global_bundle is not None and export.global_bundle.keyframes == len(keyframes)
        assert export.own_fusion and export.held == [] and len(export.fusion) == len(keyframes)
        assert len(export.fusion.cloud()) > 0
    finally:
        export.close()
    in_export = _keyframe_errors(exported, truth)
    np.testing.assert_array_equal(system.snapshot(with_images=False).frame_poses_c2w, knocked_poses)
    assert system.archive.moved_since_fusion()  # the live map is not fused again by an export

    system.finish()
    after = _keyframe_errors(system.map, truth)
    report = system.global_bundle_report
    # finish adds the keyframe still being computed when the frames ended
    assert report is not None and report.keyframes == len(system.map.keyframes) and report.edges["temporal"] > 0
    errors = (np.median(tracked), np.median(knocked), np.median(in_export), np.median(after))
    assert errors[2] < 0.4 * errors[1] and errors[2] < 1.2 * errors[0], errors
    assert errors[3] < 0.4 * errors[1] and errors[3] < 1.2 * errors[0], errors
    assert not system.archive.moved_since_fusion()  # fused again at the final poses
    final_export = system.export_map()  # once finished: the map as it is
    assert final_export.fusion is system.fusion and not final_export.own_fusion
