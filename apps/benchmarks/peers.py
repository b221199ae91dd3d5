"""Peers (`v2d bench --suite peers`; `--peers NAME` picks them): what a user would reach for
instead, on the same frames of each real sequence, beside the default `v2d run`:

- COLMAP through pycolmap: SIFT features, sequential matching (10 neighbours, no loop
  detection), incremental mapping with the known pinhole intrinsics held; the model with the
  most registered frames. Offline and global: the accuracy reference.
- ORB odometry with OpenCV: ORB features matched frame to frame, the essential matrix (RANSAC)
  and its pose, each step's translation of unit length (two views cannot measure more): the
  floor a SLAM system must clear.

Each gets the frames as `v2d run` reads them (undistorted, at the stored size). Scored like the
SLAM suite: ATE after a Sim(3) alignment over the frames each method registered, with the ground
truth at the frame times; wall time (COLMAP's from writing the frames as PNG files for it to its
model; ours the whole run, reading included).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from apps.bench import PEERS
from apps.benchmarks.common import run_and_read, skipped_where_absent
from slam.evaluation.trajectory import evaluate_trajectory
from slam.io.frame import Frame
from slam.io.sources.base import SourceOptions
from slam.io.sources.detect import open_source
from slam.io.trajectory import Trajectory

#: (sequence in ../shared/data, frames in a full run, frames in a quick run): the SLAM suite's
SEQUENCES = [("tum_fr1_rpy", 120, 30), ("kitti_07", 100, 30), ("hololens_000", 150, 40)]

#: ORB features per frame, and the least inlier matches of a step the odometry accepts
ORB_FEATURES = 2000
ORB_MIN_INLIERS = 15

#: COLMAP's sequential matching: each frame against this many next ones
COLMAP_OVERLAP = 10


def colmap_poses(frames: list[Frame], folder: Path) -> dict[int, np.ndarray] | str:
    """COLMAP's camera-to-world pose (4, 4) of each frame it registered, by frame index, in its
    largest model (see the module docstring); the frames are written into ``folder`` first. A
    string says why there is none (pycolmap absent, no model)."""
    try:
        import pycolmap
    except ImportError:
        return "pycolmap is not installed (pip install -e .[peers])"
    images = folder / "images"
    images.mkdir(parents=True)
    for frame in frames:
        cv2.imwrite(str(images / f"{frame.index:06d}.png"), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    camera = frames[0].camera
    database = folder / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    reader.camera_params = f"{camera.fx},{camera.fy},{camera.cx},{camera.cy}"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = 2
    pycolmap.extract_features(
        database,
        images,
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )
    pairing = pycolmap.SequentialPairingOptions()
    pairing.overlap = COLMAP_OVERLAP
    pairing.loop_detection = False
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = 2
    pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu)
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = 2
    mapping.random_seed = 0
    mapping.ba_refine_focal_length = mapping.ba_refine_principal_point = mapping.ba_refine_extra_params = False
    models = pycolmap.incremental_mapping(database, images, folder / "sparse", mapping)
    if not models:
        return "no model"
    largest = max(models.values(), key=lambda model: model.num_reg_images())
    poses = {}
    for image in largest.images.values():
        world_to_camera = np.eye(4)
        world_to_camera[:3] = image.cam_from_world().matrix()
        poses[int(Path(image.name).stem)] = np.linalg.inv(world_to_camera)
    return poses


def orb_odometry_poses(frames: list[Frame], _folder: Path) -> dict[int, np.ndarray] | str:
    """Frame-to-frame ORB odometry's camera-to-world pose (4, 4) of each frame it registered
    (see the module docstring): the first frame, and each one whose step from the last
    registered frame has at least :data:`ORB_MIN_INLIERS` inliers."""
    orb = cv2.ORB.create(ORB_FEATURES)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    camera_matrix = frames[0].camera.K
    first = frames[0]
    previous = orb.detectAndCompute(cv2.cvtColor(first.image, cv2.COLOR_RGB2GRAY), None)
    poses = {first.index: np.eye(4)}
    last_pose = np.eye(4)
    for frame in frames[1:]:
        current = orb.detectAndCompute(cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY), None)
        step = _orb_step(previous, current, matcher, camera_matrix)
        if step is None:
            continue  # not registered; the next frame is matched against the last registered one
        last_pose = last_pose @ np.linalg.inv(step)
        poses[frame.index] = last_pose
        previous = current
    return poses


def _orb_step(previous: tuple, current: tuple, matcher: cv2.BFMatcher, camera_matrix: np.ndarray) -> np.ndarray | None:
    """The (4, 4) pose of the current camera from the previous one (unit translation), or None."""
    (keypoints_a, descriptors_a), (keypoints_b, descriptors_b) = previous, current
    if descriptors_a is None or descriptors_b is None:
        return None
    matches = matcher.match(descriptors_a, descriptors_b)
    if len(matches) < ORB_MIN_INLIERS:
        return None
    points_a = np.array([keypoints_a[m.queryIdx].pt for m in matches], dtype=np.float64)
    points_b = np.array([keypoints_b[m.trainIdx].pt for m in matches], dtype=np.float64)
    essential, mask = cv2.findEssentialMat(points_a, points_b, camera_matrix, cv2.RANSAC, 0.999, 1.0)
    if essential is None or essential.shape != (3, 3):
        return None
    inliers, rotation, translation, _ = cv2.recoverPose(essential, points_a, points_b, camera_matrix, mask=mask)
    if inliers < ORB_MIN_INLIERS:
        return None
    step = np.eye(4)
    step[:3, :3], step[:3, 3] = rotation, translation[:, 0]
    return step


#: name -> (the row's label, the method: frames and a scratch folder -> poses by frame index)
METHODS: dict[str, tuple[str, Callable[[list[Frame], Path], dict[int, np.ndarray] | str]]] = {
    "colmap": ("COLMAP (pycolmap): SIFT, sequential matching, incremental mapping", colmap_poses),
    "orb": ("ORB odometry (OpenCV): frame to frame, essential matrix", orb_odometry_poses),
}


def _read_frames(spec: str, count: int) -> list[Frame]:
    with open_source(spec, options=SourceOptions(max_frames=count, depth=False)) as source:
        return list(source)


def suite(args: argparse.Namespace) -> str:
    """Markdown table: each sequence, ours and each peer of ``args.peers`` (default: all)."""
    peers = getattr(args, "peers", None) or list(PEERS)
    rows = [
        "| sequence | method | frames registered | ATE (m) | ATE / path | wall time (s) | fps | "
        "ATE and time against ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for name, full, quick in SEQUENCES:
        spec = skipped_where_absent(name, name, notes)
        if spec is None:
            continue
        count = quick if args.quick else full
        frames = _read_frames(spec, count)
        times = {f.index: f.timestamp for f in frames}
        truth = Trajectory(
            np.array([f.timestamp for f in frames if f.pose_gt is not None]),
            np.stack([f.pose_gt for f in frames if f.pose_gt is not None]),
        )
        path = truth.path_length()
        stats, _, estimate = run_and_read(spec, count, [])
        ours = evaluate_trajectory(truth, estimate, align="sim3").ate_rmse
        our_time = stats["wall_time_s"]
        rows.append(
            f"| {name} | v2d run (the default) | {stats['frames_tracked']} of {len(frames)} | {ours:.3f} | "
            f"{100 * ours / path:.1f}% of {path:.2f} m | {our_time:.1f} | {len(frames) / our_time:.1f} | |"
        )
        for peer in peers:
            label, method = METHODS[peer]
            with tempfile.TemporaryDirectory() as scratch:
                start = time.perf_counter()
                poses = method(frames, Path(scratch))
                seconds = time.perf_counter() - start
            if isinstance(poses, str):
                rows.append(f"| {name} | {label} | {poses} | | | | | |")
                continue
            registered = sorted(poses)
            estimate = Trajectory(np.array([times[k] for k in registered]), np.stack([poses[k] for k in registered]))
            ate = evaluate_trajectory(truth, estimate, align="sim3").ate_rmse if len(registered) >= 3 else float("nan")
            rows.append(
                f"| {name} | {label} | {len(registered)} of {len(frames)} | {ate:.3f} | "
                f"{100 * ate / path:.1f}% of {path:.2f} m | {seconds:.1f} | {len(frames) / seconds:.1f} | "
                f"{ate / ours:.2f}x the ATE in {seconds / our_time:.1f}x the time |"
            )
    return "### Peers\n\n" + "\n".join(rows) + ("\n\n" + "\n".join(notes) if notes else "")
