"""`v2d demo`: SLAM on the built-in synthetic scene (no download), outputs under outputs/demo, then
pictures of the result in the same folder and one line on how good it was: the estimated
trajectory over the ground truth (``trajectory.png``: top view and each axis against time, after
a Sim(3) alignment), a rendered view of the fused cloud with the trajectory and the ground truth
(``map.png``, the viewer's software rendering), the same of the mesh's vertices shaded
(``mesh.png``) and a strip of keyframes over their depth (``keyframes.png``). The run also
writes the keyframes' depth maps (``depth/``) and the posed views for splatting (``views/``),
which the strip is drawn from."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from apps.run import add_run_arguments, run
from slam.mapping.point_cloud import PointCloud

#: size (width, height) of the rendered map picture
MAP_PICTURE = (960, 720)

#: keyframes in the strip (evenly spaced over the run), and the width of each in pixels
STRIP_KEYFRAMES = 6
STRIP_WIDTH = 240


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run SLAM on the built-in synthetic scene (no download needed)",
        description="`v2d run synthetic` with the demo's defaults: a hand-held room sequence, outputs in "
        "outputs/demo (replaced on each run) with the keyframes' depth and posed views, then pictures of "
        "the result there: trajectory.png, map.png, mesh.png and keyframes.png.",
    )
    add_run_arguments(parser, default_source="synthetic")
    # replaces its own run; the keyframes' depth maps and images feed the strip
    parser.set_defaults(func=demo, out="outputs/demo", max_frames=90, overwrite=True, save_depth=True, save_views=True)


def demo(args: argparse.Namespace) -> int:
    """`v2d run` (see :func:`apps.run.run`), then the pictures and the line on accuracy (a
    picture that cannot be drawn is reported in one line; the run's outputs stay)."""
    from slam.errors import V2DError

    status = run(args)
    try:
        line, pictures = demo_pictures(Path(args.out))
    except V2DError as err:
        print(f"no pictures: {err}")
        return status
    if not args.quiet:
        print(line)
        print("pictures: " + ", ".join(str(path) for path in pictures))
    return status


def demo_pictures(out: Path) -> tuple[str, list[Path]]:
    """Draw ``trajectory.png`` (with ground truth), ``map.png``, ``mesh.png`` (with a mesh) and
    ``keyframes.png`` (where the run saved its keyframes' depth and views) into the run folder
    ``out`` (which holds a run's trajectory.txt, points.ply, stats.json and, for a source with
    ground truth, groundtruth.txt); returns one line (ATE, frames per second, points) and the
    pictures' paths. Raises a V2DError (TrajectoryError: too few poses to align; ExportError: a
    picture that cannot be written) with the reason."""
    import json

    from slam.evaluation.trajectory import evaluate_trajectory, plot_trajectories
    from slam.io.trajectory import read_trajectory
    from slam.mapping.export import read_ply_vertices
    from viewer.scene import SceneState
    from viewer.software_render import default_view, render

    stats = json.loads((out / "stats.json").read_text())
    estimate = read_trajectory(out / "trajectory.txt")
    line = (
        f"{stats['frames_processed']} frames, {stats['end_to_end_fps']} frames/s end to end, {stats['points']} points"
    )
    pictures = []
    state = SceneState.empty(status="done")
    if (out / "groundtruth.txt").is_file():
        truth = read_trajectory(out / "groundtruth.txt")
        metrics = evaluate_trajectory(truth, estimate, align="sim3")
        length = truth.path_length()
        share = f" ({100 * metrics.ate_rmse / length:.1f}% of the {length:.1f} m path)" if length > 0 else ""
        line = f"ATE {metrics.ate_rmse:.3f} m{share} over {line}"
        pictures.append(out / "trajectory.png")
        plot_trajectories(metrics.aligned, pictures[-1], title=f"v2d demo: ATE {metrics.ate_rmse:.3f} m{share}")
        # the ground truth in the map's frame: the inverse of the similarity that aligned the estimate
        to_truth = metrics.aligned.transform
        state.ground_truth = (truth.positions - to_truth[:3, 3]) @ np.linalg.inv(to_truth[:3, :3]).T

    positions, colours = read_ply_vertices(out / "points.ply")
    colours = colours if colours is not None else np.full(positions.shape, 200, np.uint8)
    state.trajectory = estimate.positions
    state.current_pose_c2w = estimate.poses[-1]
    state.cloud = PointCloud(positions, colours)
    depths = np.linalg.norm(positions - estimate.positions.mean(axis=0), axis=1)
    state.scale = float(np.median(depths)) if len(depths) else 1.0
    pictures.append(_write_picture(out / "map.png", render(state, *MAP_PICTURE)))
    if (out / "mesh.ply").is_file():
        surface = shaded_mesh_vertices(out / "mesh.ply", *default_view(state))
        if surface is not None:
            state.cloud = surface
            pictures.append(_write_picture(out / "mesh.png", render(state, *MAP_PICTURE, point_size=3)))
    strip = keyframe_strip(out)
    if strip is not None:
        pictures.append(_write_picture(out / "keyframes.png", strip))
    return line, pictures


def _write_picture(path: Path, picture: np.ndarray) -> Path:
    """Write the (H, W, 3) RGB ``picture`` to ``path``; ExportError when it cannot be."""
    import cv2

    from slam.errors import ExportError

    if not cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
        raise ExportError(f"cannot write {path}")
    return path


def shaded_mesh_vertices(path: Path, eye: np.ndarray, target: np.ndarray) -> PointCloud | None:
    """The vertices of the mesh at ``path`` as a cloud whose colours are shaded by a light at the
    viewer's ``eye`` looking at ``target`` (its vertex colours, or grey, times 0.3 + 0.7 |n . l|):
    drawn as points, the surfaces read as shapes. None for a mesh without triangles."""
    import open3d as o3d

    mesh = o3d.io.read_triangle_mesh(str(path))
    if not mesh.has_triangles():
        return None
    mesh.compute_vertex_normals()
    normals = np.asarray(mesh.vertex_normals)
    light = (eye - target) / max(float(np.linalg.norm(eye - target)), 1e-12)
    base = np.asarray(mesh.vertex_colors) * 255.0 if mesh.has_vertex_colors() else np.full(normals.shape, 200.0)
    shade = 0.3 + 0.7 * np.abs(normals @ light)
    return PointCloud(np.asarray(mesh.vertices), np.clip(base * shade[:, None], 0, 255).astype(np.uint8))


def keyframe_strip(out: Path) -> np.ndarray | None:
    """(H, W, 3) RGB uint8: up to :data:`STRIP_KEYFRAMES` keyframes evenly spaced over the run, each
    its image (``views/images/``) over its depth (``depth/``, near red, far blue, one colour
    scale for all), labelled with its frame number; None where the run saved neither."""
    import cv2

    from slam.errors import ExportError
    from slam.io.depth_maps import read_depth
    from slam.mapping.posed_views import IMAGES, image_file
    from slam.system.run import DEPTH_FOLDER, VIEWS_FOLDER
    from viewer.depth_colors import colorize_depth

    images = out / VIEWS_FOLDER / IMAGES
    depth_files = {int(p.stem): p for p in (out / DEPTH_FOLDER).glob("*.npy")}
    indices = sorted(index for index in depth_files if (images / image_file(index)).is_file())
    if not indices:
        return None
    chosen = [
        indices[k] for k in np.linspace(0, len(indices) - 1, min(STRIP_KEYFRAMES, len(indices))).round().astype(int)
    ]
    depths = [read_depth(depth_files[index]) for index in chosen]
    valid = np.concatenate([d[np.isfinite(d) & (d > 0)] for d in depths])
    near, far = np.percentile(valid, [2, 98]) if len(valid) else (None, None)
    columns = []
    for index, depth in zip(chosen, depths):
        stored = cv2.imread(str(images / image_file(index)))
        if stored is None:
            raise ExportError(f"cannot read {images / image_file(index)} for the keyframe strip")
        image = cv2.cvtColor(stored, cv2.COLOR_BGR2RGB)
        height = round(STRIP_WIDTH * image.shape[0] / image.shape[1])
        image = cv2.resize(image, (STRIP_WIDTH, height), interpolation=cv2.INTER_AREA)
        coloured = cv2.resize(colorize_depth(depth, near, far), (STRIP_WIDTH, height), interpolation=cv2.INTER_NEAREST)
        cv2.putText(image, f"frame {index}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        columns.append(np.concatenate([image, coloured], axis=0))
    return np.concatenate(columns, axis=1)
