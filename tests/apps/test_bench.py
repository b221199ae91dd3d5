"""`v2d bench` accuracy suites: learned rows from a checkpoint, or a clear note without one; the
clip sets they share; the tracking routine of the motion benchmark."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

import apps.bench
from apps.bench import NO_WEIGHTS
from apps.benchmarks import depth, motion
from apps.benchmarks.clips import (
    REAL_SEQUENCES,
    ClipSet,
    real_clips,
    synthetic_clips,
    validation_set,
)
from apps.benchmarks.common import failed_run
from apps.benchmarks.profile import cpu_row, profile_row
from apps.cli import main
from networks.factory import build_motion_module, load_checkpoint, save_checkpoint
from slam.io.shared_data import SHARED_DATA
from training.clips import collate
from training.config import TrainConfig
from training.model import build_networks
from training.validation import validation_clips


@pytest.fixture(scope="module")
def fresh_weights(tmp_path_factory):
    """A checkpoint of freshly built (untrained) lite networks."""
    path = tmp_path_factory.mktemp("weights") / "fresh.pt"
    save_checkpoint(path, *build_networks(TrainConfig()))
    return path


def _rows(text: str, module: str) -> list[list[str]]:
    """Cells of the accuracy-table rows of ``module`` (second column)."""
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")
    ]
    return [row for row in rows if len(row) > 2 and row[1] == module]


def _scored_set_count() -> int:
    """Clip sets with numbers: the two synthetic ones, and the real ones where the data is."""
    return 2 + (sum(len(spacings) for _, _, spacings in REAL_SEQUENCES) if SHARED_DATA.is_dir() else 0)


def _no_speed_table(quick: bool) -> str:
    return "(speed not measured in this test)"


@pytest.mark.slow
def test_depth_suite_scores_the_learned_weights_beside_classical(tmp_path, fresh_weights, monkeypatch):
    monkeypatch.setattr(depth, "speed_table", _no_speed_table)  # the paper size alone takes minutes on a CPU
    output = tmp_path / "BENCH.md"
    assert main(["bench", "--suite", "depth", "--quick", "--weights", str(fresh_weights), "--output", str(output)]) == 0
    text = output.read_text()
    assert f"Learned weights: `{fresh_weights}`" in text
    learned, classical = _rows(text, "lite"), _rows(text, "classical")
    assert len(learned) == len(classical) == _scored_set_count()
    assert learned[0][0].startswith("validation set") and learned[1][0].startswith("synthetic room")
    for row in learned[:2] + classical[:2]:
        abs_rel, delta1, coverage = float(row[3]), float(row[6]), float(row[8])
        assert abs_rel > 0 and 0 <= delta1 <= 1 and 0 < coverage <= 1
        assert row[7].split(" (x")[1].endswith(")")  # median-scaled abs rel with its scale
    assert float(classical[1][3]) < 0.2  # the classical module on rendered rooms with true poses
    assert NO_WEIGHTS not in text


@pytest.mark.slow
def test_depth_suite_without_weights_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(apps.bench, "SHIPPED_WEIGHTS", tmp_path / "absent.pt")
    monkeypatch.setattr(depth, "speed_table", _no_speed_table)
    output = tmp_path / "BENCH.md"
    assert main(["bench", "--suite", "depth", "--quick", "--output", str(output)]) == 0
    text = output.read_text()
    learned = _rows(text, "lite")
    assert learned and all(row[3] == NO_WEIGHTS for row in learned)
    assert float(_rows(text, "classical")[0][3]) > 0
    assert "No learned weights were given" in text


def test_missing_weights_file_is_a_one_line_error_before_measuring(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(depth, "speed_table", lambda quick: pytest.fail("measured before checking the weights"))
    assert (
        main(
            [
                "bench",
                "--suite",
                "depth",
                "--weights",
                str(tmp_path / "missing.pt"),
                "--output",
                str(tmp_path / "BENCH.md"),
            ]
        )
        == 2
    )
    assert "missing.pt" in capsys.readouterr().err
    assert not (tmp_path / "BENCH.md").exists()


def test_validation_set_is_trainings_validation_set():
    ours = validation_set(2)
    config = TrainConfig()
    theirs = collate(
        validation_clips(dataclasses.replace(config, run=dataclasses.replace(config.run, validation_clips=2)))
    )
    assert len(ours) == 2
    for k, clip in enumerate(ours):
        assert torch.equal(clip.images[0], theirs.images[k]) and torch.equal(clip.depths[0], theirs.depths[k])
        assert torch.allclose(clip.intrinsics[0], theirs.intrinsics[k])
        assert torch.allclose(clip.poses[0].matrix(), theirs.poses[k].matrix(), atol=1e-6)
        assert clip.every_frame_has_depth


def test_real_clips_carry_every_frames_depth_where_the_sequence_has_it(shared_data):
    clips = real_clips(shared_data / "tum_fr1_rpy", 3, neighbours=4, spacing=2)
    for clip in clips:
        assert clip.depths.shape == (1, 5, 240, 320) and (clip.depths[0, 0] > 0).float().mean() > 0.5
    # TUM's depth maps are matched to images by time: some frames have none, and then all 0
    assert any(clip.every_frame_has_depth for clip in clips)
    assert any((clip.depths[0, 1:].flatten(1) > 0).any(dim=1).sum() >= 3 for clip in clips)


def _errors(tracked, truth) -> np.ndarray:
    return np.stack([motion._pair_errors(tracked[b], truth) for b in range(tracked.shape[0])])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["keyframe", "global"])
def test_classical_tracking_recovers_relative_poses_in_both_modes(mode):
    clip = synthetic_clips("room", 1, neighbours=2, spacing=3, seed=1)[0]
    module = build_motion_module("classical", (240, 320))
    starts = motion._starts(clip.poses[0], seed=0)
    before = _errors(starts, clip.poses[0])
    errors = _errors(motion.track_clip(module, clip, starts, mode), clip.poses[0])  # (start, rotation/direction, pair)
    assert before[0, 0].min() > 2.0 and before[1, 0].min() > 1.0  # both starts are well off
    assert errors[:, 0].max() < 0.2 and errors[:, 1].max() < 5.0, errors


@pytest.mark.slow
def test_motion_table_has_a_row_per_set_module_and_mode(monkeypatch, fresh_weights):
    clip = synthetic_clips("room", 1, neighbours=2, spacing=3, height=96, width=128)[0]
    no_neighbour_depth = synthetic_clips("room", 1, neighbours=2, spacing=3, height=96, width=128, seed=3)[0]
    no_neighbour_depth.depths[0, 1:] = 0
    sets = [ClipSet("tiny", [clip]), ClipSet("partial depth", [no_neighbour_depth]), ClipSet("real", None, "not here")]
    monkeypatch.setattr(motion, "ROUNDS", 1)
    monkeypatch.setattr(motion, "benchmark_sets", lambda count, validation_count: sets)
    table = motion._accuracy_table(True, load_checkpoint(fresh_weights))
    for module in ("classical", "lite"):
        rows = _rows(table, module)
        assert [row[0] for row in rows] == ["tiny", "tiny", "partial depth", "partial depth"]
        assert [row[2] for row in rows] == [motion.MODE_LABELS["keyframe"], motion.MODE_LABELS["global"]] * 2
        assert rows[0][3] == rows[1][3] == rows[2][3] == "1 / 2"
        assert rows[3][3] == "no clip with ground-truth depth on every frame"
    assert "| real | all | all | not here |" in table
    without = motion._accuracy_table(True, None)
    assert all(row[3] == NO_WEIGHTS for row in _rows(without, "lite")) and len(_rows(without, "lite")) == 4


def test_a_failed_run_reports_its_status_and_last_lines():
    error = failed_run(1, "Traceback\n  File x\nV2DError: no frames\nQStandardPaths: XDG_RUNTIME_DIR not set\n")
    assert "status 1" in str(error) and "V2DError: no frames" in str(error)
    assert str(failed_run(-9, "")) == "v2d run exited with status -9"


@pytest.mark.slow
def test_the_long_suite_plays_a_sequence_there_and_back_and_laps_a_closed_path(monkeypatch):
    """One short synthetic sequence played there and back and a few frames of a closed path: a
    row per configuration and sequence, every frame played (forward and back), the return gap, the
    map's and loop closure's counters and the final bundle adjustment's time in the row."""
    import argparse

    from apps.benchmarks import long

    monkeypatch.setattr(
        long,
        "SEQUENCES",
        [
            ("synthetic room (hand-held)", "synthetic:room", 40, 20, True),
            ("synthetic room, a loop", "synthetic:room:path=loop", None, 20, False),
        ],
    )
    table = long.suite(argparse.Namespace(quick=True))
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 2 * len(long.CONFIGURATIONS), table
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[2] == ("39" if "hand-held" in cells[1] else "20") and cells[5] == "100%", row
        assert cells[4].endswith("%") and float(cells[3]) < 0.1, row  # ATE (m) of 20 frames of the room
        assert " / " in cells[9] and cells[10].split(" ")[0].isdigit(), row
        final_bundle = "final global bundle adjustment" in cells[0]
        assert (float(cells[11]) > 0) if final_bundle else cells[11] == "", row  # its seconds
    assert "| no loop closure, relocalization or covisible window |" in table and " 0 of " in rows[-1], table


