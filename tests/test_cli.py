"""The `v2d` command end to end: demo outputs, bench sections, one-line errors, the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

from apps.bench import update_section
from apps.cli import main
from slam.evaluation import read_trajectory


def test_demo_writes_ground_truth_video_preview_and_stats(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "12"]) == 0
    trajectory = read_trajectory(out / "groundtruth.txt")
    assert len(trajectory) == 12 and trajectory.path_length() > 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["frames_read"] == 12 and stats["image_size"] == [320, 240]
    video = cv2.VideoCapture(str(out / "sequence.mp4"))
    ok, picture = video.read()
    assert ok and picture.shape == (240, 640, 3)
    preview = cv2.imread(str(out / "preview.png"))
    assert preview is not None and preview.std() > 10
    assert "not built yet" in capsys.readouterr().out


def test_bench_rewrites_only_its_own_section(tmp_path):
    path = tmp_path / "BENCH.md"
    update_section(path, "a", "first A")
    update_section(path, "b", "first B")
    update_section(path, "a", "second A")
    text = path.read_text()
    assert "second A" in text and "first A" not in text and "first B" in text
    assert text.index("second A") < text.index("first B")


def test_bench_renderer_suite_quick(tmp_path, capsys):
    output = tmp_path / "BENCHMARKS.md"
    assert main(["bench", "--suite", "renderer", "--quick", "--output", str(output)]) == 0
    text = output.read_text()
    assert "<!-- bench:renderer -->" in text and "| room | 240 x 320 | 60 |" in text
    assert "Command: `v2d bench --suite renderer --quick --output" in text


def test_input_errors_are_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "apps.cli", "eval", "--gt", str(tmp_path / "missing.txt"),
                             "--est", str(tmp_path / "missing.txt")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "missing.txt" in lines[0]


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "v2d"
    result = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("demo", "calibrate", "eval", "bench"):
        assert command in result.stdout
