"""Progress of a run on the terminal: the line's content, lines while a replay runs, and none
with --quiet."""

from __future__ import annotations

import pytest

from apps import progress
from apps.cli import main
from apps.progress import progress_line


def test_the_progress_line_says_how_far_how_fast_and_how_well():
    assert progress_line(30, 120, 3.0, 28, 2, 5) == (
        "frame 30/120 (25%), 10.0 frames/s, 0:09 left; 28 tracked, 2 lost, 5 keyframes"
    )
    assert progress_line(30, None, 3.0, 30, 0, 4) == "frame 30, 10.0 frames/s; 30 tracked, 0 lost, 4 keyframes"
    assert progress_line(0, 10, 0.0, 0, 0, 0) == "frame 0/10 (0%), 0.0 frames/s; 0 tracked, 0 lost, 0 keyframes"


RUN = ["run", "synthetic", "--max-frames", "30", "--viewer", "none", "--set", "fusion.mesh=false"]


@pytest.mark.slow
def test_a_replay_writes_progress_lines_and_quiet_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_SECONDS", 0.05)  # stderr is not a terminal here: a line each 0.05 s
    assert main([*RUN, "--out", str(tmp_path / "loud")]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("frame ")]
    assert lines and all("/30 (" in line and " keyframe" in line for line in lines), captured.err
    assert "30/30 frames tracked" in captured.out
    assert main([*RUN, "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "frame " not in captured.err
    assert (tmp_path / "quiet" / "stats.json").is_file()
