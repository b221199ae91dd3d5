"""`v2d demo`: the built-in synthetic scene, with no download.

Until the SLAM system lands, the demo renders the synthetic sequence and writes what a run of it
would be scored against: the ground-truth trajectory, a video of the frames beside their exact
depth, a preview picture and stats.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from slam.errors import V2DError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the built-in synthetic scene (no download needed)",
                                   description="Render the built-in synthetic scene and write its outputs.")
    parser.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    parser.add_argument("--scene", choices=("room", "road"), default="room", help="hand-held room or driving road")
    parser.add_argument("--frames", type=int, default=150, help="number of frames (default: 150)")
    parser.add_argument("--seed", type=int, default=0, help="scene and camera path seed (default: 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from slam.sources.base import SourceOptions
    from slam.sources.synthetic import SyntheticSource
    from slam.trajectory import Trajectory, write_tum
    from slam.visualization import side_by_side

    if args.frames < 1:
        raise V2DError(f"--frames must be at least 1, got {args.frames}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = f"synthetic:{args.scene}:seed={args.seed}:frames={args.frames}"
    source = SyntheticSource.from_spec(spec, SourceOptions())
    timestamps, poses, previews = [], [], []
    writer = None
    start = time.perf_counter()
    try:
        for frame in source:
            picture = side_by_side(frame.image, frame.depth_gt)
            if writer is None:
                height, width = picture.shape[:2]
                writer = cv2.VideoWriter(str(out / "sequence.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, height))
            writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            timestamps.append(frame.timestamp)
            poses.append(frame.pose_gt)
            if frame.index % max(1, args.frames // 4) == 0 and len(previews) < 4:
                previews.append(picture)
    finally:
        if writer is not None:
            writer.release()
        if timestamps:  # whatever was rendered before an interruption is kept
            ground_truth = Trajectory(np.array(timestamps), np.stack(poses))
            write_tum(out / "groundtruth.txt", ground_truth,
                      header=f"ground truth of {spec}, camera-to-world\ntimestamp tx ty tz qx qy qz qw")
    seconds = time.perf_counter() - start
    cv2.imwrite(str(out / "preview.png"), cv2.cvtColor(np.concatenate(previews, axis=0), cv2.COLOR_RGB2BGR))
    stats = {"source": spec, "frames_read": len(timestamps), "camera": source.camera.to_string(),
             "image_size": list(source.camera.size), "wall_time_s": round(seconds, 3),
             "render_fps": round(len(timestamps) / seconds, 1),
             "path_length_m": round(ground_truth.path_length(), 3)}
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"rendered {len(timestamps)} frames of {spec} at {stats['render_fps']} fps (with video encoding)")
    print(f"wrote {out}/groundtruth.txt, sequence.mp4 (frames beside their depth), preview.png, stats.json")
    print("note: the SLAM system is not built yet; this demo shows the synthetic sequence and its ground truth")
    return 0
