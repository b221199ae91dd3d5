"""Trajectory evaluation (ATE/RPE through evo, coverage, plots, `v2d eval`) and depth metrics."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from apps.cli import main
from slam.errors import DepthMapError, EvaluationError, TrajectoryError
from slam.evaluation.depth import (
    average_depth_metrics,
    depth_metrics,
    evaluate_depth_folders,
)
from slam.evaluation.trajectory import evaluate_trajectory
from slam.io.trajectory import (
    Trajectory,
    read_trajectory,
    read_tum,
    write_kitti,
    write_tum,
)


# ---------------------------------------------------------------------------------- helpers
def wandering_trajectory(n: int = 200, seed: int = 0, rate: float = 30.0) -> Trajectory:
    """A smooth hand-held-like camera-to-world trajectory (metres, seconds)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, 3] = np.stack([np.sin(t), 0.5 * np.cos(0.7 * t), 0.3 * t], axis=1) + np.cumsum(
        rng.normal(scale=0.002, size=(n, 3)), axis=0
    )
    rotvecs = np.stack([0.2 * np.sin(t), 0.5 * t, 0.1 * np.cos(2 * t)], axis=1)
    poses[:, :3, :3] = Rotation.from_rotvec(rotvecs).as_matrix()
    return Trajectory(1000.0 + t, poses)


def similarity(scale: float, rotvec=(0.3, -0.5, 1.1), translation=(2.0, -1.0, 0.5)) -> np.ndarray:
    S = np.eye(4)
    S[:3, :3] = scale * Rotation.from_rotvec(rotvec).as_matrix()
    S[:3, 3] = translation
    return S


def transformed(trajectory: Trajectory, S: np.ndarray) -> Trajectory:
    """Camera-to-world poses seen in another world frame: x_new = S x (S a similarity), camera
    orientations rotated with it and camera centres scaled."""
    scale = np.cbrt(np.linalg.det(S[:3, :3]))
    R = S[:3, :3] / scale
    poses = trajectory.poses.copy()
    poses[:, :3, :3] = R @ poses[:, :3, :3]
    poses[:, :3, 3] = trajectory.positions @ S[:3, :3].T + S[:3, 3]
    return Trajectory(trajectory.timestamps.copy(), poses)


def with_position_noise(trajectory: Trajectory, sigma: float, seed: int = 1) -> tuple[Trajectory, np.ndarray]:
    noise = np.random.default_rng(seed).normal(scale=sigma, size=(len(trajectory), 3))
    poses = trajectory.poses.copy()
    poses[:, :3, 3] += noise
    return Trajectory(trajectory.timestamps.copy(), poses), noise


def assert_same_numbers(numbers: dict, metrics) -> None:
    """The JSON written by `v2d eval` holds the library's numbers."""
    expected = metrics.to_dict()
    assert numbers.keys() == expected.keys()
    for key, value in expected.items():
        assert numbers[key] == (value if isinstance(value, str) else pytest.approx(value, rel=1e-12)), key


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity target ~ s R source + t (Umeyama 1991), written out in numpy."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    cov = (target - mu_t).T @ (source - mu_s) / len(source)
    U, D, Vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        sign[2, 2] = -1
    R = U @ sign @ Vt
    s = np.trace(np.diag(D) @ sign) / ((source - mu_s) ** 2).sum(axis=1).mean()
    return s, R, mu_t - s * R @ mu_s


# ---------------------------------------------------------------------------------- ATE and alignment
def test_sim3_copy_has_zero_ate_and_its_scale_is_recovered():
    gt = wandering_trajectory()
    est = transformed(gt, similarity(0.4))
    metrics = evaluate_trajectory(gt, est, align="sim3")
    assert metrics.ate_rmse < 1e-9 and metrics.ate_max < 1e-9
    assert metrics.scale == pytest.approx(1 / 0.4, rel=1e-9)
    assert metrics.rpe_trans_rmse < 1e-9 and metrics.rpe_rot_rmse_deg < 1e-6
    assert metrics.matched == len(gt) and metrics.coverage == 1.0


def test_without_alignment_the_same_copy_has_large_errors():
    gt = wandering_trajectory()
    est = transformed(gt, similarity(0.4))
    assert evaluate_trajectory(gt, est, align="none").ate_rmse > 1.0
    se3 = evaluate_trajectory(gt, est, align="se3")
    assert se3.scale == 1.0 and se3.ate_rmse > 0.1  # a rigid alignment cannot fix the scale


