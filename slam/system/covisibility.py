"""Covisibility in the keyframe graph: which older keyframes see what a keyframe sees, from the
reprojection of its depth. The backend joins such keyframes to its window (held fixed), so that a
camera that lingers or returns is optimised against the map it built before, not only against
its newest keyframes.

Poses are world-to-camera SE3 (``G``); depths are in the map's units.
"""

from __future__ import annotations

import torch

from networks.flow_geometry import resize_intrinsics
from slam.geometry.lie import SE3
from slam.geometry.projection import MIN_DEPTH, backproject, project
from slam.geometry.resize import resize_depth
from slam.system.map import Keyframe
from slam.system.places import camera_centre, camera_centres
from slam.system.tracker import induced_flow

#: (h, w) of the depth grid reprojected to measure overlaps
OVERLAP_GRID = (24, 32)

#: keyframes nearest in position whose overlap is measured (the others are not considered)
NEAREST = 16


def _grid_points(
    depth: torch.Tensor, intrinsics: torch.Tensor, image_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A keyframe's ``depth`` (H', W', any resolution) on the :data:`OVERLAP_GRID` (h, w):
    (h, w, 3) points in its camera, the (h, w) mask of those with depth, and the grid's (4,)
    intrinsics (``intrinsics`` (4,) at the processing size ``image_size`` (H, W))."""
    small = resize_depth(depth.float(), OVERLAP_GRID)
    grid_intrinsics = resize_intrinsics(intrinsics, image_size, OVERLAP_GRID)
    return backproject(small[None], grid_intrinsics[None])[0], small > 0, grid_intrinsics


def overlaps(
    depth: torch.Tensor, pose_w2c: SE3, others_w2c: SE3, intrinsics: torch.Tensor, image_size: tuple[int, int]
) -> torch.Tensor:
    """(K,) share of the pixels with depth of a keyframe (``depth`` (H', W') any resolution,
    ``pose_w2c`` SE3 ()) that land in front of and inside each of K other keyframes (``others_w2c``
    SE3 (K,)); ``intrinsics`` (4,) at the processing size ``image_size`` (H, W)."""
    points, known, grid_intrinsics = _grid_points(depth, intrinsics, image_size)
    if not bool(known.any()):
        return torch.zeros(others_w2c.data.shape[0], device=depth.device)
    world = pose_w2c.inv().act(points[known])  # (P, 3)
    count = others_w2c.data.shape[0]
    in_others = SE3(others_w2c.data[:, None].expand(-1, world.shape[0], -1)).act(world[None].expand(count, -1, -1))
    coords = project(in_others, grid_intrinsics, extra_dims=2)
    height, width = OVERLAP_GRID
    inside = (
        (in_others[..., 2] > MIN_DEPTH)
        & (coords[..., 0] >= -0.5)
        & (coords[..., 0] <= width - 0.5)
        & (coords[..., 1] >= -0.5)
        & (coords[..., 1] <= height - 0.5)
    )
    return inside.float().mean(dim=1)


def reprojection_flow(
    depth: torch.Tensor, new_from_old: SE3, intrinsics: torch.Tensor, image_size: tuple[int, int]
) -> float:
    """Median of the flow, in pixels at the processing size ``image_size`` (H, W), that moving a
    keyframe's pixels with depth (``depth`` (H', W') any resolution, the keyframe's units) by
    ``new_from_old`` (SE3 (), ``G_new G_old^-1``) into another camera induces: the flow a
    tracker must find to register the two. A pixel that lands behind the other camera counts as
    infinitely far; inf when none has depth. ``intrinsics`` (4,) at ``image_size``."""
    points, known, grid_intrinsics = _grid_points(depth, intrinsics, image_size)
    if not bool(known.any()):
        return float("inf")
    rows, cols = torch.nonzero(known, as_tuple=True)
    moved = new_from_old.act(points[known])
    coords = project(moved, grid_intrinsics, extra_dims=1)
    flow = (coords - torch.stack([cols, rows], dim=-1).to(coords)).norm(dim=-1)
    flow = torch.where(moved[:, 2] > MIN_DEPTH, flow, torch.full_like(flow, float("inf")))
    return float(flow.median()) * image_size[1] / OVERLAP_GRID[1]


def covisible_keyframes(
    keyframe: Keyframe,
    older: list[Keyframe],
    count: int,
    min_overlap: float,
    intrinsics: torch.Tensor,
    image_size: tuple[int, int],
) -> list[Keyframe]:
    """Up to ``count`` of the ``older`` keyframes (those that can be matched against,
    :attr:`Keyframe.matchable`) that see at least ``min_overlap`` of what ``keyframe`` sees
    (:func:`overlaps`), most overlapping first; only the :data:`NEAREST` nearest in position are
    measured. Empty when ``keyframe`` holds no depth."""
    matching = keyframe.matching()
    usable = [kf for kf in older if kf.matchable]
    if count <= 0 or matching is None or not usable:
        return []
    distances = (camera_centres([kf.pose_w2c for kf in usable]) - camera_centre(keyframe.pose_w2c)).norm(dim=-1)
    nearest = [usable[k] for k in torch.argsort(distances)[:NEAREST].tolist()]
    shares = overlaps(
        matching[1], keyframe.pose_w2c, SE3.stack([kf.pose_w2c for kf in nearest]), intrinsics, image_size
    )
    order = torch.argsort(shares, descending=True).tolist()
    return [nearest[k] for k in order if float(shares[k]) >= min_overlap][:count]


def reusable_keyframes(
    frame_w2c: SE3,
    keyframes: list[Keyframe],
    max_flow: float,
    max_parallax: float,
    min_overlap: float,
    intrinsics: torch.Tensor,
    image_size: tuple[int, int],
) -> list[Keyframe]:
    """Of the ``keyframes`` (those that can be matched against), the ones a frame at
    ``frame_w2c`` (SE3 ()) could be tracked against at once: at least ``min_overlap`` of their
    pixels with depth land inside the frame (:func:`overlaps`), and the flow their current
    relative pose induces on those pixels stays under ``max_flow`` and its translational part
    under ``max_parallax`` (mean pixels at the processing size ``image_size`` (H, W), as
    :func:`slam.system.tracker.induced_flow` measures them); least flow first. Only the
    :data:`NEAREST` nearest in position are measured. ``intrinsics`` (4,) at ``image_size``."""
    usable = [kf for kf in keyframes if kf.matchable]
    if not usable:
        return []
    distances = (camera_centres([kf.pose_w2c for kf in usable]) - camera_centre(frame_w2c)).norm(dim=-1)
    found: list[tuple[float, Keyframe]] = []
    grid_intrinsics = resize_intrinsics(intrinsics, image_size, OVERLAP_GRID)
    for k in torch.argsort(distances)[:NEAREST].tolist():
        keyframe = usable[k]
        matching = keyframe.matching()
        if matching is None:  # released meanwhile
            continue
        depth, pose_w2c = matching[1], keyframe.pose_w2c
        if float(overlaps(depth, pose_w2c, SE3.stack([frame_w2c]), intrinsics, image_size)[0]) < min_overlap:
            continue
        small = resize_depth(depth.float(), OVERLAP_GRID)
        flow, parallax = induced_flow(small, frame_w2c * pose_w2c.inv(), grid_intrinsics)
        pixels = image_size[1] / OVERLAP_GRID[1]
        if flow * pixels <= max_flow and parallax * pixels <= max_parallax:
            found.append((flow, keyframe))
    return [keyframe for _, keyframe in sorted(found, key=lambda item: item[0])]
