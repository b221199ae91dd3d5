"""Tracking a frame against the keyframe: the early stop on a confident flow and the pooled solve."""

from __future__ import annotations

import dataclasses

import pytest

from networks.flow_geometry import feature_intrinsics
from slam.config.loader import override
from slam.config.schema import SystemConfig
from slam.io.sources.synthetic import SyntheticSource
from slam.system.frontend import Frontend, image_tensor, induced_flow
from slam.system.slam_system import SlamSystem


@pytest.fixture(scope="module")
def initialised():
    """A system initialised on the first 4 synthetic room frames, and the next frame."""
    config = override(SystemConfig(), "modules.depth=classical", "modules.motion=classical", "backend.mode=disabled",
                      "fusion.mesh=false", "frontend.init_frames=4")
    source = SyntheticSource("room", 0, 5, 240, 320)
    frames = list(source)
    system = SlamSystem(config, source.output_camera)
    for frame in frames[:4]:
        system.process(frame)
    assert system.frontend.keyframe is not None
    return system, frames[4]


def _track(frontend: Frontend, frame, calls: list, monkeypatch, **settings):
    """Track ``frame`` with ``settings`` replacing the frontend's, counting the flow computations."""
    monkeypatch.setattr(frontend, "config", dataclasses.replace(frontend.config, **settings))
    monkeypatch.setattr(frontend, "_keyframe_small_depth", None)
    flow = frontend.motion_module.flow
    monkeypatch.setattr(frontend.motion_module, "flow", lambda *args: calls.append(1) or flow(*args))
    features = frontend.motion_module.encode(image_tensor(frame, frontend.device)[None, None])[0, 0]
    result = frontend.track(features, frontend._last[0])
    monkeypatch.undo()
    return result


def test_a_confident_flow_stops_tracking_after_one_step_and_a_doubtful_one_takes_more(initialised, monkeypatch):
    system, frame = initialised
    frontend = system.frontend
    one, every = [], []
    relative, quality, _, _ = _track(frontend, frame, one, monkeypatch, tracking_steps=3, tracking_confident=0.3)
    assert quality >= 0.3 and len(one) == 1
    relative_every, _, _, _ = _track(frontend, frame, every, monkeypatch, tracking_steps=3, tracking_confident=None)
    assert len(every) == 3
    # the further steps move the pose by a fraction of a pixel: the first had solved it
    depth, _ = frontend._small_keyframe_depth()
    change, _ = induced_flow(depth, relative_every * relative.inv(), _feature_intrinsics(frontend))
    assert change < 0.5, change


def test_the_pooled_tracking_solve_agrees_with_the_full_grid(initialised, monkeypatch):
    system, frame = initialised
    frontend = system.frontend
    full, _, full_flow, _ = _track(frontend, frame, [], monkeypatch, tracking_pool=1, tracking_confident=None)
    pooled, _, pooled_flow, _ = _track(frontend, frame, [], monkeypatch, tracking_pool=2, tracking_confident=None)
    assert full_flow > 2.0  # the frame has moved: the test is not on a still camera
    depth, _ = frontend._small_keyframe_depth()
    change, _ = induced_flow(depth, pooled * full.inv(), _feature_intrinsics(frontend))
    assert change < 0.3, change
    assert abs(pooled_flow - full_flow) < 0.05 * full_flow


def _feature_intrinsics(frontend: Frontend):
    """(4,) intrinsics at the motion module's feature resolution."""
    module = frontend.motion_module
    return feature_intrinsics(frontend.intrinsics[None], frontend.image_size, module.config.input_size, module.stride)[0]
