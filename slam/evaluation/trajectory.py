"""Trajectory errors against ground truth (ATE, RPE), computed through evo.

Trajectories
    Poses are camera-to-world. The estimate is associated with the ground truth by timestamp
    (``evo.core.sync.associate_trajectories``: pairs whose timestamps differ by at most
    ``max_diff`` seconds; the denser trajectory is then interpolated at the sparser one's matched
    timestamps), aligned to it with Umeyama's method (``sim3``: rotation, translation and scale,
    the right choice for monocular SLAM, whose scale is arbitrary; ``se3``: no scale; ``none``),
    and scored with ``evo.core.metrics.APE`` on the translation (the ATE, metres) and
    ``evo.core.metrics.RPE`` between associated poses ``delta`` apart (translation in metres,
    rotation in degrees), on the aligned estimate.

    Coverage is ``matched / expected_frames``: the estimated poses matched to the ground truth,
    over the frames the time span of the run (by default the estimate's first to last timestamp)
    holds at the rate of the sparser of the two trajectories (its median time between poses),
    since association pairs each pose of the sparser one at most once. It is the share of frames
    with a pose whatever the ground truth's rate (TUM's motion capture runs at 100 Hz, the camera
    at 30); an estimate that leaves out the frames it lost covers less than all.

Degenerate scale
    A Sim(3) alignment can shrink a poor estimate towards a point: the ATE is then about the
    ground truth's own extent, whatever the tracking did. ``spread_ratio`` is the aligned
    estimate's spread (RMS distance of its positions from their centroid) over the ground truth's,
    on the matched poses; below :data:`DEGENERATE_SPREAD` the result says so (``degenerate_scale``
    and a line of the summary).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from slam.errors import TrajectoryError
from slam.io.trajectory import Trajectory

ALIGNMENTS = ("sim3", "se3", "none")
#: aligned estimate's spread, as a share of the ground truth's, below which the alignment is
#: taken to have collapsed the estimate (see "Degenerate scale" in the module docstring)
DEGENERATE_SPREAD = 0.1


@dataclass
class AlignedTrajectories:
    """Associated poses after alignment, camera-to-world: ``gt[i]`` and ``est[i]`` belong to the
    same timestamp. ``est`` is mapped into the ground truth's world frame by the similarity
    ``x -> scale * R x + t`` stored as ``transform`` (4x4, ``transform[:3, :3] = scale * R``)."""

    gt: Trajectory
    est: Trajectory
    scale: float
    transform: np.ndarray


@dataclass
class TrajectoryMetrics:
    """Trajectory errors in metres and degrees, after alignment ``align``.

    ``ate_*``: statistics of the position error of the aligned estimate. ``rpe_trans_rmse`` /
    ``rpe_rot_rmse_deg``: RMSE of the relative pose error between associated poses
    ``rpe_delta`` apart. ``scale``: the alignment's scale (1 unless sim3). ``matched``: associated
    pairs; ``gt_frames``: ground-truth poses in the run's time span; ``expected_frames``: frames
    the span holds at the sparser trajectory's rate; ``coverage`` = ``matched /
    expected_frames``; ``est_poses``: poses in the estimate file. ``spread_ratio``: the
    aligned estimate's spread over the ground truth's (None when the ground truth does not move);
    ``degenerate_scale``: it is below :data:`DEGENERATE_SPREAD`. ``aligned``: the associated,
    aligned poses (for plots; not in :meth:`to_dict`).
    """

    ate_rmse: float
    ate_mean: float
    ate_median: float
    ate_max: float
    rpe_trans_rmse: float
    rpe_rot_rmse_deg: float
    rpe_delta: int
    scale: float
    align: str
    matched: int
    gt_frames: int
    expected_frames: int
    est_poses: int
    coverage: float
    spread_ratio: float | None
    degenerate_scale: bool
    aligned: AlignedTrajectories = field(repr=False, compare=False)

    def to_dict(self) -> dict:
        """The numbers as a JSON-able dict (everything but ``aligned``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "aligned"}

    def summary(self) -> str:
        """A few human-readable lines (one more, a warning, when the scale is degenerate)."""
        warning = (
            [
                f"warning: the {self.align} alignment shrank the estimate to {self.spread_ratio:.1%} of the "
                f"ground truth's spread (scale {self.scale:.4f}): the ATE mostly measures the ground truth's "
                "extent, not the tracking"
            ]
            if self.degenerate_scale
            else []
        )
        return "\n".join(
            [
                f"ATE RMSE {self.ate_rmse:.4f} m (mean {self.ate_mean:.4f}, median {self.ate_median:.4f}, "
                f"max {self.ate_max:.4f}) after {self.align} alignment, scale {self.scale:.4f}",
                f"RPE (delta {self.rpe_delta} frame{'s' if self.rpe_delta != 1 else ''}): translation RMSE "
                f"{self.rpe_trans_rmse:.4f} m, rotation RMSE {self.rpe_rot_rmse_deg:.3f} deg",
                f"coverage {100 * self.coverage:.1f}%: {self.matched} estimated poses matched the ground truth, "
                f"of {self.expected_frames} frames in the run's time span ({self.gt_frames} ground-truth poses "
                f"in it, {self.est_poses} estimated poses in all)",
                *warning,
            ]
        )


