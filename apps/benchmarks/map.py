"""The map against the sensor: for each sequence with depth (the synthetic room with its rendered
depth, the shared TUM and HoloLens clips with their depth sensor's), one `v2d run` with the
default configuration and ``--save-depth``, then

- the keyframes' final depth against the reference depth of the same frames
  (:func:`slam.evaluation.map.keyframe_depth_metrics`: abs rel and delta < 1.25, each keyframe
  scaled by its own scale and all by one; the spread of the keyframes' scales; density);
- the exported cloud (``points.ply``) and the mesh's vertices (``mesh.ply``) against the
  reference points: the reference depth of the keyframes' frames back-projected at their
  ground-truth poses. The estimate is moved into the ground truth's frame by the similarity
  whose scale is the keyframe depths' one scale and whose rotation and translation fit the
  estimated camera poses to the true ones, then refined by a rigid ICP (matches within
  :data:`ICP_DISTANCE`); accuracy (median distance to the reference), completeness (share of
  reference points within :data:`WITHIN` of the cloud) and precision (share of the cloud's
  points within it of the reference);
- on the synthetic room, whose walls are planes, how flat the aligned cloud and mesh draw them
  (:func:`slam.evaluation.map.plane_flatness`: each wall's points off the plane fitted to them,
  as a share of the room's longest side; target: 90% of them within :data:`WALL_TARGET`);
- a plan and a section of the aligned cloud beside the reference (in the reference's principal
  axes), written to ``docs/map-NAME.png`` next to the markdown file the suite updates.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from apps.benchmarks.common import run_cli, skipped_where_absent
from slam.errors import EvaluationError, V2DError
from slam.evaluation.map import (
    backproject_depth,
    cloud_metrics,
    keyframe_depth_metrics,
    plane_flatness,
    rigid_icp,
    similarity_from_poses,
    transform_points,
)
from slam.evaluation.trajectory import associate_and_align
from slam.io.sources.base import IndexedSource, SourceOptions
from slam.io.sources.detect import open_source
from slam.io.sources.synthetic import SyntheticSource
from slam.io.trajectory import read_trajectory
from slam.mapping.export import read_ply_vertices
from slam.mapping.point_cloud import PointCloud, voxel_downsample
from slam.synthetic.rooms import RoomLayout
from slam.system.run import DEPTH_FOLDER

#: (name, source, frames in a full run, in a quick run)
SEQUENCES = [
    ("synthetic room (hand-held)", "synthetic:room", 300, 40),
    ("tum_fr1_rpy", "tum_fr1_rpy", 120, 30),
    ("hololens_000", "hololens_000", 150, 40),
]

#: metres: a reference point counts as covered (and a cloud point as right) within this distance
WITHIN = 0.05
#: metres: the ICP's matching distance
ICP_DISTANCE = 0.10
#: cloud points (a fixed random subset) the ICP matches
ICP_POINTS = 100_000
#: metres: the reference points' voxel
REFERENCE_VOXEL = 0.01
#: the walls' target: 90% of their points within this share of the room's longest side of their plane
WALL_TARGET = 0.01
#: metres: a reference point lies on a plane of the room within this distance (the reference
#: points are voxel means, within half a voxel of the surface they sample)
ON_PLANE = REFERENCE_VOXEL
#: reference pixels used, every this many each way
REFERENCE_STRIDE = 2
#: points drawn per panel of the pictures
DRAWN_POINTS = 40_000


def _reference(source: str, frames: int, indices: set[int]) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Frame index -> (reference depth (H, W) metres, intrinsics (4,) at its size, camera-to-world
    (4, 4) ground-truth pose) for the frames ``indices`` of the first ``frames`` of ``source``
    that have both."""
    found = {}
    with open_source(source, options=SourceOptions(max_frames=frames)) as opened:
        # the keyframes' frames only, where the source reads frames out of order
        chosen = (
            (opened.frame_at(index) for index in sorted(indices) if index < frames)
            if isinstance(opened, IndexedSource)
            else (frame for frame in opened if frame.index in indices)
        )
        for frame in chosen:
            if frame.depth_gt is not None and frame.pose_gt is not None:
                found[frame.index] = (frame.depth_gt, frame.camera.intrinsics, frame.pose_gt)
    return found