@pytest.mark.slow
def test_the_unseen_suite_runs_the_tuned_seed_and_the_unseen_ones_and_sums_them_up(monkeypatch):
    """Two short rooms, the tuned seed and one unseen: a row each with an ATE of 20 frames under
    5 cm, its verdict the SLAM suite's target's, then the summary of the unseen seed beside the
    tuned one."""
    import argparse

    from apps.benchmarks import unseen

    (room,) = [sequence for sequence in unseen.SEQUENCES if sequence[1] == "synthetic:room"]
    monkeypatch.setattr(unseen, "SEQUENCES", [(*room[:2], 20, 20, *room[4:])])
    monkeypatch.setattr(unseen, "UNSEEN_SEEDS", (4,))
    table = unseen.suite(argparse.Namespace(quick=True))
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith(f"| {room[0]} |")
    ]
    assert [row[1] for row in rows[:2]] == ["0 (the SLAM suite's)", "4"], table
    for row in rows[:2]:
        assert row[2] == "20" and float(row[3]) < 0.05 and row[4].endswith(" m") and row[6] == "100%", row
        path = float(row[4].split(" of ")[1].split(" m")[0])
        assert row[5] == f"{room[4]}: " + ("met" if room[5](float(row[3]), path) else "**missed**"), row
    share = float(rows[1][4].split("%")[0])
    assert rows[2][1] == rows[0][4].split(" of ")[0] and rows[2][2] == rows[2][3] == rows[2][4] == f"{share}%", table
    assert rows[2][5] == ("1 of 1" if rows[1][5].endswith(": met") else "0 of 1"), table


