"""The `v2d` command end to end: demo outputs, bench sections, one-line errors, the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

from apps.bench import update_section
from apps.cli import main
from apps.demo import demo_pictures
from slam.io.trajectory import read_trajectory


def test_demo_runs_slam_on_the_synthetic_scene(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--max-frames",
                "12",
                "--set",
                "backend.mode=inline",
                "--set",
                "fusion.mesh=false",
            ]
        )
        == 0
    )
    trajectory = read_trajectory(out / "trajectory.txt")
    assert len(trajectory) == 12 and len(read_trajectory(out / "groundtruth.txt")) == 12
    stats = json.loads((out / "stats.json").read_text())
    assert stats["frames_tracked"] == 12 and stats["source"]["kind"] == "synthetic"
    printed = capsys.readouterr().out
    assert "12/12 frames tracked" in printed
    # the pictures, and one line on accuracy and speed
    assert (
        "ATE " in printed
        and "% of the" in printed
        and f"pictures: {out / 'trajectory.png'}, {out / 'map.png'}, {out / 'keyframes.png'}" in printed
    )
    for name in ("trajectory.png", "map.png", "keyframes.png"):
        picture = cv2.imread(str(out / name))
        assert picture is not None and picture.std() > 10, name  # drawn, not blank
    # the strip: each keyframe's image over its depth, as many keyframes as the run made (up to 6)
    strip = cv2.imread(str(out / "keyframes.png"))
    assert strip.shape[1] == 240 * min(6, stats["keyframes"]) and strip.shape[0] == 2 * 180, strip.shape
    assert stats["posed_views"] == stats["keyframes"]  # the demo writes the posed views too
    # with a mesh, its vertices shaded: a red sphere in the map's middle shows in mesh.png
    import open3d as o3d

    sphere = o3d.geometry.TriangleMesh.create_sphere(0.3, resolution=40).paint_uniform_color([0.9, 0.1, 0.1])
    sphere.translate(read_trajectory(out / "trajectory.txt").positions.mean(axis=0))
    o3d.io.write_triangle_mesh(str(out / "mesh.ply"), sphere)
    _, pictures = demo_pictures(out)
    assert pictures[2] == out / "mesh.png", pictures
    mesh_picture = cv2.imread(str(out / "mesh.png"))  # BGR
    red = (mesh_picture[:, :, 2] > 120) & (mesh_picture[:, :, 1] < 60) & (mesh_picture[:, :, 0] < 60)
    assert red.sum() > 500, red.sum()
    (out / "mesh.ply").unlink()
    (out / "groundtruth.txt").unlink()  # a source without ground truth: the map and the strip
    line, pictures = demo_pictures(out)
    assert line.startswith("12 frames, ") and pictures == [out / "map.png", out / "keyframes.png"]


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
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "apps.cli",
            "eval",
            "--gt",
            str(tmp_path / "missing.txt"),
            "--est",
            str(tmp_path / "missing.txt"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "missing.txt" in lines[0]


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "v2d"
    result = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("run", "demo", "calibrate", "eval", "bench"):
        assert command in result.stdout


SIGNAL_INSIDE_AN_IMPORT = r"""
import signal, sys
import apps.cli as cli
from slam.system.stop_signals import Terminated

def interrupted_import(args):
    try:
        raise Terminated(signal.SIGTERM)
    except Terminated:
        raise ImportError("initialization failed")  # what a C extension's import gives

build_parser = cli.build_parser
def parser_with_interrupted_commands():
    parser = build_parser()
    for command in parser._subparsers._group_actions[0].choices.values():
        command.set_defaults(func=interrupted_import)
    return parser
cli.build_parser = parser_with_interrupted_commands
sys.exit(cli.main(["run", "synthetic"]))
"""


def test_a_sigterm_that_surfaced_as_an_import_error_exits_as_sigterm():
    """SIGTERM while open3d is imported comes out as ImportError: v2d says it was stopped by
    SIGTERM and exits 143, with no traceback (the shutdown soak met it under load)."""
    result = subprocess.run([sys.executable, "-c", SIGNAL_INSIDE_AN_IMPORT], capture_output=True, text=True)
    assert result.returncode == 143 and "Traceback" not in result.stderr, result.stderr
    assert "stopped by SIGTERM" in result.stderr
