"""The backend's flow cache: a keyframe pair's correspondences are reused while its reprojection
stays put, recomputed once it moves, and dropped with the keyframes."""

from __future__ import annotations

import pytest
import torch

from apps.cli import main
from networks.classical_motion import ClassicalMotionConfig, ClassicalMotionModule
from slam.geometry.lie import SE3
from slam.geometry.solver import all_pairs_edges
from slam.io.sources.synthetic import SyntheticSource
from slam.system.flow_cache import FlowCache
from tests.system.test_slam import ate_and_path


class _Counting(ClassicalMotionModule):
    """The classical module, counting the pairs it computes."""

    def __init__(self):
        super().__init__(ClassicalMotionConfig(input_size=(240, 320)))
        self.pairs = 0

    def flow(self, features, depths, poses, intrinsics, ii, jj, image_size):
        self.pairs += len(ii)
        return super().flow(features, depths, poses, intrinsics, ii, jj, image_size)


@pytest.fixture(scope="module")
def three_keyframes():
    """Features (1, 3, 1, h, w), depths (1, 3, h, w), poses SE3 (1, 3) and (1, 4) intrinsics."""
    source = SyntheticSource("room", 0, 9, 240, 320)
    frames = list(source)[::4]
    images = torch.stack([torch.from_numpy(f.image).permute(2, 0, 1).float() / 255 for f in frames])[None]
    features = ClassicalMotionModule(ClassicalMotionConfig(input_size=(240, 320))).encode(images)
    depths = torch.stack(
        [
            torch.nn.functional.interpolate(
                torch.from_numpy(f.depth_gt)[None, None].float(), size=(120, 160), mode="nearest"
            )[0, 0]
            for f in frames
        ]
    )[None]
    poses = SE3.stack([SE3.from_matrix(torch.from_numpy(f.pose_gt).float()).inv() for f in frames]).view(1, 3)
    return features, depths, poses, torch.from_numpy(source.output_camera.intrinsics).float()[None]


def test_pairs_are_reused_until_their_reprojection_moves_and_dropped_with_their_keyframes(three_keyframes):
    features, depths, poses, intrinsics = three_keyframes
    module = _Counting()
    cache = FlowCache(module, tolerance=0.5)
    ii, jj = all_pairs_edges(3)
    first = cache.flow([10, 11, 12], features, depths, poses, intrinsics, ii, jj, (240, 320))
    assert module.pairs == 6 and cache.computed == 6 and cache.reused == 0
    direct = module.flow(features, depths, poses, intrinsics, ii, jj, (240, 320))
    assert torch.allclose(first.targets, direct.targets) and torch.allclose(first.weights, direct.weights)
    module.pairs = 0

    again = cache.flow([10, 11, 12], features, depths, poses, intrinsics, ii, jj, (240, 320))
    assert module.pairs == 0 and cache.reused == 6
    assert torch.equal(again.targets, first.targets)

    # keyframe 12 moves 1 mm: every pair is reused, with its residual taken at the new reprojection
    nudged = SE3.stack([poses[0, 0], poses[0, 1], SE3.exp(torch.tensor([0.001, 0, 0, 0, 0, 0])) * poses[0, 2]]).view(
        1, 3
    )
    near = cache.flow([10, 11, 12], features, depths, nudged, intrinsics, ii, jj, (240, 320))
    assert module.pairs == 0 and cache.reused == 12 and torch.equal(near.targets, first.targets)
    touching = (ii == 2) | (jj == 2)
    assert not torch.equal(near.residual[:, touching], first.residual[:, touching])

    # keyframe 12 moves 0.1 m sideways: its four pairs reproject elsewhere, the other two stay
    moved = SE3.stack([poses[0, 0], poses[0, 1], SE3.exp(torch.tensor([0.1, 0, 0, 0, 0, 0])) * poses[0, 2]]).view(1, 3)
    after = cache.flow([10, 11, 12], features, depths, moved, intrinsics, ii, jj, (240, 320))
    assert module.pairs == 4 and cache.reused == 14
    assert torch.equal(after.targets[:, ~touching], first.targets[:, ~touching])
    assert not torch.equal(after.targets[:, touching], first.targets[:, touching])

    # a window without keyframe 10: its pairs leave the cache, so it comes back recomputed
    cache.flow([11, 12], features[:, 1:], depths[:, 1:], moved[:, 1:], intrinsics, *all_pairs_edges(2), (240, 320))
    module.pairs = 0
    cache.flow([10, 11, 12], features, depths, moved, intrinsics, ii, jj, (240, 320))
    assert module.pairs == 4


@pytest.mark.slow
def test_a_run_reusing_the_backend_flows_with_one_step_tracking_tracks_as_well(tmp_path):
    """The two speed options together, end to end (``v2d run``)."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "synthetic",
                "--out",
                str(out),
                "--max-frames",
                "60",
                "--set",
                "backend.mode=inline",
                "--set",
                "backend.flow_reuse=0.5",
                "--set",
                "frontend.tracking_confident=0.3",
            ]
        )
        == 0
    )
    ate, path = ate_and_path(out)
    assert ate < 0.03 * path, (ate, path)