def _room(source: str) -> RoomLayout | None:
    """The layout of a synthetic room ``source`` (its world frame is the ground truth's); None
    for any other source."""
    if not source.startswith("synthetic"):
        return None
    with open_source(source) as opened:
        layout = opened.sequence.layout if isinstance(opened, SyntheticSource) else None
    return layout if isinstance(layout, RoomLayout) else None


def _resized(depth: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``depth`` at (H, W) ``shape``, nearest neighbour (no invented depth between surfaces)."""
    if depth.shape == shape:
        return depth
    return cv2.resize(depth.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def _draw(path: Path, cloud: np.ndarray, reference: np.ndarray, title: str) -> None:
    """Two views of the aligned ``cloud`` beside the ``reference``, one PNG: along the reference's
    axis of least spread (the plan of a room or a corridor) and along its middle one (a section),
    in the reference's principal axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    centre = reference.mean(axis=0)
    sample = reference[rng.choice(len(reference), min(len(reference), 50_000))] - centre
    _, _, axes_by_spread = np.linalg.svd(sample, full_matrices=False)
    figure, panels = plt.subplots(2, 2, figsize=(10, 10))
    views = (((0, 1), "plan (largest two axes)"), ((0, 2), "section (largest and least axes)"))
    projected = [(points - centre) @ axes_by_spread.T for points in (cloud, reference)]
    low = np.percentile(projected[1], 0.5, axis=0) - 0.1
    high = np.percentile(projected[1], 99.5, axis=0) + 0.1
    for column, (points, name) in enumerate(zip(projected, ("estimate", "sensor"))):
        shown = points[rng.choice(len(points), min(len(points), DRAWN_POINTS), replace=False)]
        for row, ((a, b), view) in enumerate(views):
            panel = panels[row, column]
            panel.scatter(shown[:, a], shown[:, b], s=0.3, c="tab:blue" if column == 0 else "k", linewidths=0)
            panel.set_xlim(low[a], high[a])
            panel.set_ylim(low[b], high[b])
            panel.set_aspect("equal")
            panel.set_title(f"{name}: {view}, metres")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def measure(source: str, frames: int, out: Path, picture: Path | None, name: str, extra: tuple[str, ...] = ()) -> dict:
    """One run of ``source`` into ``out`` (``extra``: more `v2d run` arguments) and its map
    measured (see the module docstring): the metrics by name, and the picture drawn to
    ``picture`` when given."""
    run_cli(source, frames, out, ["--save-depth", *extra])
    files = {int(path.stem): path for path in (out / DEPTH_FOLDER).glob("*.npy")}
    reference = _reference(source, frames, set(files))
    if not reference:
        raise V2DError(f"{source}: no keyframe has reference depth and a ground-truth pose")
    pairs = []
    for index, (depth, _, _) in sorted(reference.items()):
        estimate = np.load(files[index])
        pairs.append((estimate, _resized(depth, estimate.shape)))
    depth_metrics = keyframe_depth_metrics(pairs)
    aligned = associate_and_align(
        read_trajectory(out / "groundtruth.txt"), read_trajectory(out / "trajectory.txt"), "none"
    )
    to_truth = similarity_from_poses(aligned.est.poses, aligned.gt.poses, depth_metrics.scale)
    sensed = np.concatenate(
        [backproject_depth(depth, intrinsics, pose, REFERENCE_STRIDE) for depth, intrinsics, pose in reference.values()]
    )
    points = voxel_downsample(PointCloud(sensed, np.zeros_like(sensed, np.uint8)), REFERENCE_VOXEL).points.astype(
        np.float64
    )
    cloud = transform_points(to_truth, read_ply_vertices(out / "points.ply")[0])
    sample = np.random.default_rng(0).choice(len(cloud), min(len(cloud), ICP_POINTS), replace=False)
    refine = rigid_icp(cloud[sample], points, ICP_DISTANCE)
    cloud = transform_points(refine, cloud)
    result: dict = {"depth": depth_metrics, "cloud": cloud_metrics(cloud, points, WITHIN), "notes": []}
    measured = {"cloud": cloud}
    if (out / "mesh.ply").is_file():
        vertices = transform_points(refine @ to_truth, read_ply_vertices(out / "mesh.ply")[0])
        if len(vertices):
            result["mesh"] = cloud_metrics(vertices, points, WITHIN)
            measured["mesh"] = vertices
    room = _room(source)
    if room is not None:
        result["room_size"] = max(room.size[:2])
        for what, drawn in measured.items():
            try:
                result[f"{what}_walls"] = plane_flatness(
                    drawn, points, room.wall_planes(), ON_PLANE, room.floor_and_ceiling_planes()
                )
            except EvaluationError as err:
                result["notes"].append(f"{name}: the {what}'s walls not measured: {err}")
    if picture is not None:
        _draw(picture, cloud, points, f"{name}: exported cloud (left) and sensor depth at the true poses (right)")
    return result


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def suite(args: argparse.Namespace) -> str:
    """Markdown tables of the map measures per sequence, and the pictures' links."""
    docs = Path(getattr(args, "output", "BENCHMARKS.md")).resolve().parent / "docs"
    depth_rows = [
        "| sequence | frames | keyframes | abs rel (own scale) | delta < 1.25 (own scale) | abs rel (one scale) | "
        "delta < 1.25 (one scale) | scale spread | density |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cloud_rows = [
        "| sequence | what | points | accuracy (median, cm) | completeness (< 5 cm) | precision (< 5 cm) | picture |",
        "|---|---|---|---|---|---|---|",
    ]
    wall_rows = [
        "| sequence | what | walls | points on them | off their plane: median | 90th percentile | "
        "target: 90% within 1% of the room's longest side |",
        "|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for name, source, full, quick in SEQUENCES:
        spec = skipped_where_absent(name, source, notes)
        if spec is None:
            continue
        frames = quick if args.quick else full
        picture = None if args.quick else docs / f"map-{_slug(name)}.png"
        try:
            with tempfile.TemporaryDirectory() as tmp:
                result = measure(spec, frames, Path(tmp), picture, name)
        except (RuntimeError, V2DError, subprocess.TimeoutExpired) as err:
            notes.append(f"{name}: failed: {err}")
            continue
        d = result["depth"]
        depth_rows.append(
            f"| {name} | {frames} | {d.keyframes} | {d.abs_rel:.3f} | {d.delta1:.2f} | {d.abs_rel_one_scale:.3f} | "
            f"{d.delta1_one_scale:.2f} | {d.scale_spread:.2f} | {100 * d.density:.0f}% |"
        )
        link = f"[plan and section](docs/{picture.name})" if picture is not None else "-"
        for what, label in (("cloud", "points.ply"), ("mesh", "mesh.ply vertices")):
            if what in result:
                c = result[what]
                cloud_rows.append(
                    f"| {name} | {label} | {c.points} | "
                    f"{100 * c.accuracy:.1f} | {100 * c.completeness:.0f}% | {100 * c.precision:.0f}% | {link} |"
                )
            if f"{what}_walls" in result:
                walls, size = result[f"{what}_walls"], result["room_size"]
                wall_rows.append(
                    f"| {name} | {label} | {walls.planes} | {walls.points} | "
                    f"{100 * walls.median:.1f} cm ({100 * walls.median / size:.1f}% of {size:.1f} m) | "
                    f"{100 * walls.p90:.1f} cm ({100 * walls.p90 / size:.1f}%) | "
                    f"{'met' if walls.p90 <= WALL_TARGET * size else '**missed**'} |"
                )
        notes.extend(result["notes"])
    text = (
        "### Map against the sensor\n\nKeyframe depth (final, after the backend) against the reference "
        "depth of the same frames:\n\n" + "\n".join(depth_rows) + "\n\nExported cloud and mesh against the "
        "reference depth of the keyframes' frames at their true poses:\n\n" + "\n".join(cloud_rows)
    )
    if len(wall_rows) > 2:
        text += "\n\nHow flat the walls are drawn (the synthetic room's walls are planes):\n\n" + "\n".join(wall_rows)
    return text + ("\n\n" + "\n".join(notes) if notes else "")
