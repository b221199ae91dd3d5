"""`v2d train`: data, losses, the training step, checkpoints and resume, dataset loaders, and
data-parallel training with two CPU processes under torchrun."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from apps.cli import main
from networks.depth import LearnedDepthModule
from networks.factory import build_depth_module, load_checkpoint, save_checkpoint
from slam.config.loader import override
from slam.errors import ConfigError, V2DError
from slam.geometry.lie import SE3
from slam.io.trajectory import Trajectory, write_tum
from slam.synthetic.sequence import SyntheticSequence
from tests.conftest import REPO_ROOT
from training.clips import clip_indices, collate
from training.config import TrainConfig
from training.datasets import DatasetClips, TrainingDataError, refuse_evaluation_data
from training.losses import depth_loss, induced_flow_error, pose_errors
from training.model import DeepV2DTraining, build_networks, perturb
from training.synthetic_data import SyntheticClips
from training.trainer import _load_networks, learning_rate_factor

QUICK = [
    "schedule.motion_steps=2",
    "schedule.joint_steps=2",
    "schedule.warmup=1",
    "run.validation_clips=1",
    "run.validate_every=100",
    "run.log_every=1",
    "run.checkpoint_every=1",
    "data.workers=0",
]


def test_config_checks_and_schedule():
    config = override(TrainConfig(), "schedule.motion_steps=10", "schedule.joint_steps=30", "schedule.warmup=5")
    assert config.total_steps == 40 and config.stage(9) == "motion" and config.stage(10) == "joint"
    factors = [learning_rate_factor(step, config) for step in range(40)]
    assert factors[0] == pytest.approx(0.2) and max(factors) == pytest.approx(1.0)
    assert factors[-1] < 0.1 and all(a >= b for a, b in zip(factors[5:], factors[6:]))
    with pytest.raises(ConfigError, match="data.path"):
        override(TrainConfig(), "data.kind=tum")
    with pytest.raises(ConfigError, match="model.size"):
        override(TrainConfig(), "model.size=huge")


def test_clip_indices_are_distinct_and_within_the_gap():
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(200):
        indices = clip_indices(rng, 50, 4, 8)
        assert len(set(indices)) == 4 and all(0 <= k < 50 for k in indices)
        gaps += [abs(k - indices[0]) for k in indices[1:]]
    assert max(gaps) == 8 and min(gaps) == 1
    wide = [abs(k - i[0]) for i in (clip_indices(rng, 50, 4, 20, min_gap=5) for _ in range(100)) for k in i[1:]]
    assert min(wide) == 5 and max(wide) == 20
    assert sorted(clip_indices(rng, 4, 4, 1)) == [0, 1, 2, 3]  # a short sequence: every frame
    with pytest.raises(ValueError):
        clip_indices(rng, 3, 4, 2)


def test_synthetic_clips_are_seeded_scaled_and_augmented():
    config = TrainConfig()
    low, high = config.model.depth_range
    first = SyntheticClips(config.data, config.augment, config.model.depth_range, seed=3).take(3)
    again = SyntheticClips(config.data, config.augment, config.model.depth_range, seed=3).take(3)
    other = SyntheticClips(config.data, config.augment, config.model.depth_range, seed=4).take(1)
    assert all(
        np.array_equal(a.images, b.images) and np.array_equal(a.poses_c2w, b.poses_c2w) for a, b in zip(first, again)
    )
    assert not np.array_equal(first[0].images, other[0].images)
    for clip in first:
        assert clip.images.shape == (4, 192, 256, 3) and clip.depths.shape == (4, 192, 256)
        median = np.median(clip.depths[0][clip.depths[0] > 0])
        assert low < median < high / 2
    # the scaled depth still agrees with the scaled poses: reprojecting the keyframe's depth
    # into a neighbour lands on that neighbour's own depth
    clip = first[0]
    fx, fy, cx, cy = clip.intrinsics
    v, u = np.mgrid[0:192:8, 0:256:8]
    z = clip.depths[0][v, u]
    points = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z, np.ones_like(z)], -1).reshape(-1, 4)
    in_j = (np.linalg.inv(clip.poses_c2w[1]) @ clip.poses_c2w[0] @ points.T).T
    uj, vj = fx * in_j[:, 0] / in_j[:, 2] + cx, fy * in_j[:, 1] / in_j[:, 2] + cy
    inside = (z.ravel() > 0) & (in_j[:, 2] > 0) & (uj > 0) & (uj < 255) & (vj > 0) & (vj < 191)
    sampled = clip.depths[1][np.round(vj[inside]).astype(int), np.round(uj[inside]).astype(int)]
    assert np.median(np.abs(sampled - in_j[inside, 2]) / in_j[inside, 2]) < 0.02


def test_collate_puts_the_world_at_the_keyframe():
    config = TrainConfig()
    clips = SyntheticClips(config.data, config.augment, config.model.depth_range, seed=1).take(2)
    batch = collate(clips)
    assert batch.images.shape == (2, 4, 3, 192, 256) and 0 <= batch.images.min() and batch.images.max() <= 1
    assert torch.allclose(batch.poses[:, 0].matrix(), torch.eye(4).expand(2, 4, 4), atol=1e-5)
    expected = np.linalg.inv(clips[1].poses_c2w[2]) @ clips[1].poses_c2w[0]
    assert np.allclose(batch.poses[1, 2].matrix().numpy(), expected, atol=1e-4)
    assert batch.has_depth.all()


def test_perturbation_leaves_the_keyframe_and_respects_its_bounds():
    poses = SE3.exp(torch.randn(3, 5, 6) * 0.1)
    moved = perturb(poses, 4.0, torch.tensor([0.1, 0.2, 0.3]), torch.Generator().manual_seed(0))
    assert torch.allclose(moved[:, 0].data, poses[:, 0].data)
    delta = (moved[:, 1:] * poses[:, 1:].inv()).log()
    assert (delta[..., 3:].norm(dim=-1) <= math.radians(4.0) + 1e-5).all()
    assert (delta[..., :3].norm(dim=-1) > 0).all()


def test_losses_vanish_at_the_truth_and_grow_away_from_it():
    config = TrainConfig()
    batch = collate(SyntheticClips(config.data, config.augment, config.model.depth_range, seed=2).take(1))
    depth_gt = batch.depths[:, 0]
    from networks.interfaces import DepthEstimate

    exact = DepthEstimate(depth_gt, torch.ones_like(depth_gt), [depth_gt, depth_gt])
    loss = depth_loss(
        exact,
        depth_gt,
        batch.has_depth,
        batch.images[:, 0],
        config.model.depth_range,
        override(config.loss, "smoothness=0"),
    )
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    off = DepthEstimate(depth_gt * 1.1, depth_gt, [depth_gt * 1.1])
    assert (
        float(depth_loss(off, depth_gt, batch.has_depth, batch.images[:, 0], config.model.depth_range, config.loss))
        > 0.05
    )

    depths = batch.depths
    K = batch.intrinsics
    ii, jj = torch.zeros(3, dtype=torch.long), torch.arange(1, 4)
    assert float(induced_flow_error(batch.poses, batch.poses, depths, K, ii, jj)) == pytest.approx(0.0, abs=1e-4)
    median = depth_gt[depth_gt > 0].median().view(1)
    moved = perturb(batch.poses, 3.0, 0.05 * median, torch.Generator().manual_seed(1))
    assert float(induced_flow_error(moved, batch.poses, depths, K, ii, jj)) > 1.0
    errors = pose_errors(batch.poses, batch.poses, median)
    assert float(errors["rotation_deg"]) < 0.05 and float(errors["translation_deg"]) < 0.5
    assert 0 < float(pose_errors(moved, batch.poses, median)["rotation_deg"]) <= 3.0


@pytest.mark.slow
def test_training_steps_fit_a_batch():
    """A few optimizer steps on one batch lower the loss of both stages: the gradients reach
    both networks through the Gauss-Newton layer and the cost volume."""
    torch.manual_seed(0)
    config = TrainConfig()
    batch = collate(SyntheticClips(config.data, config.augment, config.model.depth_range, seed=5).take(1))
    model = DeepV2DTraining(*build_networks(config), config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator()
    for stage in ("motion", "joint"):
        losses = []
        for _step in range(12):
            generator.manual_seed(7)  # the same start every step: the batch is to be fitted
            loss, metrics = model(batch, stage, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        assert losses[-1] < 0.8 * losses[0], (stage, losses)
    assert all(p.grad is not None for p in model.motion.parameters())


@pytest.mark.slow
def test_train_resume_and_use_the_weights_in_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    quick = [a for s in QUICK for a in ("--set", s)]
    assert main(["train", "--out", str(out), "--no-progress", *quick]) == 0
    for name in ("last.pt", "best.pt", "model_card.md", "train_log.csv", "validation.csv", "config.yaml", "curves.png"):
        assert (out / name).is_file(), name
    assert load_checkpoint(out / "last.pt")["training"]["step"] == 4
    log = (out / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,stage") and len(log) == 5 and ",motion," in log[1] and ",joint," in log[4]
    card = (out / "model_card.md").read_text()
    assert "v2d train --out" in card and "| seed | 0 |" in card and "abs_rel" in card

    # a second run into the same folder must not overwrite it; --resume continues it
    assert main(["train", "--out", str(out), "--no-progress", *quick]) == 2
    assert "--resume" in capsys.readouterr().err
    more = [*quick, "--set", "schedule.joint_steps=4"]
    assert main(["train", "--out", str(out), "--no-progress", "--resume", "--stop-at", "5", *more]) == 0
    assert load_checkpoint(out / "last.pt")["training"]["step"] == 5
    assert main(["train", "--out", str(out), "--no-progress", "--resume", *more]) == 0
    assert load_checkpoint(out / "last.pt")["training"]["step"] == 6
    assert len((out / "train_log.csv").read_text().splitlines()) == 7

    # the trained weights drive the SLAM system
    run_out = tmp_path / "slam"
    assert (
        main(
            [
                "run",
                "synthetic",
                "--max-frames",
                "12",
                "--out",
                str(run_out),
                "--weights",
                str(out / "best.pt"),
                "--set",
                "modules.depth=lite",
                "--set",
                "modules.motion=lite",
                "--set",
                "fusion.mesh=false",
            ]
        )
        == 0
    )
    rows = [line for line in (run_out / "trajectory.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(rows) == 12


def write_tum_sequence(folder: Path, sequence: SyntheticSequence) -> None:
    """The synthetic sequence in TUM RGB-D layout (depth in 1/5000 m)."""
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    for k, stamp in enumerate(sequence.timestamps):
        image, depth = sequence.render(k)
        cv2.imwrite(str(folder / "rgb" / f"{stamp:.6f}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / "depth" / f"{stamp:.6f}.png"), np.round(depth * 5000).astype(np.uint16))
    (folder / "rgb.txt").write_text("".join(f"{t:.6f} rgb/{t:.6f}.png\n" for t in sequence.timestamps))
    (folder / "depth.txt").write_text("".join(f"{t:.6f} depth/{t:.6f}.png\n" for t in sequence.timestamps))
    write_tum(folder / "groundtruth.txt", Trajectory(sequence.timestamps, sequence.poses))
    camera = sequence.camera
    (folder / "calib.txt").write_text(f"{camera.fx} {camera.fy} {camera.cx} {camera.cy}\n")


def write_scannet_scene(folder: Path, sequence: SyntheticSequence) -> None:
    """The synthetic sequence in ScanNet's exported layout (depth in millimetres)."""
    for name in ("color", "depth", "pose", "intrinsic"):
        (folder / name).mkdir(parents=True)
    for k in range(len(sequence)):
        image, depth = sequence.render(k)
        cv2.imwrite(str(folder / "color" / f"{k}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / "depth" / f"{k}.png"), np.round(depth * 1000).astype(np.uint16))
        pose = sequence.poses[k] if k != 2 else np.full((4, 4), -np.inf)  # ScanNet marks lost poses so
        np.savetxt(folder / "pose" / f"{k}.txt", pose)
    K = np.eye(4)
    K[0, 0], K[1, 1], K[0, 2], K[1, 2] = sequence.camera.intrinsics
    np.savetxt(folder / "intrinsic" / "intrinsic_depth.txt", K)


@pytest.mark.parametrize("kind", ["tum", "scannet"])
def test_dataset_clips_from_a_users_folder(tmp_path, kind):
    sequence = SyntheticSequence("room", seed=11, num_frames=8, height=96, width=128)
    root = tmp_path / "data"
    (write_tum_sequence if kind == "tum" else write_scannet_scene)(root / "scene0", sequence)
    config = override(
        TrainConfig(),
        f"data.kind={kind}",
        f"data.path={root}",
        "data.image_size=[48,64]",
        "data.max_gap=3",
        "data.min_gap=1",
    )
    clip = next(iter(DatasetClips(config.data, config.augment, seed=0)))
    assert clip.images.shape == (4, 48, 64, 3) and clip.depths.shape == (4, 48, 64)
    assert np.allclose(
        clip.intrinsics, sequence.camera.intrinsics * [0.5, 0.5, 0.5, 0.5] + [0, 0, -0.25, -0.25], atol=1e-3
    )
    # each frame's pose and depth are the sequence's own (the depth at the image centre matches)
    for pose, depth in zip(clip.poses_c2w, clip.depths):
        k = int(np.argmin(np.abs(sequence.poses - pose).sum(axis=(1, 2))))
        assert np.allclose(sequence.poses[k], pose, atol=1e-4) and (kind == "tum" or k != 2)
        assert depth[24, 32] == pytest.approx(sequence.render(k)[1][48, 64], rel=0.05)


def test_training_refuses_the_evaluation_data(tmp_path, shared_data, capsys):
    with pytest.raises(TrainingDataError, match="evaluation data"):
        refuse_evaluation_data(shared_data / "tum_fr1_rpy")
    with pytest.raises(TrainingDataError):
        refuse_evaluation_data(shared_data.parent)
    refuse_evaluation_data(tmp_path)
    assert (
        main(
            [
                "train",
                "--out",
                str(tmp_path / "x"),
                "--set",
                "data.kind=tum",
                "--set",
                f"data.path={shared_data / 'tum_fr1_rpy'}",
            ]
        )
        == 2
    )
    assert "never trained on" in capsys.readouterr().err


def test_training_data_errors_are_clear(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--out",
                str(tmp_path / "x"),
                "--set",
                "data.kind=scannet",
                "--set",
                f"data.path={tmp_path / 'missing'}",
            ]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert (
        main(
            [
                "train",
                "--out",
                str(tmp_path / "y"),
                "--set",
                "data.kind=tum",
                "--set",
                f"data.path={tmp_path / 'empty'}",
            ]
        )
        == 2
    )
    assert "holds no tum sequence" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    """Data-parallel training with two processes on the gloo backend: both finish with the same
    weights (checked across processes by the trainer) and the main process writes the run."""
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "apps.cli",
        "train",
        "--out",
        str(out),
        "--no-progress",
        *[a for s in QUICK for a in ("--set", s)],
        "--set",
        "schedule.batch_size=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("weights agree across 2 processes") == 2, result.stderr[-3000:]
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["training"]["step"] == 4
    assert (out / "best.pt").is_file() and (out / "train_log.csv").is_file()


def test_init_starts_layers_the_checkpoint_lacks_fresh_but_resume_needs_them_all(tmp_path, caplog):
    """Weights from before the depth network's correlation channel initialise a run (the new
    layer starts fresh, with a warning); resuming is strict: a missing layer is an error."""
    config = TrainConfig()
    depth, motion = build_networks(config)
    older = LearnedDepthModule(replace(depth.config, correlation=False))
    path = tmp_path / "older.pt"
    save_checkpoint(path, older, motion)
    model = DeepV2DTraining(depth, motion, config)
    before = depth.project_correlation.weight.detach().clone()
    _load_networks(model, load_checkpoint(path), str(path), allow_new_layers=True)
    assert "project_correlation.weight" in caplog.text
    assert torch.equal(depth.project_correlation.weight, before)
    assert torch.equal(depth.project_keyframe.weight, older.project_keyframe.weight)
    with pytest.raises(V2DError, match="lacks project_correlation.weight"):
        _load_networks(model, load_checkpoint(path), str(path))
    # weights saved before the field existed load as they were trained: without the channel
    stored = load_checkpoint(path)
    del stored["depth"]["config"]["correlation"]
    loaded = build_depth_module("lite", (240, 320), config.model.depth_range, stored, "cpu")
    assert loaded.project_correlation is None
