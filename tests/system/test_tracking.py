"""Tracking a frame against the keyframe: the early stop on a confident flow and the pooled solve;
the keyframe policy's decisions."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from networks.flow_geometry import feature_intrinsics
from slam.config.loader import override
from slam.config.schema import SystemConfig
from slam.geometry.lie import SE3
from slam.io.sources.synthetic import SyntheticSource
from slam.system.frontend import Frontend, image_tensor
from slam.system.keyframe_policy import is_lost, keyframe_reason
from slam.system.slam_system import SlamSystem
from slam.system.tracker import Tracker, TrackingResult, induced_flow
from tests.geometry.test_projection import INTRINSICS, smooth_depth


@pytest.fixture(scope="module")
def initialised():
    """A system initialised on the first 4 synthetic room frames, and the next frame."""
    config = override(
        SystemConfig(),
        "modules.depth=classical",
        "modules.motion=classical",
        "backend.mode=disabled",
        "fusion.mesh=false",
        "frontend.init_frames=4",
    )
    source = SyntheticSource("room", 0, 5, 240, 320)
    frames = list(source)
    system = SlamSystem(config, source.output_camera)
    for frame in frames[:4]:
        system.process(frame)
    assert system.frontend.keyframe is not None
    return system, frames[4]


def _track(frontend: Frontend, frame, calls: list, monkeypatch, **settings) -> TrackingResult:
    """Track ``frame`` against the frontend's keyframe with a tracker whose settings are
    ``settings`` over the frontend's, counting the flow computations."""
    module = frontend.motion_module
    tracker = Tracker(
        module,
        dataclasses.replace(frontend.config, **settings),
        frontend.intrinsics,
        frontend.image_size,
        frontend.device,
    )
    flow = module.flow
    monkeypatch.setattr(module, "flow", lambda *args: calls.append(1) or flow(*args))
    features = module.encode(image_tensor(frame, frontend.device)[None, None])[0, 0]
    result = tracker.track(frontend.keyframe, features, frontend.start_pose())
    monkeypatch.undo()
    return result


def test_a_confident_flow_stops_tracking_after_one_step_and_a_doubtful_one_takes_more(initialised, monkeypatch):
    system, frame = initialised
    frontend = system.frontend
    one, every = [], []
    first = _track(frontend, frame, one, monkeypatch, tracking_steps=3, tracking_confident=0.3)
    assert first.quality >= 0.3 and len(one) == 1
    every_step = _track(frontend, frame, every, monkeypatch, tracking_steps=3, tracking_confident=None)
    assert len(every) == 3
    # the further steps move the pose by a fraction of a pixel: the first had solved it
    _, depth, _ = frontend.tracker.reference(frontend.keyframe)
    change, _ = induced_flow(
        depth, every_step.frame_from_keyframe * first.frame_from_keyframe.inv(), _feature_intrinsics(frontend)
    )
    assert change < 0.5, change


def test_the_pooled_tracking_solve_agrees_with_the_full_grid(initialised, monkeypatch):
    system, frame = initialised
    frontend = system.frontend
    full = _track(frontend, frame, [], monkeypatch, tracking_pool=1, tracking_confident=None)
    pooled = _track(frontend, frame, [], monkeypatch, tracking_pool=2, tracking_confident=None)
    assert full.flow > 2.0  # the frame has moved: the test is not on a still camera
    _, depth, _ = frontend.tracker.reference(frontend.keyframe)
    change, _ = induced_flow(
        depth, pooled.frame_from_keyframe * full.frame_from_keyframe.inv(), _feature_intrinsics(frontend)
    )
    assert change < 0.3, change
    assert abs(pooled.flow - full.flow) < 0.05 * full.flow


def _feature_intrinsics(frontend: Frontend):
    """(4,) intrinsics at the motion module's feature resolution."""
    module = frontend.motion_module
    return feature_intrinsics(frontend.intrinsics[None], frontend.image_size, module.config.input_size, module.stride)[
        0
    ]


def _result(quality: float = 0.9, flow: float = 1.0, parallax: float = 0.5, finite: bool = True) -> TrackingResult:
    pose = SE3.identity() if finite else SE3(SE3.identity().data * float("nan"))
    return TrackingResult(pose, quality, flow, parallax, residual=0.5)


def test_the_keyframe_policy_names_the_first_criterion_that_fires():
    config = SystemConfig().frontend
    assert keyframe_reason(_result(), config) is None
    assert (
        keyframe_reason(_result(parallax=config.keyframe_parallax + 1, flow=config.keyframe_flow + 1), config)
        == "parallax"
    )
    assert keyframe_reason(_result(flow=config.keyframe_flow + 1), config) == "flow"
    # a turn on the spot: the image moves, the translation does not: keyframe by flow only past its bound
    assert keyframe_reason(_result(flow=config.keyframe_flow - 1, parallax=0.0), config) is None
    assert keyframe_reason(_result(quality=config.keyframe_quality - 0.01), config) == "quality"
    # the bounds are strict: at the bound itself the frame stays an ordinary one
    at_bounds = _result(quality=config.keyframe_quality, flow=config.keyframe_flow, parallax=config.keyframe_parallax)
    assert keyframe_reason(at_bounds, config) is None


def test_a_frame_is_lost_below_the_least_quality_or_with_a_pose_that_is_not_finite():
    config = SystemConfig().frontend
    assert not is_lost(_result(quality=config.min_quality), config)
    assert is_lost(_result(quality=config.min_quality - 0.01), config)
    assert is_lost(_result(finite=False), config)


def test_a_turn_on_the_spot_moves_the_image_without_parallax():
    depth = smooth_depth(1, 24, 32, torch.float32)[0]
    intrinsics = INTRINSICS[0]
    turn = SE3.exp(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.05, 0.0]))
    flow, parallax = induced_flow(depth, turn, intrinsics)
    assert flow > 2.0 and parallax < 1e-3 * flow
    step = SE3.exp(torch.tensor([0.2, 0.0, 0.0, 0.0, 0.0, 0.0]))
    flow, parallax = induced_flow(depth, step, intrinsics)
    assert flow > 2.0 and parallax == pytest.approx(flow, rel=1e-5)
    # a sideways step while turning back towards the scene: less flow than parallax
    orbit = SE3.exp(torch.tensor([0.2, 0.0, 0.0, 0.0, -0.08, 0.0]))
    flow, parallax = induced_flow(depth, orbit, intrinsics)
    assert parallax > 2.0 * flow


def test_induced_flow_leaves_out_pixels_without_depth_even_when_they_hold_nan():
    """A pixel whose depth is unknown (0) or not a number adds nothing to the means; with no pixel
    in front of the camera both are 0."""
    depth = smooth_depth(1, 24, 32, torch.float32)[0]
    motion = SE3.exp(torch.tensor([0.1, 0.05, 0.0, 0.02, 0.03, 0.0]))
    unknown, broken = depth.clone(), depth.clone()
    unknown[3:6, 4:9] = 0.0
    broken[3:6, 4:9] = float("nan")
    expected = induced_flow(unknown, motion, INTRINSICS[0])
    assert all(math.isfinite(value) and value > 0 for value in expected)
    assert induced_flow(broken, motion, INTRINSICS[0]) == pytest.approx(expected, rel=1e-6)
    behind = SE3.exp(torch.tensor([0.0, 0.0, -100.0, 0.0, 0.0, 0.0]))
    assert induced_flow(depth, behind, INTRINSICS[0]) == (0.0, 0.0)
