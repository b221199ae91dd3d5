"""The map reused, end to end on synthetic rooms: after a blackout the camera is relocalized in the
same map, at the same scale; a place the map has never seen is not accepted; a camera that walks
back along its path is optimised against the keyframes it made on the way out and ends where it
started."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from slam.config.loader import override
from slam.config.schema import SystemConfig
from slam.evaluation.trajectory import associate_and_align
from slam.io.sources.synthetic import SyntheticSource
from slam.io.trajectory import Trajectory
from slam.system.slam_system import SlamSystem, full_trajectory

CONFIG = ("backend.mode=inline", "fusion.mesh=false")


def _run(frames: list, extra: tuple[str, ...] = ()) -> tuple[SlamSystem, np.ndarray, np.ndarray]:
    """Run the default system on ``frames``; the estimated camera-to-world poses of every frame
    and the mask of the tracked ones."""
    system = SlamSystem(override(SystemConfig(), *CONFIG, *extra), frames[0].camera)
    for frame in frames:
        system.process(frame)
    system.finish()
    indices = np.array([f.index for f in frames])
    timestamps = np.array([f.timestamp for f in frames])
    trajectory, tracked = full_trajectory(system.snapshot(with_images=False), indices, timestamps)
    return system, trajectory.poses, tracked


def there_and_back(kind: str, seed: int, frames: int) -> list:
    """The frames of a synthetic sequence played forward, then backward to the first (the camera
    walks back along its own path), indexed and timed in playing order (30 Hz)."""
    played = list(SyntheticSource(kind, seed, frames))
    played += [copy.copy(frame) for frame in played[-2::-1]]
    for k, frame in enumerate(played):
        frame.index, frame.timestamp = k, k / 30.0
    return played


@pytest.mark.slow
@pytest.mark.parametrize(
    ("relocalize_frames", "loops", "ending"), [(30, True, "relocalized"), (0, False, "apart"), (0, True, "joined")]
)
def test_after_a_blackout_of_30_frames_tracking_resumes_in_the_same_map_at_the_true_pose(
    relocalize_frames, loops, ending
):
    """A hand-held camera walks through a room and back; 30 frames around the turn are black
    (lost at frame 50 going out, light again at frame 80 = the 38th on the way back). The first
    frame after the blackout is relocalized against the map: aligned (Sim(3)) on the frames
    before the blackout only, the frames after it land within a few centimetres of the truth
    (measured: 3 mm at the first, 3 cm median). Without relocalization a new map starts at the
    last tracked pose, where the camera was 11 frames (about 0.2 m) before: without loop closure
    it stays 0.19-0.99 m off in measured runs, as the new map's scale varies; with loop closure a
    loop from the new segment to the old map joins them (the old segment's keyframes are
    candidates at once, however few keyframes the blackout left between them): the old segment
    moves to meet the new one, and the frames after the blackout are within a few centimetres of
    the truth (measured: 3-28 mm, a median of 7-9 mm)."""
    frames = there_and_back("room", 0, 60)
    for frame in frames[50:80]:
        frame.image = np.zeros_like(frame.image)
    extra = (f"frontend.relocalize_frames={relocalize_frames}", f"backend.loops={str(loops).lower()}")
    system, poses, tracked = _run(frames, extra)
    counts = system.frontend.counts
    assert counts["blank"] == 30 and tracked[:50].all() and tracked[80:].mean() > 0.9, (counts, tracked)
    found = ending == "relocalized"
    assert (counts["initialisations"], counts["relocalizations"] > 0) == ((1, True) if found else (2, False)), counts
    assert system.loop_closer.segments_joined() == (1 if ending == "joined" else 0)
    indices = np.arange(len(frames))
    truth = np.stack([f.pose_gt for f in frames])
    before, after = tracked & (indices < 50), tracked & (indices >= 80)
    aligned = associate_and_align(
        Trajectory(indices[before] / 30.0, truth[before]), Trajectory(indices[before] / 30.0, poses[before]), "sim3"
    )
    positions = poses[after][:, :3, 3] @ aligned.transform[:3, :3].T + aligned.transform[:3, 3]
    errors = np.linalg.norm(positions - truth[after][:, :3, 3], axis=1)
    if ending == "relocalized":
        assert errors[0] < 0.03 and np.median(errors) < 0.08, errors
    elif ending == "joined":
        assert np.median(errors) < 0.04, errors
    else:
        assert errors[0] > 0.1, errors


@pytest.mark.slow
def test_a_place_the_map_has_never_seen_is_not_relocalized_against_it():
    """The map is built in one room; then the camera is in another room: every candidate fails
    the geometric verification, and after ``relocalize_frames`` frames a new map segment starts."""
    first = list(SyntheticSource("room", 0, 40))
    second = list(SyntheticSource("room", 3, 40))
    for k, frame in enumerate(second):
        frame.index = 40 + k
    system, _, tracked = _run(first + second, ("frontend.relocalize_frames=10",))
    counts = system.frontend.counts
    assert counts["relocalizations"] == 0, counts
    assert counts["initialisations"] == 2, counts
    assert system.frontend.relocalizer.attempts >= 10


@pytest.mark.slow
def test_a_camera_that_walks_back_along_its_path_ends_where_it_started():
    """100 frames out and 99 back: with the older covisible keyframes in the backend's window the
    estimated path closes (measured: a return gap of 0.05% of the path); with the newest
    keyframes only it does not (1.2%). Keyframe reuse is off: it closes the path by itself (a
    gap of 0.01% either way), as tests/system/test_keyframe_reuse.py shows."""
    frames = there_and_back("room", 0, 100)
    gaps = {}
    for covisible in (2, 0):
        _, poses, tracked = _run(frames, (f"backend.covisible={covisible}", "frontend.reuse_keyframes=0"))
        assert tracked.all()
        positions = poses[:, :3, 3]
        path = np.linalg.norm(np.diff(positions, axis=0), axis=1).sum()
        gaps[covisible] = np.linalg.norm(positions[-1] - positions[0]) / path
    assert gaps[2] < 0.005 and gaps[0] > 2 * gaps[2], gaps
