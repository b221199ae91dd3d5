"""The viewer's parts that need no display: choosing the viewer, the run controller (pause,
stop, export now), the live scene read from a run, the frustum geometry and the software
renderer."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from apps.cli import main
from slam.config.loader import override
from slam.config.schema import SystemConfig
from slam.io.sources.synthetic import SyntheticSource
from slam.io.trajectory import read_trajectory
from slam.mapping.point_cloud import PointCloud
from slam.system.run import RunControl, run_slam
from viewer import default_viewer, panels
from viewer.geometry import frustum_segments, grid_segments, to_display
from viewer.scene import LiveScene, SceneState
from viewer.software_render import render

FAST = ("backend.mode=inline", "fusion.mesh=false")


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_default_viewer_follows_the_display_and_the_environment(monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "V2D_VIEWER"):
        monkeypatch.delenv(name, raising=False)
    assert default_viewer() == "none"
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert default_viewer() == "qt"
    monkeypatch.setenv("V2D_VIEWER", "open3d")
    assert default_viewer() == "open3d"
    monkeypatch.setenv("V2D_VIEWER", "nonsense")
    assert default_viewer() == "qt"


def test_viewer_options_without_a_viewer_are_one_line_errors(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["run", "synthetic", "--out", out, "--viewer", "none", "--screenshot", str(tmp_path / "s.png")]) == 2
    assert "need a viewer" in capsys.readouterr().err
    assert main(["run", "synthetic", "--out", out, "--viewer", "open3d", "--snapshot-every", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["run", "synthetic", "--out", out, "--viewer", "qt", "--snapshot-dir", out]) == 2
    assert "needs --snapshot-every" in capsys.readouterr().err


def test_qt_viewer_without_a_display_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["run", "synthetic", "--out", str(tmp_path / "o"), "--viewer", "qt", "--max-frames", "2"]) == 2
    assert "needs a display" in capsys.readouterr().err


@pytest.mark.slow
def test_run_control_pauses_exports_and_stops_with_the_outputs_saved(tmp_path):
    control = RunControl()
    control.pause()
    result = {}
    source = SyntheticSource("room", 0, 60, None, None)
    config = SystemConfig()  # with the mesh: an export meshes a copy of the volume and the live keyframes
    thread = threading.Thread(
        target=lambda: result.update(
            stats=run_slam(source, config, tmp_path, save_depth=True, control=control, save_views=True)
        ),
        daemon=True,
    )
    thread.start()
    wait_for(lambda: control.record is not None)
    time.sleep(1.0)
    assert len(control.record.indices) == 0 and not control.done.is_set()  # paused before the first frame
    control.resume()
    wait_for(lambda: len(control.record.indices) >= 12)
    assert control.status in ("tracked", "keyframe") and control.frame.index in control.record.indices
    control.request_export()
    wait_for(lambda: control.exports == 1)
    exported_stats = json.loads((tmp_path / "stats.json").read_text())
    exported = exported_stats["frames_processed"]
    assert 12 <= exported < 60
    assert exported_stats["mesh_triangles"] > 0 and (tmp_path / "mesh.ply").stat().st_size > 0
    # the fused keyframes' depth maps and images were written as they were fused, the live ones
    # by the export
    assert len(list((tmp_path / "depth").glob("*.npy"))) >= exported_stats["keyframes"]
    assert exported_stats["posed_views"] == exported_stats["keyframes"]
    assert len(list((tmp_path / "views" / "images").glob("*.jpg"))) >= exported_stats["keyframes"]
    control.request_stop()
    thread.join(60)
    assert control.done.is_set()
    stats = result["stats"]  # no error: a stop ends the run as if the source had ended
    assert exported <= stats["frames_processed"] < 60
    assert len(read_trajectory(tmp_path / "trajectory.txt")) == stats["frames_processed"]
    assert (tmp_path / "points.ply").stat().st_size > 0
    assert len(list((tmp_path / "depth").glob("*.npy"))) == stats["keyframes"]
    assert stats["posed_views"] == stats["keyframes"]


@pytest.mark.slow
def test_export_now_writes_the_map_refined_by_the_global_bundle_adjustment_while_the_run_goes_on(tmp_path):
    """With ``backend.final_bundle_adjustment``, Export now refines a copy of the map and fuses it
    anew: the export's stats report the adjustment, its depth maps and trajectory are written,
    and the run then goes on to its end, where it runs the adjustment again on the live map."""
    control = RunControl()
    result = {}
    source = SyntheticSource("room", 0, 90, None, None)
    config = override(SystemConfig(), "fusion.mesh=false", "backend.final_bundle_adjustment=true")
    thread = threading.Thread(
        target=lambda: result.update(stats=run_slam(source, config, tmp_path, save_depth=True, control=control)),
        daemon=True,
    )
    thread.start()
    wait_for(lambda: control.system is not None and len(control.system.map.keyframes) >= 4)
    control.request_export()
    control.pause()  # the export starts at the next frame; the run then waits for the checks below
    wait_for(lambda: control.exports == 1)
    exported_stats = json.loads((tmp_path / "stats.json").read_text())
    refined = exported_stats["final_bundle_adjustment"]
    assert not exported_stats["completed"] and refined is not None
    assert refined["keyframes"] == exported_stats["keyframes"] >= 4 and refined["edges"]["temporal"] > 0
    assert len(read_trajectory(tmp_path / "trajectory.txt")) == exported_stats["frames_processed"] < 90
    assert len(list((tmp_path / "depth").glob("*.npy"))) >= exported_stats["keyframes"]
    assert exported_stats["points"] > 0
    control.resume()
    thread.join(120)
    stats = result["stats"]
    assert stats["completed"] and stats["frames_processed"] == 90
    assert stats["final_bundle_adjustment"]["keyframes"] == stats["keyframes"] > exported_stats["keyframes"]


@pytest.fixture(scope="module")
def finished_scene(tmp_path_factory) -> LiveScene:
    """The live scene of a finished 24-frame synthetic run."""
    control = RunControl()
    run_slam(
        SyntheticSource("room", 0, 24, None, None),
        override(SystemConfig(), *FAST),
        tmp_path_factory.mktemp("run"),
        control=control,
    )
    return LiveScene(control)


@pytest.mark.slow
def test_live_scene_reads_the_run(finished_scene):
    state = finished_scene.update(force=True)
    control = finished_scene.control
    assert state.stats.done and state.stats.frames == 24 and state.stats.keyframes >= 2
    assert "segments   1" in state.stats.lines() and "loops      0" in state.stats.lines()  # one map, no loop
    assert len(state.trajectory) == 24 and np.allclose(state.current_pose_c2w[:3, 3], state.trajectory[-1])
    assert len(state.keyframe_poses_c2w) == state.stats.keyframes
    assert len(state.cloud) > 10_000 and state.stats.points == len(state.cloud)
    assert state.frame is control.frame.image and state.status in ("tracked", "keyframe")
    assert state.depth.shape == (*control.frame.image.shape[:2], 3) and state.depth.std() > 10
    # the ground truth, Sim3-aligned into the map, lies on the estimate (the synthetic room tracks well)
    error = np.linalg.norm(state.ground_truth - state.trajectory, axis=1)
    assert error.max() < 0.05 * state.extent(), (error.max(), state.extent())
    # the cloud surrounds the scene's depth: its median point is about one scene depth ahead
    distance = np.linalg.norm(np.median(state.cloud.points, axis=0) - state.trajectory[0])
    assert 0.3 * state.scale < distance < 3 * state.scale
    assert finished_scene.update() is None  # nothing changed since


def test_frustum_segments_reach_the_image_corners_at_the_given_depth():
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]
    segments = frustum_segments(pose[None], np.array([100.0, 100.0, 49.5, 29.5]), (100, 60), depth=2.0)
    assert segments.shape == (8, 2, 3)
    assert np.allclose(segments[:4, 0], [1, 2, 3])  # from the centre
    corners = segments[:4, 1] - [1, 2, 3]
    assert np.allclose(corners[:, 2], 2.0)
    assert np.allclose(np.abs(corners[:, :2]), [[1.0, 0.6]] * 4)  # half-width 50 px / f at depth 2
    assert np.allclose(segments[4:, 0], segments[:4, 1])  # the rectangle joins the corners
    assert np.allclose(to_display([[0.0, -1.0, 0.0]]), [[0, 0, 1]])  # world up (-y) is display up
    grid = grid_segments(np.zeros(3), level=1.5, spacing=0.5, cells=4)
    assert grid.shape == (10, 2, 3) and np.allclose(grid[..., 1], 1.5)


def _hand_made_state() -> SceneState:
    """A camera moving along x at height 0 looking down +z at an orange wall 3 units ahead."""
    ys, xs = np.mgrid[-1:1:0.02, -1.5:1.5:0.02]
    wall = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, 3.0)], 1)
    trajectory = np.stack([np.linspace(-0.5, 0.5, 20), np.zeros(20), np.zeros(20)], 1)
    poses = np.tile(np.eye(4), (20, 1, 1))
    poses[:, :3, 3] = trajectory
    state = SceneState.empty("tracked")
    state.trajectory, state.current_pose_c2w, state.keyframe_poses_c2w = trajectory, poses[-1], poses[::5]
    state.cloud = PointCloud(wall, np.tile([220, 140, 40], (len(wall), 1)))
    state.intrinsics, state.image_size, state.scale = np.array([100.0, 100.0, 63.5, 47.5]), (128, 96), 3.0
    return state


def _share(image: np.ndarray, colour, tolerance: int = 40) -> float:
    return float(np.all(np.abs(image.astype(int) - colour) < tolerance, axis=-1).mean())


def test_software_render_draws_the_cloud_and_every_line_layer():
    state = _hand_made_state()
    image = render(state, 480, 360)
    assert image.shape == (360, 480, 3)
    assert _share(image, (220, 140, 40)) > 0.03  # the wall covers a region
    for colour in (panels.TRAJECTORY, panels.KEYFRAMES, panels.CAMERA):
        assert _share(image, colour) > 2e-4, colour
    assert _share(image, panels.GROUND_TRUTH) == 0  # no ground truth given
    state.ground_truth = state.trajectory + [0.0, 0.2, 0.0]
    assert _share(render(state, 480, 360), panels.GROUND_TRUTH) > 2e-4
    empty = render(SceneState.empty(), 480, 360)
    assert _share(empty, panels.TRAJECTORY) == 0 and _share(empty, (220, 140, 40)) == 0


def test_side_panel_shows_the_frame_status_and_numbers():
    state = _hand_made_state()
    state.frame = np.full((96, 128, 3), (10, 200, 10), np.uint8)
    state.status = "lost"
    panel = panels.side_panel(state, 720)
    assert panel.shape == (720, panels.PANEL_WIDTH, 3)
    assert _share(panel[:20], panels.STATUS["lost"], 10) > 0.5  # the status bar
    assert _share(panel[30:260], (10, 200, 10), 10) > 0.3  # the frame
    assert panel[300:].std() > 10  # text below
