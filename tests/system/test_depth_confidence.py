"""A keyframe's confidence after the dense bundle adjustment is its depth's view support: the
frontend's refinement replaces the depth module's confidence by it, each backend pass raises it
where the pass's views pin the depth down better, and pixels the depth module gave no depth stay
at 0. Well-supported pixels are the more accurate ones, which is what fusion keeps."""

from __future__ import annotations

import pytest
import torch

from slam.io.sources.synthetic import SyntheticSource
from slam.system.backend import Backend
from tests.system.classical_systems import classical_system


@pytest.fixture(scope="module")
def frames():
    """Thirty frames of the synthetic room at 240 x 320."""
    return list(SyntheticSource("room", 0, 30, 240, 320))


def test_keyframe_confidence_is_the_most_view_support_any_adjustment_gave(frames, monkeypatch):
    system = classical_system(frames, "backend.mode=inline", "frontend.keyframe_lag=0")
    seen: dict[int, list[torch.Tensor]] = {}  # keyframe id -> its confidence before each pass, then after
    optimise = Backend.optimise

    def recording(backend: Backend) -> bool:
        window = backend.window()
        before = {kf.id: kf.confidence.clone() for kf in window if kf.confidence is not None}
        done = optimise(backend)
        for kf in window:
            if kf.id in before and kf.confidence is not None:
                seen.setdefault(kf.id, []).append(torch.stack([before[kf.id], kf.confidence]))
        return done

    monkeypatch.setattr(Backend, "optimise", recording)
    for frame in frames:
        system.process(frame)
    assert len(seen) >= 3
    for pairs in seen.values():
        for before, after in pairs:
            assert bool((after >= before).all())  # raised, never lowered
            assert bool((after[before == 0] == 0).all())  # no depth from the depth module: still none
            assert float(after.max()) <= 1.0 + 1e-6
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