def _median_interval(trajectory: Trajectory) -> float:
    """Median time between consecutive poses (0 for fewer than two)."""
    return float(np.median(np.diff(np.sort(trajectory.timestamps)))) if len(trajectory) > 1 else 0.0


def _to_evo(trajectory: Trajectory, name: str):
    from evo.core.trajectory import PoseTrajectory3D

    return PoseTrajectory3D(poses_se3=list(trajectory.poses), timestamps=trajectory.timestamps.copy(), name=name)


def _spread(trajectory: Trajectory) -> float:
    """RMS distance of the trajectory's positions from their centroid (its units)."""
    positions = trajectory.poses[:, :3, 3]
    return float(np.sqrt(np.mean(np.sum((positions - positions.mean(axis=0)) ** 2, axis=1))))


def _from_evo(trajectory) -> Trajectory:
    return Trajectory(np.asarray(trajectory.timestamps, dtype=np.float64), np.asarray(trajectory.poses_se3))


def associate_and_align(
    gt: Trajectory, est: Trajectory, align: str = "sim3", max_diff: float = 0.02
) -> AlignedTrajectories:
    """Associate ``est`` with ``gt`` by timestamp (within ``max_diff`` seconds; the denser one
    interpolated at the sparser one's matched timestamps) and align the estimate to the ground
    truth (``sim3``, ``se3`` or ``none``) with evo. Raises TrajectoryError when the timestamps do
    not overlap, or too few or degenerate poses prevent the alignment."""
    from evo import EvoException
    from evo.core.sync import SyncException, SyncMethod, associate_trajectories

    if align not in ALIGNMENTS:
        raise TrajectoryError(f"unknown alignment {align!r}; use one of {', '.join(ALIGNMENTS)}")
    if len(gt) == 0 or len(est) == 0:
        raise TrajectoryError("cannot evaluate an empty trajectory")
    try:
        gt_sync, est_sync = associate_trajectories(
            _to_evo(gt, "ground truth"),
            _to_evo(est, "estimate"),
            sync_method=SyncMethod.interpolation,
            max_diff=max_diff,
        )
    except SyncException:
        raise TrajectoryError(
            f"no estimated pose lies within {max_diff} s of a ground-truth pose (estimate "
            f"{est.timestamps[0]:.3f}-{est.timestamps[-1]:.3f} s, ground truth "
            f"{gt.timestamps[0]:.3f}-{gt.timestamps[-1]:.3f} s); do the files use the same clock?"
        ) from None
    except EvoException as err:
        raise TrajectoryError(f"cannot associate the estimate with the ground truth: {err}") from None
    scale, transform = 1.0, np.eye(4)
    if align != "none":
        if gt_sync.num_poses < 3:
            raise TrajectoryError(f"only {gt_sync.num_poses} associated poses; {align} alignment needs at least 3")
        try:
            rotation, translation, scale = est_sync.align(gt_sync, correct_scale=(align == "sim3"))
        except EvoException as err:
            raise TrajectoryError(f"cannot align the estimate to the ground truth: {err}") from None
        transform[:3, :3] = scale * rotation
        transform[:3, 3] = translation
    return AlignedTrajectories(_from_evo(gt_sync), _from_evo(est_sync), float(scale), transform)


