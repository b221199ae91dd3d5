"""A run's outputs: stats.json says whether they are complete and what ended the run, an output
that cannot be written does not cost the others, the folder of a previous run is replaced only
on request, and saving is not cut short by the next signal."""

from __future__ import annotations

import json
import os
import signal

import pytest

from apps.cli import main
from slam.config.loader import override
from slam.config.schema import SystemConfig
from slam.errors import ExportError
from slam.io.sources.synthetic import SyntheticSource
from slam.io.trajectory import read_trajectory
from slam.system import run as run_module
from slam.system.run import RunControl, run_slam
from slam.system.stop_signals import SavingGuard, Terminated

FAST = ("backend.mode=disabled", "fusion.mesh=false", "frontend.init_frames=4")


def test_an_output_that_cannot_be_written_costs_no_other(tmp_path, monkeypatch):
    def full_disk(path, _cloud):
        raise ExportError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(run_module, "write_point_cloud_ply", full_disk)
    with pytest.raises(ExportError, match="points.ply: No space left"):
        run_slam(SyntheticSource("room", 0, 8, None, None), override(SystemConfig(), *FAST), tmp_path)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert not stats["completed"] and stats["stopped_by"] == "end of source"
    assert stats["write_errors"] == [f"cannot write {tmp_path / 'points.ply'}: No space left on device"]
    assert "points.ply" not in stats["outputs"] and not (tmp_path / "points.ply").exists()
    assert len(read_trajectory(tmp_path / "trajectory.txt")) == 8 and (tmp_path / "tracking.csv").is_file()


def test_a_run_stopped_before_its_first_frame_writes_no_empty_trajectory(tmp_path):
    """A stop (a signal, the viewer) that comes before the first frame: the outputs are what
    there is, every one readable; no trajectory file without a pose in it."""
    control = RunControl()
    control.request_stop()
    stats = run_slam(
        SyntheticSource("room", 0, 8, None, None), override(SystemConfig(), *FAST), tmp_path, control=control
    )
    assert stats["completed"] and stats["frames_processed"] == 0
    assert "trajectory.txt" not in stats["outputs"] and not (tmp_path / "trajectory.txt").exists()
    assert set(stats["outputs"]) == {p.name for p in tmp_path.iterdir()}


def test_a_run_marks_its_folder_incomplete_until_it_is_saved(tmp_path, monkeypatch):
    seen = {}

    def look(*args, **kwargs):  # the outputs are about to be written: what does the folder say?
        seen.update(json.loads((tmp_path / "stats.json").read_text()))
        return write_outputs(*args, **kwargs)

    write_outputs = run_module.write_outputs
    monkeypatch.setattr(run_module, "write_outputs", look)
    stats = run_slam(SyntheticSource("room", 0, 6, None, None), override(SystemConfig(), *FAST), tmp_path)
    assert seen["completed"] is False and seen["stopped_by"] is None
    assert stats["completed"] and stats["stopped_by"] == "end of source"
    assert stats["frames_skipped"] == {"behind real time": 0, "blank image": 0}
    assert sorted(stats["outputs"]) == sorted(p.name for p in tmp_path.iterdir())


def test_reusing_out_is_refused_and_overwrite_replaces_the_whole_folder(tmp_path, capsys):
    out = tmp_path / "run"
    command = ["run", "synthetic", "--out", str(out), "--max-frames", "6", "--viewer", "none"]
    command += [arg for setting in FAST for arg in ("--set", setting)]
    assert main(command) == 0
    (out / "trajectory_kitti.txt").write_text("an earlier KITTI run's\n")
    capsys.readouterr()
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a previous run; add --overwrite" in err
    assert main([*command, "--overwrite"]) == 0
    assert not (out / "trajectory_kitti.txt").exists()
    printed = capsys.readouterr().out
    assert "wrote" in printed and "groundtruth.txt" in printed


def test_weights_errors_leave_no_output_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "synthetic", "--out", str(out), "--weights", str(tmp_path / "none.pt")]) == 2
    assert "weights file not found" in capsys.readouterr().err and not out.exists()


def test_while_saving_the_first_signal_is_reported_and_the_next_aborts(capfd):
    with SavingGuard() as guard:
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)  # while tracking: stops the run
        guard.saving()
        os.kill(os.getpid(), signal.SIGTERM)  # while saving: reported only
        assert "saving, please wait" in capfd.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_blank_frames_are_counted_and_never_mapped(tmp_path, capsys):
    """Black, saturated and flat grey frames (a covered lens, a camera facing a lamp or a wall)
    give no keyframe and no point; each is counted and marked blank in tracking.csv."""
    import cv2
    import numpy as np

    images = tmp_path / "images"
    images.mkdir()
    for k in range(24):
        cv2.imwrite(str(images / f"{k:03d}.png"), np.full((96, 128, 3), (0, 255, 128)[k % 3], np.uint8))
    (tmp_path / "calib.txt").write_text("100 100 64 48\n")
    out = tmp_path / "run"
    command = ["run", str(images), "--calib", str(tmp_path / "calib.txt"), "--out", str(out), "--viewer", "none"]
    assert main(command) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["keyframes"] == 0 and stats["points"] == 0 and stats["frames_tracked"] == 0
    assert stats["blank_frames"] == 24 and stats["frames_skipped"]["blank image"] == 24
    statuses = (out / "tracking.csv").read_text().splitlines()[1:]
    assert [line.rsplit(",", 1)[1] for line in statuses] == ["blank"] * 24