def test_rigid_copy_has_zero_ate_with_se3_alignment():
    gt = wandering_trajectory()
    metrics = evaluate_trajectory(gt, transformed(gt, similarity(1.0)), align="se3")
    assert metrics.ate_rmse < 1e-9


def test_known_noise_gives_the_expected_ate():
    gt = wandering_trajectory(n=400)
    est, noise = with_position_noise(gt, sigma=0.01)
    unaligned = evaluate_trajectory(gt, est, align="none")
    errors = np.linalg.norm(noise, axis=1)
    assert unaligned.ate_rmse == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-9)
    assert unaligned.ate_mean == pytest.approx(errors.mean(), rel=1e-9)
    assert unaligned.ate_median == pytest.approx(np.median(errors), rel=1e-9)
    assert unaligned.ate_max == pytest.approx(errors.max(), rel=1e-9)
    # Aligned, the noise can only be explained away a little: RMSE stays near sigma * sqrt(3).
    aligned = evaluate_trajectory(gt, transformed(est, similarity(3.0)), align="sim3")
    assert aligned.ate_rmse == pytest.approx(0.01 * np.sqrt(3), rel=0.1)
    assert aligned.scale == pytest.approx(1 / 3.0, rel=0.01)


def test_evo_alignment_equals_a_direct_umeyama_computation():
    gt = wandering_trajectory(n=30, seed=4)
    noisy, _ = with_position_noise(gt, sigma=0.05, seed=5)
    est = transformed(noisy, similarity(2.0))
    s, R, t = umeyama(est.positions, gt.positions)
    residual = gt.positions - (s * est.positions @ R.T + t)
    metrics = evaluate_trajectory(gt, est, align="sim3")
    assert metrics.scale == pytest.approx(s, rel=1e-9)
    assert metrics.ate_rmse == pytest.approx(np.sqrt(np.mean(np.sum(residual**2, axis=1))), rel=1e-9)
    np.testing.assert_allclose(metrics.aligned.transform[:3, :3], s * R, atol=1e-9)
    np.testing.assert_allclose(metrics.aligned.transform[:3, 3], t, atol=1e-9)
    np.testing.assert_allclose(metrics.aligned.est.positions, s * est.positions @ R.T + t, atol=1e-9)


# ---------------------------------------------------------------------------------- RPE
def test_rpe_of_a_constant_drift_is_the_drift_per_delta():
    gt = wandering_trajectory(n=100)
    drift = np.array([0.003, -0.004, 0.0])  # 5 mm of extra world motion per frame
    poses = gt.poses.copy()
    poses[:, :3, 3] += np.arange(len(gt))[:, None] * drift
    est = Trajectory(gt.timestamps, poses)
    one = evaluate_trajectory(gt, est, align="none", rpe_delta=1)
    five = evaluate_trajectory(gt, est, align="none", rpe_delta=5)
    assert one.rpe_trans_rmse == pytest.approx(0.005, rel=1e-9)
    assert five.rpe_trans_rmse == pytest.approx(0.025, rel=1e-9)
    assert one.rpe_rot_rmse_deg < 1e-6


def test_rpe_rotation_error_in_degrees():
    gt = wandering_trajectory(n=50)
    # Each relative motion of the estimate turns 0.5 degrees more than the truth's, about the
    # camera's z axis: P[i+1] = P[i] (Q[i]^-1 Q[i+1]) Rz(0.5 deg).
    extra = np.eye(4)
    extra[:3, :3] = Rotation.from_euler("z", 0.5, degrees=True).as_matrix()
    poses = gt.poses.copy()
    for i in range(len(gt) - 1):
        poses[i + 1] = poses[i] @ np.linalg.inv(gt.poses[i]) @ gt.poses[i + 1] @ extra
    metrics = evaluate_trajectory(gt, Trajectory(gt.timestamps, poses), align="none")
    assert metrics.rpe_rot_rmse_deg == pytest.approx(0.5, rel=1e-6)
    assert metrics.rpe_trans_rmse < 1e-9


