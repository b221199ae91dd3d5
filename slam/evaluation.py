"""Scoring against ground truth: trajectory errors (ATE, RPE) computed through evo, and the
standard single-image depth metrics.

Trajectories
    Poses are camera-to-world. The estimate is associated with the ground truth by timestamp
    (``evo.core.sync.associate_trajectories``: pairs whose timestamps differ by at most
    ``max_diff`` seconds; the denser trajectory is then interpolated at the sparser one's matched
    timestamps), aligned to it with Umeyama's method (``sim3``: rotation, translation and scale,
    the right choice for monocular SLAM, whose scale is arbitrary; ``se3``: no scale; ``none``),
    and scored with ``evo.core.metrics.APE`` on the translation (the ATE, metres) and
    ``evo.core.metrics.RPE`` between associated poses ``delta`` apart (translation in metres,
    rotation in degrees), on the aligned estimate.

    Coverage is ``matched / gt_frames``: the estimated poses matched to the ground truth, over
    the ground-truth poses in the time span of the run (by default the estimate's first to last
    timestamp, widened by ``max_diff``). It is the share of frames tracked when the ground truth
    is sampled at the frame times, as ``v2d run`` writes ``groundtruth.txt``; against a denser
    ground truth (TUM's 100 Hz motion capture for a 30 Hz camera) it is at most the ratio of the
    rates.

Depth
    :func:`depth_metrics` scores one predicted depth map against ground truth over the pixels
    where the ground truth is valid (finite, > 0, within ``[min_depth, max_depth]``); the
    prediction is clipped to that range (after median scaling, if asked). Several images are
    summarised by the mean of their per-image metrics (:func:`average_depth_metrics`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np

from slam.errors import EvaluationError, TrajectoryError
from slam.trajectory import Trajectory, read_kitti, read_tum

ALIGNMENTS = ("sim3", "se3", "none")
TRAJECTORY_FORMATS = ("auto", "tum", "kitti")
#: Extensions of depth map files: .npy in metres, 16-bit .png as value / depth_scale metres.
DEPTH_EXTENSIONS = (".npy", ".png")
DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")


# ================================================================================== trajectories
def read_trajectory(path: str | Path, fmt: str = "auto") -> Trajectory:
    """Read a trajectory file of camera-to-world poses: ``tum`` (``timestamp tx ty tz qx qy qz
    qw``), ``kitti`` (12 numbers a line, timestamps = line index 0, 1, ...) or ``auto`` (by the
    number of values on the first data line). Raises TrajectoryError naming the file."""
    if fmt not in TRAJECTORY_FORMATS:
        raise TrajectoryError(f"unknown trajectory format {fmt!r}; use one of {', '.join(TRAJECTORY_FORMATS)}")
    path = Path(path)
    if fmt == "auto":
        fmt = detect_format(path)
    trajectory = read_tum(path) if fmt == "tum" else read_kitti(path)
    if len(trajectory) == 0:
        raise TrajectoryError(f"{path}: no poses in the file")
    return trajectory


def detect_format(path: str | Path) -> str:
    """``"tum"`` or ``"kitti"`` by the number of values on the first data line of a trajectory
    file (8 or 12); raises TrajectoryError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise TrajectoryError(f"trajectory file not found: {path}")
    for line in path.read_text(errors="replace").splitlines():
        fields = line.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) == 8:
            return "tum"
        if len(fields) == 12:
            return "kitti"
        raise TrajectoryError(f"{path}: {len(fields)} values on a line; expected 8 (TUM: timestamp tx ty tz "
                              "qx qy qz qw) or 12 (KITTI: a 3x4 pose matrix)")
    raise TrajectoryError(f"{path}: no poses in the file")


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
    pairs; ``gt_frames``: ground-truth poses in the run's time span; ``coverage`` =
    ``matched / gt_frames``; ``est_poses``: poses in the estimate file. ``aligned``: the
    associated, aligned poses (for plots; not in :meth:`to_dict`).
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
    est_poses: int
    coverage: float
    aligned: AlignedTrajectories = field(repr=False, compare=False)

    def to_dict(self) -> dict:
        """The numbers as a JSON-able dict (everything but ``aligned``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "aligned"}

    def summary(self) -> str:
        """A few human-readable lines."""
        return "\n".join([
            f"ATE RMSE {self.ate_rmse:.4f} m (mean {self.ate_mean:.4f}, median {self.ate_median:.4f}, "
            f"max {self.ate_max:.4f}) after {self.align} alignment, scale {self.scale:.4f}",
            f"RPE (delta {self.rpe_delta} frame{'s' if self.rpe_delta != 1 else ''}): translation RMSE "
            f"{self.rpe_trans_rmse:.4f} m, rotation RMSE {self.rpe_rot_rmse_deg:.3f} deg",
            f"coverage {100 * self.coverage:.1f}%: {self.matched} estimated poses matched of {self.gt_frames} "
            f"ground-truth poses in the run's time span ({self.est_poses} estimated poses in all)",
        ])


def _to_evo(trajectory: Trajectory, name: str):
    from evo.core.trajectory import PoseTrajectory3D

    return PoseTrajectory3D(poses_se3=list(trajectory.poses), timestamps=trajectory.timestamps.copy(), name=name)


def _from_evo(trajectory) -> Trajectory:
    return Trajectory(np.asarray(trajectory.timestamps, dtype=np.float64), np.asarray(trajectory.poses_se3))


def associate_and_align(gt: Trajectory, est: Trajectory, align: str = "sim3",
                        max_diff: float = 0.02) -> AlignedTrajectories:
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
            _to_evo(gt, "ground truth"), _to_evo(est, "estimate"),
            sync_method=SyncMethod.interpolation, max_diff=max_diff,
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


def evaluate_trajectory(gt: Trajectory, est: Trajectory, align: str = "sim3", max_diff: float = 0.02,
                        rpe_delta: int = 1, run_span: tuple[float, float] | None = None) -> TrajectoryMetrics:
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
        coverage=matched / gt_frames if gt_frames else 0.0,
        aligned=aligned,
    )


def plot_trajectories(aligned: AlignedTrajectories, path: str | Path, title: str = "",
                      time_label: str = "time (s)") -> None:
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


# ================================================================================== depth
def valid_depth_mask(gt: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Pixels where the ground-truth depth (metres) is finite, positive and within range."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(gt) & (gt > 0) & (gt >= min_depth) & (gt <= max_depth)


def depth_metrics(pred: np.ndarray, gt: np.ndarray, median_scaling: bool = False, min_depth: float = 1e-3,
                  max_depth: float = 80.0) -> dict[str, float]:
    """Standard depth metrics of a predicted depth map against ground truth, both HxW in metres.

    Over the valid ground-truth pixels (:func:`valid_depth_mask`): with ``median_scaling`` the
    prediction is multiplied by ``scale = median(gt) / median(pred)``; it is then clipped to
    ``[min_depth, max_depth]``. Returns ``abs_rel`` = mean |p - g| / g, ``sq_rel`` =
    mean (p - g)^2 / g, ``rmse`` = sqrt(mean (p - g)^2) (metres), ``rmse_log`` =
    sqrt(mean (ln p - ln g)^2), ``delta1..3`` = share of pixels with max(p/g, g/p) below
    1.25, 1.25^2, 1.25^3, ``scale`` (1 without median scaling) and ``valid_pixels``.
    Raises EvaluationError on different shapes or when no pixel is valid.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise EvaluationError(f"predicted depth is {pred.shape} but ground truth is {gt.shape}")
    if not 0 < min_depth < max_depth:
        raise EvaluationError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    mask = valid_depth_mask(gt, min_depth, max_depth)
    if not mask.any():
        raise EvaluationError(f"no valid ground-truth depth between {min_depth} and {max_depth} m")
    g = gt[mask]
    p = np.nan_to_num(pred[mask], nan=0.0, posinf=max_depth, neginf=0.0)
    scale = 1.0
    if median_scaling:
        median_pred = float(np.median(p))
        if median_pred <= 0:
            raise EvaluationError("the median predicted depth over valid pixels is not positive; cannot scale it")
        scale = float(np.median(g)) / median_pred
        p = p * scale
    p = np.clip(p, min_depth, max_depth)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "scale": scale,
        "valid_pixels": int(mask.sum()),
    }