@pytest.mark.slow
def test_the_map_suite_scores_keyframe_depth_and_the_cloud_against_rendered_depth(tmp_path, monkeypatch):
    """A short synthetic room (exact rendered depth): a keyframe-depth row, a row for the cloud
    and one for the mesh, with accuracies a working map reaches, how flat each draws the walls
    it sees, and the picture written to docs/ beside the markdown file."""
    import argparse

    from apps.benchmarks import map as map_suite

    monkeypatch.setattr(map_suite, "SEQUENCES", [("synthetic room", "synthetic:room", 40, 40)])
    table = map_suite.suite(argparse.Namespace(quick=False, output=str(tmp_path / "BENCHMARKS.md")))
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| synthetic room |")
    ]
    assert len(rows) == 5, table
    depth_row, cloud_row, mesh_row, cloud_walls, mesh_walls = rows
    for walls, label in ((cloud_walls, "points.ply"), (mesh_walls, "mesh.ply vertices")):
        assert walls[1] == label and 1 <= int(walls[2]) <= 4 and int(walls[3]) > 100, table
        median, p90 = (float(cell.split(" cm")[0]) for cell in walls[4:6])
        size = float(walls[4].split(" of ")[1].split(" m")[0])
        assert 0 < median < p90 < 30, table
        assert walls[6] == ("met" if p90 <= size else "**missed**"), table  # p90 in cm, 1% of the size in m
    assert int(depth_row[2]) >= 3 and float(depth_row[3]) < 0.15 and float(depth_row[7]) < 0.1, table
    assert cloud_row[1] == "points.ply" and mesh_row[1] == "mesh.ply vertices", table
    for row in (cloud_row, mesh_row):
        assert float(row[3]) < 10.0 and int(row[4].rstrip("%")) > 20, table  # median cm, completeness
    assert (tmp_path / "docs" / "map-synthetic-room.png").stat().st_size > 10_000
    assert "(docs/map-synthetic-room.png)" in cloud_row[6]


def test_the_map_suite_knows_a_synthetic_rooms_walls_where_the_ground_truth_puts_them():
    """The first frame of the synthetic room, its rendered depth back-projected at its true pose:
    every point inside the room's box, and most on its walls, floor or ceiling; other sources
    have no room."""
    from apps.benchmarks import map as map_suite
    from slam.evaluation.map import backproject_depth
    from slam.io.sources.synthetic import SyntheticSource

    room = map_suite._room("synthetic:room")
    assert room is not None and map_suite._room("synthetic:road") is None and map_suite._room("/no/such") is None
    frame = SyntheticSource("room", 0, 1, 120, 160).frame_at(0)
    assert frame.depth_gt is not None and frame.pose_gt is not None
    points = backproject_depth(frame.depth_gt, frame.camera.intrinsics, frame.pose_gt, 1)
    length, width, height = room.size
    inside = (points > -0.06).all(1) & (points < np.array([length, width, height]) + 0.06).all(1)
    assert inside.all()
    planes = room.wall_planes() + room.floor_and_ceiling_planes()
    on_plane = np.min([np.abs(points @ normal - offset) for normal, offset in planes], axis=0) < 0.01
    assert on_plane.mean() > 0.5, on_plane.mean()