def evaluate_trajectory(
    gt: Trajectory,
    est: Trajectory,
    align: str = "sim3",
    max_diff: float = 0.02,
    rpe_delta: int = 1,
    run_span: tuple[float, float] | None = None,
) -> TrajectoryMetrics:
    """ATE and RPE of ``est`` against ``gt`` (both camera-to-world) with evo, after association
    and alignment as in :func:`associate_and_align`. ``rpe_delta``: frames between the two poses
    of each relative pose (associated poses, counted in the estimate's order). ``run_span``:
    first and last timestamp of the run for the coverage (default: the estimate's)."""
    from evo import EvoException
    from evo.core.metrics import APE, RPE, PoseRelation, StatisticsType, Unit

    if rpe_delta < 1:
        raise TrajectoryError(f"the RPE delta must be at least 1 frame, got {rpe_delta}")
    aligned = associate_and_align(gt, est, align, max_diff)
    matched = len(aligned.gt)
    if matched <= rpe_delta:
        raise TrajectoryError(f"only {matched} associated poses: too few for the RPE over {rpe_delta} frame(s)")
    pair = (_to_evo(aligned.gt, "ground truth"), _to_evo(aligned.est, "estimate"))
    try:
        ape = APE(PoseRelation.translation_part)
        ape.process_data(pair)
        rpe_trans = RPE(PoseRelation.translation_part, delta=rpe_delta, delta_unit=Unit.frames)
        rpe_trans.process_data(pair)
        rpe_rot = RPE(PoseRelation.rotation_angle_deg, delta=rpe_delta, delta_unit=Unit.frames)
        rpe_rot.process_data(pair)
    except EvoException as err:
        raise TrajectoryError(f"evo could not compute the errors: {err}") from None

    start, end = run_span if run_span is not None else (est.timestamps.min(), est.timestamps.max())
    gt_frames = int(np.count_nonzero((gt.timestamps >= start - max_diff) & (gt.timestamps <= end + max_diff)))
    interval = max(_median_interval(gt), _median_interval(est))
    expected = max(int(round((end - start) / interval)) + 1 if interval > 0 else 1, matched)
    gt_spread = _spread(aligned.gt)
    spread_ratio = _spread(aligned.est) / gt_spread if gt_spread > 0 else None
    return TrajectoryMetrics(
        ate_rmse=float(ape.get_statistic(StatisticsType.rmse)),
        ate_mean=float(ape.get_statistic(StatisticsType.mean)),
        ate_median=float(ape.get_statistic(StatisticsType.median)),
        ate_max=float(ape.get_statistic(StatisticsType.max)),
        rpe_trans_rmse=float(rpe_trans.get_statistic(StatisticsType.rmse)),
        rpe_rot_rmse_deg=float(rpe_rot.get_statistic(StatisticsType.rmse)),
        rpe_delta=int(rpe_delta),
        scale=aligned.scale,
        align=align,
        matched=matched,
        gt_frames=gt_frames,
        est_poses=len(est),
        expected_frames=expected,
        coverage=matched / expected,
        spread_ratio=spread_ratio,
        degenerate_scale=spread_ratio is not None and spread_ratio < DEGENERATE_SPREAD,
        aligned=aligned,
    )


def plot_trajectories(
    aligned: AlignedTrajectories, path: str | Path, title: str = "", time_label: str = "time (s)"
) -> None:
    """Write a PNG comparing the aligned estimate with the ground truth: a top view (the two
    world axes along which the ground truth spreads most) and x, y, z against time (since the
    first associated pose; ``time_label`` names its unit, e.g. frames for KITTI files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt_xyz, est_xyz = aligned.gt.positions, aligned.est.positions
    time = aligned.gt.timestamps - aligned.gt.timestamps[0]
    plane = np.sort(np.argsort(gt_xyz.std(axis=0))[1:])  # drop the axis of least spread
    axis_names = "xyz"

    figure = plt.figure(figsize=(12, 6), constrained_layout=True)
    grid = figure.add_gridspec(3, 2, width_ratios=(1.2, 1))
    top = figure.add_subplot(grid[:, 0])
    top.plot(gt_xyz[:, plane[0]], gt_xyz[:, plane[1]], color="black", label="ground truth")
    top.plot(est_xyz[:, plane[0]], est_xyz[:, plane[1]], color="tab:blue", label="estimate (aligned)")
    top.plot(*gt_xyz[0, plane], "o", color="black", markersize=5)
    top.set_xlabel(f"{axis_names[plane[0]]} (m)")
    top.set_ylabel(f"{axis_names[plane[1]]} (m)")
    top.set_aspect("equal", adjustable="datalim")
    top.set_title(f"top view ({axis_names[plane[0]]}{axis_names[plane[1]]} plane)")
    top.legend(loc="best")
    for row in range(3):
        ax = figure.add_subplot(grid[row, 1])
        ax.plot(time, gt_xyz[:, row], color="black")
        ax.plot(time, est_xyz[:, row], color="tab:blue")
        ax.set_ylabel(f"{axis_names[row]} (m)")
        if row == 2:
            ax.set_xlabel(time_label)
    if title:
        figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