def average_depth_metrics(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Mean of per-image :func:`depth_metrics` (every image weighs the same, as is standard),
    with ``images`` = how many were averaged."""
    if not per_image:
        raise EvaluationError("no depth maps to average")
    keys = [k for k in per_image[0] if k != "valid_pixels"]
    mean = {k: float(np.mean([m[k] for m in per_image])) for k in keys}
    mean["images"] = len(per_image)
    return mean


def read_depth(path: str | Path, depth_scale: float = 5000.0) -> np.ndarray:
    """A depth map in metres (float32, 0 = invalid) from ``.npy`` (metres) or a 16-bit ``.png``
    (value / ``depth_scale`` metres). Raises EvaluationError naming the file."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise EvaluationError(f"cannot read depth map {path}: {err}") from None
        depth = np.squeeze(depth)
    elif path.suffix.lower() == ".png":
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise EvaluationError(f"cannot read depth map {path} (missing or corrupt)")
        if depth.dtype != np.uint16:
            raise EvaluationError(f"{path}: a depth PNG must be 16-bit (value / depth scale = metres), "
                                  f"got {depth.dtype}")
        depth = depth.astype(np.float32) / depth_scale
    else:
        raise EvaluationError(f"{path}: depth maps must be .npy (metres) or 16-bit .png")
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise EvaluationError(f"{path}: a depth map must be one HxW array of numbers, got shape {depth.shape}")
    return depth.astype(np.float32)


@dataclass
class DepthEvaluation:
    """Depth metrics over a folder: ``mean`` (:func:`average_depth_metrics`), ``per_image``
    (file stem -> :func:`depth_metrics`), ``skipped`` (stems whose ground truth has no valid
    pixel), ``unmatched_pred`` / ``unmatched_gt`` (stems in only one folder)."""

    mean: dict[str, float]
    per_image: dict[str, dict[str, float]]
    skipped: list[str]
    unmatched_pred: int
    unmatched_gt: int

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        m = self.mean
        text = (f"depth over {m['images']} images: abs rel {m['abs_rel']:.4f}, sq rel {m['sq_rel']:.4f}, "
                f"RMSE {m['rmse']:.4f} m, RMSE log {m['rmse_log']:.4f}, delta<1.25 {m['delta1']:.4f}, "
                f"<1.25^2 {m['delta2']:.4f}, <1.25^3 {m['delta3']:.4f}, mean scale {m['scale']:.4f}")
        notes = []
        if self.skipped:
            notes.append(f"{len(self.skipped)} skipped without valid ground truth")
        if self.unmatched_pred or self.unmatched_gt:
            notes.append(f"{self.unmatched_pred} predictions and {self.unmatched_gt} ground-truth maps unmatched")
        return text + (f"\n({'; '.join(notes)})" if notes else "")


def _depth_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise EvaluationError(f"{what} folder not found: {folder}")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in DEPTH_EXTENSIONS:
            if path.stem in files:
                raise EvaluationError(f"{folder}: both {files[path.stem].name} and {path.name}; keep one per frame")
            files[path.stem] = path
    return files


def evaluate_depth_folders(pred_dir: str | Path, gt_dir: str | Path, median_scaling: bool = False,
                           depth_scale: float = 5000.0, min_depth: float = 1e-3,
                           max_depth: float = 80.0) -> DepthEvaluation:
    """Score every predicted depth map in ``pred_dir`` against the ground-truth map with the same
    file stem in ``gt_dir`` (:func:`read_depth` formats). A prediction of another size is resized
    to the ground truth's (bilinear). Raises EvaluationError when no stems match."""
    if depth_scale <= 0:
        raise EvaluationError(f"the depth scale must be positive, got {depth_scale}")
    pred_files = _depth_files(Path(pred_dir), "predicted depth")
    gt_files = _depth_files(Path(gt_dir), "ground-truth depth")
    common = sorted(set(pred_files) & set(gt_files))
    if not common:
        raise EvaluationError(f"no depth maps with the same file name (stem) in {pred_dir} "
                              f"({len(pred_files)} .npy/.png) and {gt_dir} ({len(gt_files)} .npy/.png)")
    per_image: dict[str, dict[str, float]] = {}
    skipped: list[str] = []
    for stem in common:
        gt = read_depth(gt_files[stem], depth_scale)
        if not valid_depth_mask(gt, min_depth, max_depth).any():
            skipped.append(stem)
            continue
        pred = read_depth(pred_files[stem], depth_scale)
        if pred.shape != gt.shape:
            pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
        per_image[stem] = depth_metrics(pred, gt, median_scaling, min_depth, max_depth)
    if not per_image:
        raise EvaluationError(f"no ground-truth depth map in {gt_dir} has valid pixels between "
                              f"{min_depth} and {max_depth} m")
    return DepthEvaluation(average_depth_metrics(list(per_image.values())), per_image, skipped,
                           len(pred_files) - len(common), len(gt_files) - len(common))
