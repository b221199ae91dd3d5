"""Bad input reaches the user as one line (``v2d CMD: error: ...``, exit status 2), never as a
traceback or a run that pretends to work; doubtful results say so."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
import torch

import weights
from apps.cli import main
from slam.config.schema import upscale_warning
from slam.io.sources.video import VideoSource
from slam.io.trajectory import Trajectory, write_tum

#: a tiny run: the synthetic scene, no viewer, no mesh
RUN = ["run", "synthetic", "--max-frames", "4", "--viewer", "none", "--set", "fusion.mesh=false"]


def _one_error_line(capsys, command: str = "run") -> str:
    """The single stderr line of a refused command, without its ``v2d CMD: error:`` prefix."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    prefix = f"v2d {command}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix) :]


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("frontend.pixels=10", "frontend.pixels must be at least 1024"),
        ("frontend.pixels=-5", "frontend.pixels must be at least 1024"),
        ("modules.threads=0", "modules.threads must be at least 1, got 0"),
        ("modules.threads=-2", "modules.threads must be at least 1, got -2"),
        ("modules.background_threads=0", "modules.background_threads must be at least 1, got 0"),
        ("frontend.tracking_steps=0", "frontend.tracking_steps must be at least 1, got 0"),
    ],
)
def test_configuration_values_out_of_range_are_refused(tmp_path, capsys, option, expected):
    assert main([*RUN, "--out", str(tmp_path / "out"), "--set", option]) == 2
    assert expected in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--start", "300"], "--start 300 is past the end of walk (300 frames)"),
        (["--stride", "0"], "--stride must be 1 or more"),
        (["--stride", "-1"], "--stride must be 1 or more"),
        (["--max-frames", "0"], "--max-frames must be 1 or more"),
        (["--max-frames", "-3"], "--max-frames must be 1 or more"),
    ],
)
def test_source_options_that_select_nothing_are_refused(tmp_path, capsys, options, expected):
    assert main([*RUN, "--out", str(tmp_path / "out"), *options]) == 2
    assert expected in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_nan_weights_are_refused_at_load(tmp_path, capsys):
    checkpoint = torch.load(weights.LITE, map_location="cpu", weights_only=True)
    for role in ("depth", "motion"):
        checkpoint[role]["state_dict"] = {
            name: torch.full_like(tensor, float("nan")) for name, tensor in checkpoint[role]["state_dict"].items()
        }
    path = tmp_path / "nan.pt"
    torch.save(checkpoint, path)
    command = [*RUN, "--out", str(tmp_path / "out"), "--weights", str(path), "--set", "modules.motion=lite"]
    assert main([*command, "--set", "modules.depth=lite"]) == 2
    assert f"{path}: depth." in _one_error_line(capsys)
    assert main([*command, "--set", "modules.depth=classical"]) == 2
    assert "holds NaN or infinite values" in _one_error_line(capsys)


def test_bench_threads_must_be_positive(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "--threads", "0"])
    assert stopped.value.code == 2
    assert "argument --threads: must be at least 1, got 0" in capsys.readouterr().err


def test_a_processing_size_above_the_source_size_is_reported():
    message = upscale_warning(64, 48, 76800)
    assert message is not None and "frontend.pixels=76800 is more than the source's 64x48 = 3072 pixels" in message
    assert "frontend.pixels=3072 or less" in message and "\n" not in message
    assert upscale_warning(640, 480, 76800) is None


@pytest.mark.parametrize("backend", ["opencv", "pyav"])
def test_a_video_cut_short_warns_and_delivers_the_frames_it_holds(tmp_path, caplog, backend):
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(40):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="slam.io.sources.video"):
        assert len(list(VideoSource(whole, backend=backend))) == 40
        assert "header declares" not in caplog.text
        frames = list(VideoSource(cut, backend=backend))
    assert 10 <= len(frames) < 40
    assert f"{cut} ended after " in caplog.text and "of the 40 frames its header declares" in caplog.text


def _line(offsets: np.ndarray) -> Trajectory:
    """Camera-to-world poses without rotation at the (N, 3) positions ``offsets``, 10 Hz."""
    poses = np.tile(np.eye(4), (len(offsets), 1, 1))
    poses[:, :3, 3] = offsets
    return Trajectory(np.arange(len(offsets)) / 10.0, poses)


def test_eval_warns_when_the_alignment_collapses_the_estimate(tmp_path, capsys):
    angles = np.linspace(0.0, 4.0, 100)
    gt = np.stack([np.cos(angles), np.sin(angles), 0.2 * angles], axis=1)  # a helix: Umeyama needs 3D spread
    k = np.arange(len(gt))
    jitter = np.stack([(-1.0) ** k, (-1.0) ** (k // 2), (-1.0) ** (k // 3)], axis=1)  # nothing like the helix
    write_tum(tmp_path / "gt.txt", _line(gt))
    write_tum(tmp_path / "good.txt", _line(0.5 * gt))  # another scale: sim3 recovers it
    write_tum(tmp_path / "bad.txt", _line(jitter))  # sim3 shrinks it to about 1/70
    for name, degenerate in (("good", False), ("bad", True)):
        out = tmp_path / f"{name}.json"
        command = ["eval", "--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / f"{name}.txt")]
        assert main([*command, "--json", str(out)]) == 0
        printed = capsys.readouterr().out
        result = json.loads(out.read_text())["trajectory"]
        assert result["degenerate_scale"] is degenerate
        assert ("alignment shrank the estimate" in printed) is degenerate
        assert (result["spread_ratio"] < 0.1) is degenerate