@pytest.mark.slow
def test_the_peers_suite_scores_colmap_and_orb_odometry_beside_ours_on_the_same_frames(monkeypatch):
    """A short synthetic room: a row for the default run, one for COLMAP and one for the ORB
    odometry, each registering the frames with the accuracy a working method reaches (the poses
    read back from COLMAP's model and chained by the odometry in the right direction)."""
    import argparse

    from apps.benchmarks import peers

    pytest.importorskip("pycolmap", reason="pycolmap (requirements.txt) runs COLMAP")
    monkeypatch.setattr(peers, "SEQUENCES", [("synthetic:room", 20, 20)])
    table = peers.suite(argparse.Namespace(quick=True, peers=None))
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| synthetic:room |")
    ]
    assert [row[1].split(" ")[0] for row in rows] == ["v2d", "COLMAP", "ORB"], table
    bounds = {"v2d": 5.0, "COLMAP": 2.0, "ORB": 25.0}  # ATE, % of the path
    for row in rows:
        registered, of = row[2].split(" of ")
        share = float(row[4].split("%")[0])
        assert int(of) == 20 and int(registered) >= 15 and share < bounds[row[1].split(" ")[0]], table
    assert "the ATE in" in rows[1][7] and "the time" in rows[2][7], table


@pytest.mark.slow
def test_the_profile_suite_splits_a_runs_wall_time_into_its_stages(monkeypatch):
    """A short synthetic run: its row's tracking-thread stages, the rest of that thread's time and
    the run's end add up to the wall time, and tracking and the keyframes' depth (in the keyframe
    worker) took some."""
    import argparse

    from apps.benchmarks import profile

    monkeypatch.setattr(profile, "SEQUENCES", [("synthetic room", "synthetic:room", 20, 20)])
    table = profile.suite(argparse.Namespace(quick=True))
    row = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| synthetic room |")
    ][0]
    wall, cpu = float(row[3]), float(row[5])
    # every thread's CPU time: at most what the cores could give; per frame, of the 20 frames
    assert 0 < cpu <= (os.cpu_count() or 1) * wall + 0.1 and float(row[6]) == pytest.approx(50 * cpu, abs=3), row
    seconds = [float(cell.split(" ")[0]) for cell in row[7:]]
    tracking_thread, rest, finish = seconds[:6], seconds[6], seconds[7]
    assert sum(tracking_thread) + rest + finish == pytest.approx(wall, abs=0.1 * len(seconds)), row
    keyframe_depth = seconds[9]  # the keyframe worker's, beside the tracking thread
    assert tracking_thread[0] > 0 and tracking_thread[1] > 0 and keyframe_depth > 0 and finish > 0, row
    assert all(cell.endswith("%)") for cell in row[7:]), row
    (cpu_row,) = [line for line in table.splitlines() if line.startswith("| synthetic room |")][1:]
    cpu_cells = [cell.strip() for cell in cpu_row.strip("|").split("|")]
    assert float(cpu_cells[1]) == cpu and float(cpu_cells[4].split(" ")[0]) > 0, cpu_row  # tracking took CPU


def test_the_profile_rows_give_each_stage_its_share_of_the_wall_time_and_of_the_cpu_time():
    stats = {
        "frames_processed": 100,
        "keyframes": 10,
        "wall_time_s": 10.0,
        "end_to_end_fps": 10.0,
        "cpu_time_s": 18.5,
        "cpu_ms_per_frame": 185.0,
        "config": {"frontend": {"keyframe_lag": 4}},
        "stage_time_s": {
            "cold_start": 0.5,
            "tracking": 3.5,
            "waiting_for_keyframe": 2.0,
            "finish": 1.0,
            "keyframe_depth": 3.0,
        },
    }
    stats["stage_cpu_time_s"] = {"cold_start": 0.4, "tracking": 3.1, "keyframe_depth": 2.9, "finish": 0.9}
    cpu_cells = [cell.strip() for cell in cpu_row("clip", stats).strip("|").split("|")]
    assert cpu_cells[:5] == ["clip", "18.5", "185.0", "0.4 (2%)", "3.1 (17%)"] and cpu_cells[7] == "2.9 (16%)"
    assert cpu_cells[-2:] == ["0.9 (5%)", "11.2 (61%)"] and len(cpu_cells) == 14  # the rest: 18.5 - 7.3 s
    cells = [cell.strip() for cell in profile_row("clip", stats).strip("|").split("|")]
    assert cells[:10] == ["clip", "100", "10", "10.0", "10.0", "18.5", "185.0", "0.5 (5%)", "3.5 (35%)", "0.0 (0%)"]
    # reading and the loop: the tracking thread's time that no stage names (10 - 1 - 6 s)
    assert cells[13] == "3.0 (30%)" and cells[16] == "3.0 (30%)"
    assert len(cells) == 21
