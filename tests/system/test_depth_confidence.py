"""A keyframe's confidence after the dense bundle adjustment is its depth's view support: the
frontend's refinement (or, for a keyframe it did not refine, the first backend pass) replaces the
depth module's confidence by it where that was confident, later passes raise it where they pin
the depth down better, and pixels without depth stay at 0 while those with depth never fall to
it. Well-supported pixels are the more accurate ones, which is what fusion keeps."""

from __future__ import annotations

import pytest
import torch

from slam.io.sources.synthetic import SyntheticSource
from slam.system.backend import Backend
from slam.system.bundle import UNSUPPORTED_DEPTH
from slam.system.map import CONFIDENT_DEPTH
from tests.system.classical_systems import classical_system


@pytest.fixture(scope="module")
def frames():
    """Thirty frames of the synthetic room at 240 x 320."""
    return list(SyntheticSource("room", 0, 30, 240, 320))


def test_keyframe_confidence_is_the_most_view_support_any_adjustment_gave(frames, monkeypatch):
    system = classical_system(frames, "backend.mode=inline", "frontend.keyframe_lag=0")
    # keyframe id -> (its confidence before a pass, after it, whether it was a view support before)
    seen: dict[int, list[tuple[torch.Tensor, torch.Tensor, bool]]] = {}
    optimise = Backend.optimise

    def recording(backend: Backend) -> bool:
        window = backend.window()
        before = {kf.id: (kf.confidence.clone(), kf.confidence_from_views) for kf in window}
        done = optimise(backend)
        if not done:  # too few keyframes for a pass: nothing written
            return done
        for kf in window:
            assert kf.confidence_from_views
            seen.setdefault(kf.id, []).append((*before[kf.id][:1], kf.confidence.clone(), before[kf.id][1]))
        return done

    monkeypatch.setattr(Backend, "optimise", recording)
    for frame in frames:
        system.process(frame)
    assert len(seen) >= 3
    flags = [from_views for passes in seen.values() for _, _, from_views in passes]
    assert any(flags) and not all(flags)  # the cold start's keyframes were not refined, the others were
    for passes in seen.values():
        for before, after, from_views in passes:
            # a depth: the depth module's confident one, or any once the views support it
            has_depth = before > 0 if from_views else before > CONFIDENT_DEPTH
            if from_views:
                assert bool((after >= before).all())  # raised, never lowered
            assert bool((after[~has_depth] == 0).all())  # no depth: still none
            assert bool((after[has_depth] >= UNSUPPORTED_DEPTH).all())  # never marked as none
            assert float(after.max()) <= 1.0
    # supported pixels are the accurate ones: the upper half of the support has the smaller error
    by_index = {frame.index: frame for frame in frames}
    strong_errors, weak_errors = [], []
    for keyframe in system.map.keyframe_list():
        truth = torch.from_numpy(by_index[keyframe.frame_index].depth_gt).float()
        depth, confidence = keyframe.depth.float(), keyframe.confidence.float()
        valid = (truth > 0) & (confidence > 0)
        scale = (truth[valid] / depth[valid]).median()
        error = (scale * depth - truth).abs() / truth.clamp(min=1e-6)
        strong = valid & (confidence >= confidence[valid].median())
        strong_errors.append(error[strong])
        weak_errors.append(error[valid & ~strong])
    strong_error, weak_error = torch.cat(strong_errors).mean(), torch.cat(weak_errors).mean()
    assert float(strong_error) < 0.8 * float(weak_error), (float(strong_error), float(weak_error))
    system.finish()
