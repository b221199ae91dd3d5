"""`v2d run SOURCE`: SLAM on any source, writing the outputs of the command-line contract."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sized
from pathlib import Path

from slam.errors import V2DError
from viewer import DEFAULT_VIEWER_VARIABLE, VIEWERS, default_viewer

#: malloc arenas of a run's process (glibc's default: up to 8 per core; docs/tuning.md says why 2)
MALLOC_ARENAS = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run SLAM on a video, image folder, TUM/KITTI/EuRoC sequence, webcam:N or synthetic",
        description="Track the camera, estimate keyframe depth, fuse a point cloud and a mesh, and write them "
        "with the trajectory and stats.json to --out.",
    )
    add_run_arguments(parser)
    parser.set_defaults(func=run)


def add_run_arguments(parser: argparse.ArgumentParser, default_source: str | None = None) -> None:
    """The options shared by `v2d run` and `v2d demo` (whose source is optional)."""
    source_help = "video file, image folder, TUM/KITTI/EuRoC folder, ROS bag, webcam:N or synthetic[:road]"
    if default_source is None:
        parser.add_argument("source", help=source_help)
    else:
        parser.add_argument(
            "source", nargs="?", default=default_source, help=f"{source_help} (default: {default_source})"
        )
    parser.add_argument("--calib", help="calibration file 'fx fy cx cy [k1 k2 p1 p2 [k3]]' (see calib/README.md)")
    parser.add_argument("--out", default="outputs/run", help="output folder, new or empty (default: outputs/run)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the previous run in --out (its files are removed first)",
    )
    parser.add_argument(
        "--viewer",
        choices=VIEWERS,
        default=None,
        help="live display: qt (a window; the default when a display is present), open3d (a window, or "
        "offscreen pictures with --snapshot-every where there is no display) or none (the default "
        f"without a display); ${DEFAULT_VIEWER_VARIABLE} sets the default",
    )
    parser.add_argument("--screenshot", metavar="PATH", help="save the viewer's picture as PNG when the run ends")
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="close the viewer when the source ends (by default it stays open until closed)",
    )
    parser.add_argument(
        "--snapshot-every",
        type=int,
        metavar="N",
        help="save a PNG picture of the viewer every N frames into --snapshot-dir "
        "(frame_NNNNNN.png, NNNNNN: the frames processed when drawn)",
    )
    parser.add_argument(
        "--snapshot-dir", metavar="DIR", help="folder of the --snapshot-every pictures (default: OUT/snapshots)"
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the configuration's, cpu)")
    parser.add_argument("--weights", help="checkpoint of learned modules (with --set modules.depth=lite etc.)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--stride", type=int, default=1, help="use every K-th frame")
    parser.add_argument("--start", type=int, default=0, help="skip the first N frames")
    parser.add_argument(
        "--there-and-back",
        action="store_true",
        help="play the frames forward, then backward to the first: a closed path, to see the map reused "
        "(image folders, datasets and synthetic scenes)",
    )
    parser.add_argument(
        "--kind",
        help="source kind, overriding detection (video, image_folder, tum, kitti, euroc, rosbag, webcam, synthetic)",
    )
    parser.add_argument(
        "--topic", help="a ROS bag's image topic, e.g. /camera/rgb/image_color (default: the bag's only one)"
    )
    parser.add_argument("--config", help="YAML file with configuration sections (see slam/config/schema.py)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one configuration value (repeatable), e.g. --set backend.window=6",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="drop frames instead of lagging behind the source's clock (live sources)",
    )
    parser.add_argument(
        "--save-depth",
        action="store_true",
        help="also write each keyframe's depth (depth/NNNNNN.npy) and keyframes.txt",
    )
    parser.add_argument(
        "--save-views",
        action="store_true",
        help="also write the keyframes as posed views for Gaussian splatting and NeRF: views/images/, "
        "a COLMAP text model views/sparse/0/ and a nerfstudio views/transforms.json",
    )
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("--verbose", action="store_true", help="log what the system does (loops, losses, fusion)")
    talk.add_argument(
        "--quiet",
        action="store_true",
        help="print nothing but warnings and errors: no progress line (without a viewer) and no summary",
    )


def build_config(args: argparse.Namespace):
    """The configuration from defaults, --config, --set, --device and --weights."""
    from slam.config.loader import configure
    from slam.config.schema import SystemConfig

    assignments = list(args.set)
    if args.device:
        assignments.append(f"modules.device={args.device}")
    if args.weights:
        assignments.append(f"modules.weights={args.weights}")
    return configure(SystemConfig(), args.config, assignments)


def viewer_options(args: argparse.Namespace):
    """The chosen viewer (``--viewer``, else the default) and its options; a clear error for
    viewer options without a viewer."""
    from viewer.worker import ViewerOptions

    viewer = args.viewer or default_viewer()
    if viewer == "none" and (args.screenshot or args.snapshot_every or args.exit_when_done):
        raise V2DError("--screenshot, --snapshot-every and --exit-when-done need a viewer (--viewer qt or open3d)")
    if args.snapshot_every is not None and args.snapshot_every < 1:
        raise V2DError(f"--snapshot-every must be at least 1, got {args.snapshot_every}")
    if args.snapshot_dir and not args.snapshot_every:
        raise V2DError("--snapshot-dir needs --snapshot-every N")
    out = Path(args.out)
    return viewer, ViewerOptions(
        out_dir=out,
        screenshot=Path(args.screenshot) if args.screenshot else None,
        exit_when_done=args.exit_when_done,
        snapshot_every=args.snapshot_every,
        snapshot_dir=Path(args.snapshot_dir) if args.snapshot_dir else out / "snapshots",
    )


def run(args: argparse.Namespace) -> int:
    from apps.progress import Progress
    from slam.io.run_folder import check_output_folder
    from slam.io.sources.base import SourceOptions
    from slam.io.sources.detect import open_source
    from slam.system.machine import limit_allocator_arenas
    from slam.system.run import RunControl, run_slam

    # the tracking, keyframe, backend and reading threads would each grow their own malloc arena
    limit_allocator_arenas(MALLOC_ARENAS)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="v2d: %(message)s")
    config = build_config(args)
    viewer, display = viewer_options(args)
    check_output_folder(args.out, args.overwrite)
    options = SourceOptions(
        start=args.start, stride=args.stride, max_frames=args.max_frames, there_and_back=args.there_and_back
    )
    with open_source(args.source, calib=args.calib, options=options, kind=args.kind, topic=args.topic) as source:

        def slam(control: RunControl | None) -> dict:
            return run_slam(
                source,
                config,
                args.out,
                realtime=args.realtime,
                save_depth=args.save_depth,
                save_views=args.save_views,
                control=control,
                overwrite=args.overwrite,
            )

        if viewer == "none" and args.quiet:
            stats = slam(None)
        elif viewer == "none":
            control = RunControl()
            total = len(source) if isinstance(source, Sized) and not source.live else None
            progress = Progress(control, sys.stderr, total, source.live)
            progress.start()
            try:
                stats = slam(control)
            finally:
                progress.stop()
        else:
            from viewer.session import run_with_viewer

            stats = run_with_viewer(viewer, slam, display, title=args.source)
    if args.quiet:
        return 0
    print(
        f"{stats['frames_tracked']}/{stats['frames_processed']} frames tracked, {stats['keyframes']} keyframes, "
        f"{stats['end_to_end_fps']} frames/s end to end, {stats['points']} points"
    )
    print(f"wrote {args.out}/: " + ", ".join(stats["outputs"]))
    return 0
