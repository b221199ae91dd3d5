"""`v2d eval`: score a trajectory against ground truth (ATE and RPE through evo), and/or folders of
predicted depth maps against ground-truth depth (abs rel, RMSE, delta < 1.25, ...)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slam.errors import V2DError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score a trajectory (ATE, RPE) or depth maps against ground truth",
        description="Trajectory: ATE and RPE with evo after Sim(3) (default), SE(3) or no alignment. "
        "Depth: standard metrics over depth maps matched by file name.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    traj = parser.add_argument_group("trajectory (camera-to-world poses)")
    traj.add_argument("--gt", metavar="FILE", help="ground-truth trajectory")
    traj.add_argument("--est", metavar="FILE", help="estimated trajectory")
    traj.add_argument(
        "--format",
        choices=("auto", "tum", "kitti"),
        default="auto",
        help="file format of both trajectories (auto: by the number of values a line); "
        "KITTI files get their line numbers as timestamps",
    )
    traj.add_argument(
        "--align",
        choices=("sim3", "se3", "none"),
        default="sim3",
        help="alignment of the estimate before scoring (sim3 for monocular runs)",
    )
    traj.add_argument(
        "--max-diff",
        type=float,
        default=0.02,
        metavar="SECONDS",
        help="largest timestamp difference of an associated pair",
    )
    traj.add_argument(
        "--rpe-delta",
        type=int,
        default=1,
        metavar="FRAMES",
        help="frames between the two poses of a relative pose error",
    )
    traj.add_argument("--plot", metavar="PNG", help="write a plot of the aligned estimate and the ground truth")
    depth = parser.add_argument_group("depth maps (.npy in metres, or 16-bit .png)")
    depth.add_argument("--depth-pred", metavar="DIR", help="folder of predicted depth maps")
    depth.add_argument("--depth-gt", metavar="DIR", help="folder of ground-truth depth maps (same file stems)")
    depth.add_argument(
        "--median-scaling",
        action="store_true",
        help="scale each prediction by median(gt) / median(pred) (for scale-free predictions)",
    )
    depth.add_argument(
        "--depth-scale", type=float, default=None, help="PNG depth units per metre (default: TUM's, 5000)"
    )
    depth.add_argument("--min-depth", type=float, default=1e-3, help="ignore ground truth closer than this (m)")
    depth.add_argument("--max-depth", type=float, default=80.0, help="ignore ground truth farther than this (m)")
    parser.add_argument("--json", metavar="FILE", help="write the numbers as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slam.evaluation.depth import evaluate_depth_folders
    from slam.evaluation.trajectory import evaluate_trajectory, plot_trajectories
    from slam.io.depth_maps import TUM_DEPTH_SCALE
    from slam.io.trajectory import detect_format, read_trajectory

    wants_trajectory = args.gt is not None or args.est is not None
    wants_depth = args.depth_pred is not None or args.depth_gt is not None
    if not (wants_trajectory or wants_depth):
        raise V2DError("give --gt and --est (trajectory) and/or --depth-pred and --depth-gt (depth maps)")
    if wants_trajectory and (args.gt is None or args.est is None):
        raise V2DError("trajectory evaluation needs both --gt FILE and --est FILE")
    if wants_depth and (args.depth_pred is None or args.depth_gt is None):
        raise V2DError("depth evaluation needs both --depth-pred DIR and --depth-gt DIR")
    if args.plot and not wants_trajectory:
        raise V2DError("--plot needs a trajectory evaluation (--gt and --est)")

    results: dict[str, dict] = {}
    if wants_trajectory:
        gt = read_trajectory(args.gt, args.format)
        est = read_trajectory(args.est, args.format)
        metrics = evaluate_trajectory(gt, est, align=args.align, max_diff=args.max_diff, rpe_delta=args.rpe_delta)
        print(metrics.summary())
        if args.plot:
            kitti = (args.format if args.format != "auto" else detect_format(args.est)) == "kitti"
            plot_trajectories(
                metrics.aligned,
                args.plot,
                title=f"{Path(args.est).name}: ATE RMSE {metrics.ate_rmse:.3f} m ({args.align})",
                time_label="frame" if kitti else "time (s)",
            )
            print(f"wrote {args.plot}")
        results["trajectory"] = metrics.to_dict()
    if wants_depth:
        evaluation = evaluate_depth_folders(
            args.depth_pred,
            args.depth_gt,
            args.median_scaling,
            TUM_DEPTH_SCALE if args.depth_scale is None else args.depth_scale,
            args.min_depth,
            args.max_depth,
        )
        print(evaluation.summary())
        results["depth"] = evaluation.to_dict()
    if args.json:
        path = Path(args.json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2) + "\n")
        except OSError as err:
            raise V2DError(f"cannot write {path}: {err.strerror or err}") from None
        print(f"wrote {args.json}")
    return 0