# ---------------------------------------------------------------------------------- association, coverage
def test_coverage_of_a_partial_estimate():
    gt = wandering_trajectory(n=100, rate=10.0)
    keep = np.r_[0:50, 60:80]  # tracking lost for 10 frames, and after frame 79
    est = Trajectory(gt.timestamps[keep], gt.poses[keep])
    metrics = evaluate_trajectory(gt, est)
    assert metrics.matched == 70 and metrics.est_poses == 70
    assert metrics.gt_frames == metrics.expected_frames == 80  # within the estimate's time span
    assert metrics.coverage == pytest.approx(70 / 80)
    whole_run = evaluate_trajectory(gt, est, run_span=(gt.timestamps[0], gt.timestamps[-1]))
    assert whole_run.gt_frames == 100 and whole_run.coverage == pytest.approx(0.7)


def test_coverage_counts_frames_whatever_the_ground_truth_s_rate():
    """A 30 Hz estimate of every frame against 100 Hz motion capture (TUM's) covers all of the
    run; against 10 Hz ground truth too; one that lost 3 of its 10 seconds covers 70% of them."""
    dense = wandering_trajectory(n=1000, rate=100.0)
    frames = np.arange(0.0, 9.9, 1 / 30)
    est = Trajectory(1000.0 + frames, np.stack([dense.poses[int(round(t * 100))] for t in frames]))
    metrics = evaluate_trajectory(dense, est)
    assert metrics.gt_frames > 900 and metrics.coverage == pytest.approx(1.0, abs=0.01), metrics.summary()
    sparse = Trajectory(dense.timestamps[::10], dense.poses[::10])
    assert evaluate_trajectory(sparse, est).coverage == pytest.approx(1.0, abs=0.02)
    kept = (frames < 3.0) | (frames >= 6.0)
    partial = evaluate_trajectory(dense, Trajectory(est.timestamps[kept], est.poses[kept]))
    assert partial.coverage == pytest.approx(0.7, abs=0.02), partial.summary()


def test_timestamps_are_matched_within_max_diff():
    gt = wandering_trajectory(n=100, rate=10.0)
    late = Trajectory(gt.timestamps + 0.015, gt.poses)
    assert evaluate_trajectory(gt, late, max_diff=0.02).matched == 100
    with pytest.raises(TrajectoryError, match="no estimated pose lies within 0.01 s"):
        evaluate_trajectory(gt, late, max_diff=0.01)


def test_estimate_at_frame_times_is_compared_with_interpolated_ground_truth():
    gt = wandering_trajectory(n=300, rate=100.0)  # motion capture rate
    frame_times = gt.timestamps[0] + 0.005 + np.arange(0, 2.9, 1 / 30)  # halfway between gt samples
    poses, valid = gt.interpolate(frame_times)
    est = transformed(Trajectory(frame_times[valid], poses[valid]), similarity(0.7))
    metrics = evaluate_trajectory(gt, est)
    assert metrics.matched == valid.sum()
    assert metrics.ate_rmse < 1e-6  # the gt is interpolated at the frame times, not snapped


def test_no_overlap_and_too_few_poses_are_clear_errors():
    gt = wandering_trajectory(n=50)
    later = Trajectory(gt.timestamps + 100.0, gt.poses)
    with pytest.raises(TrajectoryError, match="same clock"):
        evaluate_trajectory(gt, later)
    with pytest.raises(TrajectoryError, match="at least 3"):
        evaluate_trajectory(gt, Trajectory(gt.timestamps[:2], gt.poses[:2]))
    with pytest.raises(TrajectoryError, match="RPE over 10"):
        evaluate_trajectory(gt, Trajectory(gt.timestamps[:5], gt.poses[:5]), rpe_delta=10)
    with pytest.raises(TrajectoryError, match="unknown alignment"):
        evaluate_trajectory(gt, gt, align="sim4")


def test_a_motionless_estimate_cannot_be_aligned():
    gt = wandering_trajectory(n=20)
    still = Trajectory(gt.timestamps, np.tile(np.eye(4), (20, 1, 1)))
    with pytest.raises(TrajectoryError, match="cannot align"):
        evaluate_trajectory(gt, still)


# ---------------------------------------------------------------------------------- files and the CLI
def test_read_trajectory_detects_the_format(tmp_path):
    trajectory = wandering_trajectory(n=10)
    write_tum(tmp_path / "t.txt", trajectory)
    write_kitti(tmp_path / "k.txt", trajectory)
    assert np.allclose(read_trajectory(tmp_path / "t.txt").timestamps, trajectory.timestamps)
    kitti = read_trajectory(tmp_path / "k.txt")
    assert np.array_equal(kitti.timestamps, np.arange(10))
    assert np.allclose(kitti.poses, trajectory.poses, atol=1e-8)
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(TrajectoryError, match="bad.txt: 3 values"):
        read_trajectory(tmp_path / "bad.txt")
    with pytest.raises(TrajectoryError, match="not found"):
        read_trajectory(tmp_path / "missing.txt")
    with pytest.raises(TrajectoryError, match="expected 8 numbers"):
        read_trajectory(tmp_path / "k.txt", "tum")


def test_eval_cli_writes_plot_and_json_matching_the_library(tmp_path, capsys):
    gt = wandering_trajectory()
    est, _ = with_position_noise(transformed(gt, similarity(0.5)), sigma=0.005)
    write_tum(tmp_path / "gt.txt", gt)
    write_tum(tmp_path / "est.txt", est)
    plot, out = tmp_path / "plot.png", tmp_path / "metrics.json"
    code = main(
        [
            "eval",
            "--gt",
            str(tmp_path / "gt.txt"),
            "--est",
            str(tmp_path / "est.txt"),
            "--plot",
            str(plot),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    image = cv2.imread(str(plot))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 600
    numbers = json.loads(out.read_text())["trajectory"]
    assert_same_numbers(numbers, evaluate_trajectory(read_tum(tmp_path / "gt.txt"), read_tum(tmp_path / "est.txt")))
    assert numbers["align"] == "sim3" and numbers["scale"] == pytest.approx(2.0, rel=0.01)
    assert "ATE RMSE" in capsys.readouterr().out


def test_eval_cli_on_kitti_files(tmp_path):
    gt = wandering_trajectory(n=50)
    write_kitti(tmp_path / "gt.txt", gt)
    write_kitti(tmp_path / "est.txt", transformed(gt, similarity(5.0)))
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "eval",
                "--gt",
                str(tmp_path / "gt.txt"),
                "--est",
                str(tmp_path / "est.txt"),
                "--format",
                "kitti",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    numbers = json.loads(out.read_text())["trajectory"]
    assert numbers["ate_rmse"] < 1e-6 and numbers["matched"] == 50
    assert numbers["scale"] == pytest.approx(0.2, rel=1e-6)


def test_eval_cli_on_tum_fr1_ground_truth(shared_data, tmp_path):
    gt_file = shared_data / "tum_fr1_rpy" / "groundtruth.txt"
    gt = read_tum(gt_file)
    rgb_lines = (shared_data / "tum_fr1_rpy" / "rgb.txt").read_text().splitlines()
    frame_times = np.array([float(line.split()[0]) for line in rgb_lines if line.strip() and not line.startswith("#")])
    poses, valid = gt.interpolate(frame_times, max_gap=0.05)
    est, _ = with_position_noise(Trajectory(frame_times[valid], poses[valid]), sigma=0.003)
    est = transformed(est, similarity(0.25))
    write_tum(tmp_path / "est.txt", est)
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "eval",
                "--gt",
                str(gt_file),
                "--est",
                str(tmp_path / "est.txt"),
                "--plot",
                str(tmp_path / "p.png"),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    numbers = json.loads(out.read_text())["trajectory"]
    assert_same_numbers(numbers, evaluate_trajectory(gt, read_tum(tmp_path / "est.txt")))
    assert numbers["matched"] >= 0.95 * valid.sum()
    assert numbers["ate_rmse"] < 0.01 and numbers["scale"] == pytest.approx(4.0, rel=0.05)
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_eval_cli_errors_are_one_line(tmp_path, capsys):
    gt = wandering_trajectory(n=20)
    write_tum(tmp_path / "gt.txt", gt)
    (tmp_path / "broken.txt").write_text("1000.0 1 2 3 0 0 0 x\n")
    cases = [
        (["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "none.txt")], "not found"),
        (["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "broken.txt")], "broken.txt:1: not a number"),
        (["--gt", str(tmp_path / "gt.txt")], "needs both --gt FILE and --est FILE"),
        ([], "give --gt and --est"),
    ]
    for argv, message in cases:
        assert main(["eval", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("v2d eval: error:") and message in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------- depth
def test_depth_metrics_on_hand_computed_values():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # the 0 is invalid
    pred = np.array([[1.0, 1.0], [5.0, 3.0]])
    m = depth_metrics(pred, gt)
    assert m["valid_pixels"] == 3 and m["scale"] == 1.0
    assert m["abs_rel"] == pytest.approx((0 + 0.5 + 0.25) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 1 / 2 + 1 / 4) / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(2 / 3))
    assert m["rmse_log"] == pytest.approx(np.sqrt((np.log(2) ** 2 + np.log(1.25) ** 2) / 3))
    # max(p/g, g/p) = 1, 2, 1.25: below 1.25 only the first; below 1.5625 two; below 1.953 two.
    assert (m["delta1"], m["delta2"], m["delta3"]) == pytest.approx((1 / 3, 2 / 3, 2 / 3))


def test_depth_range_limits_the_pixels():
    gt = np.array([0.05, 1.0, 2.0, 50.0, np.nan])
    pred = np.array([1.0, 1.0, 2.0, 1.0, 1.0])
    m = depth_metrics(pred, gt, min_depth=0.1, max_depth=10.0)
    assert m["valid_pixels"] == 2 and m["abs_rel"] == 0.0


def test_median_scaling_makes_metrics_scale_invariant():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 8.0, size=(48, 64))
    pred = gt * rng.uniform(0.8, 1.25, size=gt.shape)
    base = depth_metrics(pred, gt, median_scaling=True, max_depth=10.0)
    scaled = depth_metrics(pred * 7.0, gt, median_scaling=True, max_depth=10.0)
    for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3"):
        assert scaled[key] == pytest.approx(base[key], rel=1e-9)
    assert scaled["scale"] == pytest.approx(base["scale"] / 7.0, rel=1e-9)
    exact = depth_metrics(gt / 3.0, gt, median_scaling=True, max_depth=10.0)
    assert exact["scale"] == pytest.approx(3.0) and exact["abs_rel"] < 1e-9 and exact["delta1"] == 1.0


def test_average_is_the_mean_of_per_image_metrics():
    a = depth_metrics(np.array([[2.0]]), np.array([[1.0]]))
    b = depth_metrics(np.array([[1.0, 1.0]]), np.array([[1.0, 1.0]]))
    mean = average_depth_metrics([a, b])
    assert mean["images"] == 2 and mean["abs_rel"] == pytest.approx(0.5) and mean["delta1"] == pytest.approx(0.5)


def test_depth_metrics_bad_input():
    with pytest.raises(EvaluationError, match="shape|is \\("):
        depth_metrics(np.ones((2, 2)), np.ones((3, 2)))
    with pytest.raises(EvaluationError, match="no valid ground-truth"):
        depth_metrics(np.ones((2, 2)), np.zeros((2, 2)))


def test_eval_cli_on_depth_folders(tmp_path, capsys):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        gt = rng.uniform(0.5, 5.0, size=(30, 40)).astype(np.float32)
        gt[0] = 0.0  # invalid row
        cv2.imwrite(str(gt_dir / f"{i:04d}.png"), np.round(gt * 5000).astype(np.uint16))
        np.save(pred_dir / f"{i:04d}.npy", 0.5 * gt[::2, ::2] + 0.01)  # half resolution, half scale
    np.save(pred_dir / "extra.npy", np.ones((30, 40), np.float32))
    out = tmp_path / "d.json"
    assert (
        main(["eval", "--depth-pred", str(pred_dir), "--depth-gt", str(gt_dir), "--median-scaling", "--json", str(out)])
        == 0
    )
    numbers = json.loads(out.read_text())["depth"]
    assert numbers["mean"]["images"] == 3 and numbers["unmatched_pred"] == 1
    assert numbers["mean"]["scale"] == pytest.approx(2.0, rel=0.05)
    expected = evaluate_depth_folders(pred_dir, gt_dir, median_scaling=True)
    assert numbers["mean"] == pytest.approx(expected.mean)
    assert "abs rel" in capsys.readouterr().out


def test_depth_folder_errors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "x.npy", np.ones((4, 4)))
    np.save(tmp_path / "b" / "y.npy", np.ones((4, 4)))
    with pytest.raises(EvaluationError, match="no depth maps with the same file name"):
        evaluate_depth_folders(tmp_path / "a", tmp_path / "b")
    with pytest.raises(EvaluationError, match="folder not found"):
        evaluate_depth_folders(tmp_path / "a", tmp_path / "missing")
    cv2.imwrite(str(tmp_path / "b" / "x.png"), np.ones((4, 4), np.uint8))
    with pytest.raises(DepthMapError, match="16-bit"):
        evaluate_depth_folders(tmp_path / "a", tmp_path / "b")
