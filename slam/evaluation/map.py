"""The map against a reference: keyframe depth against the sensor's (or the renderer's) depth of
the same frames, and a point cloud against reference points.

Keyframe depth. A monocular map has a scale of its own; what a map can be asked is that every
keyframe's depth is in the same scale. Per keyframe, its scale is the median ratio of the
reference depth to its depth over the pixels where both are known. The depth is scored twice:
with each keyframe scaled by its own scale (the shape of each depth map) and with every keyframe
scaled by one scale, the median of theirs (the map's consistency); the spread of the scales
(their standard deviation over their mean) says how far the keyframes disagree.

Point cloud. The cloud, in the estimate's world frame and units, is moved into the reference's
frame by a similarity (:func:`similarity_from_poses`: the scale from the keyframe depths, the
rotation that fits the camera orientations best and the translation that then fits the camera
centres: a camera that only turns has centres that fix no rotation), then refined by a rigid ICP
(:func:`rigid_icp`). Accuracy: the median distance from the cloud's points to the nearest
reference point; completeness: the share of reference points with a cloud point within a
distance. Where the reference is made of planes (the synthetic room's walls), how flat the cloud
draws them: the spread of each plane's cloud points about the plane fitted to them
(:func:`plane_flatness`), whatever the alignment leaves of their placement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from slam.errors import EvaluationError

#: ICP iterations and the change of the mean matched distance (as a share) that stops them
ICP_ITERATIONS = 30
ICP_TOLERANCE = 1e-4


@dataclass(frozen=True)
class KeyframeDepthMetrics:
    """Keyframe depth against reference depth (see the module docstring).

    - ``keyframes``: keyframes scored (those with pixels where both depths are known).
    - ``abs_rel`` and ``delta1``: mean over keyframes of each keyframe's mean |p - g| / g and
      share of pixels with max(p / g, g / p) < 1.25, each keyframe scaled by its own scale.
    - ``abs_rel_one_scale`` and ``delta1_one_scale``: the same with one scale for every keyframe.
    - ``scale``: that one scale (reference units per map unit).
    - ``scale_spread``: standard deviation of the keyframes' scales over their mean.
    - ``density``: share of the reference's valid pixels where the keyframe has a depth.
    """

    keyframes: int
    abs_rel: float
    delta1: float
    abs_rel_one_scale: float
    delta1_one_scale: float
    scale: float
    scale_spread: float
    density: float


def _scores(estimate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(abs rel, delta1) of matched positive depths."""
    ratio = np.maximum(estimate / reference, reference / estimate)
    return float(np.mean(np.abs(estimate - reference) / reference)), float(np.mean(ratio < 1.25))


def keyframe_depth_metrics(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> KeyframeDepthMetrics:
    """Score (estimate, reference) depth map pairs, one per keyframe, each (H, W) of the same
    shape (estimate in map units, reference in metres; 0 or non-finite: unknown). Raises
    EvaluationError when no pair has a pixel where both are known."""
    matched: list[tuple[np.ndarray, np.ndarray]] = []
    reference_pixels = estimated_pixels = 0
    for estimate, reference in pairs:
        if estimate.shape != reference.shape:
            raise EvaluationError(f"keyframe depth is {estimate.shape} but its reference is {reference.shape}")
        with np.errstate(invalid="ignore"):
            known_reference = np.isfinite(reference) & (reference > 0)
            both = known_reference & np.isfinite(estimate) & (estimate > 0)
        reference_pixels += int(known_reference.sum())
        estimated_pixels += int(both.sum())
        if both.any():
            matched.append((estimate[both].astype(np.float64), reference[both].astype(np.float64)))
    if not matched:
        raise EvaluationError("no keyframe has a pixel where both its depth and the reference are known")
    scales = np.array([np.median(reference / estimate) for estimate, reference in matched])
    one_scale = float(np.median(scales))
    own = np.array([_scores(e * s, r) for (e, r), s in zip(matched, scales)])
    shared = np.array([_scores(e * one_scale, r) for e, r in matched])
    return KeyframeDepthMetrics(
        keyframes=len(matched),
        abs_rel=float(own[:, 0].mean()),
        delta1=float(own[:, 1].mean()),
        abs_rel_one_scale=float(shared[:, 0].mean()),
        delta1_one_scale=float(shared[:, 1].mean()),
        scale=one_scale,
        scale_spread=float(scales.std() / scales.mean()),
        density=estimated_pixels / max(reference_pixels, 1),
    )


def backproject_depth(depth: np.ndarray, intrinsics: np.ndarray, pose_c2w: np.ndarray, stride: int = 1) -> np.ndarray:
    """(P, 3) world points of the known pixels (> 0, finite) of (H, W) ``depth``, every
    ``stride``-th pixel each way, with ``intrinsics`` (fx, fy, cx, cy) at its size and the
    (4, 4) camera-to-world ``pose_c2w``."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    v, u = np.mgrid[0 : depth.shape[0] : stride, 0 : depth.shape[1] : stride]
    z = depth[::stride, ::stride].astype(np.float64)
    with np.errstate(invalid="ignore"):
        known = np.isfinite(z) & (z > 0)
    z, u, v = z[known], u[known], v[known]
    camera = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=1)
    return camera @ pose_c2w[:3, :3].T + pose_c2w[:3, 3]


def similarity_with_scale(source: np.ndarray, target: np.ndarray, scale: float) -> np.ndarray:
    """The (4, 4) similarity ``x -> scale R x + t`` that best maps the (N, 3) ``source`` points
    onto the ``target`` points (least squares, N >= 3, Kabsch with the scale given)."""
    if len(source) < 3 or source.shape != target.shape:
        raise EvaluationError(
            f"need at least 3 matched points of the same shape, got {source.shape} and {target.shape}"
        )
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    return _similarity((target - target_mean).T @ (source - source_mean), source_mean, target_mean, scale)


def similarity_from_poses(source_c2w: np.ndarray, target_c2w: np.ndarray, scale: float) -> np.ndarray:
    """The (4, 4) similarity ``x -> scale R x + t`` from the ``source`` world frame to the
    ``target`` one, given (N, 4, 4) camera-to-world poses of the same N cameras in each: R is
    the rotation closest to the mean of the cameras' ``R_target R_source^T`` (chordal mean), t
    the least-squares fit of the camera centres with that rotation and ``scale``."""
    if len(source_c2w) == 0 or source_c2w.shape != target_c2w.shape:
        raise EvaluationError(f"need matched camera poses of one shape, got {source_c2w.shape} and {target_c2w.shape}")
    mean = np.einsum("nij,nkj->ik", target_c2w[:, :3, :3], source_c2w[:, :3, :3])
    return _similarity(mean, source_c2w[:, :3, 3].mean(axis=0), target_c2w[:, :3, 3].mean(axis=0), scale)


def _similarity(
    correlation: np.ndarray, source_centre: np.ndarray, target_centre: np.ndarray, scale: float
) -> np.ndarray:
    """The (4, 4) similarity ``x -> scale R x + t``: R the rotation nearest the (3, 3)
    ``correlation`` (target against source), t the one that maps ``source_centre`` onto
    ``target_centre``."""
    u, _, vt = np.linalg.svd(correlation)
    rotation = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    transform = np.eye(4)
    transform[:3, :3] = scale * rotation
    transform[:3, 3] = target_centre - scale * rotation @ source_centre
    return transform


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(P, 3) ``points`` moved by the (4, 4) ``transform``."""
    return points @ transform[:3, :3].T + transform[:3, 3]


def rigid_icp(points: np.ndarray, reference: np.ndarray, max_distance: float) -> np.ndarray:
    """The (4, 4) rigid transform that ICP (point to point, matches within ``max_distance``)
    finds to move the (P, 3) ``points`` onto the (Q, 3) ``reference``, from the identity;
    the identity when fewer than 3 points match."""
    tree = cKDTree(reference)
    total = np.eye(4)
    moved = points
    previous = np.inf
    for _ in range(ICP_ITERATIONS):
        distances, nearest = tree.query(moved, distance_upper_bound=max_distance)
        matched = np.isfinite(distances)
        if matched.sum() < 3:
            break
        step = similarity_with_scale(moved[matched], reference[nearest[matched]], 1.0)
        total = step @ total
        moved = transform_points(step, moved)
        mean = float(distances[matched].mean())
        if previous - mean < ICP_TOLERANCE * previous:  # never on the first pass (previous infinite)
            break
        previous = mean
    return total


@dataclass(frozen=True)
class CloudMetrics:
    """A point cloud against reference points (both in the reference's units, aligned).

    - ``accuracy``: median distance from the cloud's points to the nearest reference point.
    - ``completeness``: share of reference points with a cloud point within ``within``.
    - ``precision``: share of the cloud's points within ``within`` of a reference point.
    """

    points: int
    reference_points: int
    accuracy: float
    completeness: float
    precision: float
    within: float


def cloud_metrics(cloud: np.ndarray, reference: np.ndarray, within: float) -> CloudMetrics:
    """Accuracy, completeness and precision of the (P, 3) ``cloud`` against the (Q, 3)
    ``reference`` (see :class:`CloudMetrics`). Raises EvaluationError for an empty one."""
    if len(cloud) == 0 or len(reference) == 0:
        raise EvaluationError(f"cannot compare a cloud of {len(cloud)} points with {len(reference)} reference points")
    to_reference, _ = cKDTree(reference).query(cloud)
    to_cloud, _ = cKDTree(cloud).query(reference, distance_upper_bound=within)
    return CloudMetrics(
        points=len(cloud),
        reference_points=len(reference),
        accuracy=float(np.median(to_reference)),
        completeness=float(np.mean(np.isfinite(to_cloud))),
        precision=float(np.mean(to_reference <= within)),
        within=within,
    )


@dataclass(frozen=True)
class PlaneFlatness:
    """How flat the cloud is where the reference is a plane (a wall), in the reference's units.

    - ``planes``: measured planes that own at least :data:`MIN_PLANE_POINTS` cloud points.
    - ``points``: cloud points owned by them (each by one plane at most).
    - ``median``, ``p90``: median and 90th percentile over those points of the distance from
      the plane fitted (least squares, its normal the fit's direction nearest the reference
      plane's) to each plane's own cloud points: the thickness of the walls as the cloud draws
      them, whatever their placement. A lower bound: a point drawn so far off its wall that
      another surface is nearer belongs to that one.
    """

    planes: int
    points: int
    median: float
    p90: float


#: cloud points a reference plane needs for a plane to be fitted to them
MIN_PLANE_POINTS = 100


def plane_flatness(
    cloud: np.ndarray,
    reference: np.ndarray,
    planes: Sequence[tuple[np.ndarray, float]],
    on_plane: float,
    other_planes: Sequence[tuple[np.ndarray, float]] = (),
) -> PlaneFlatness:
    """:class:`PlaneFlatness` of the (P, 3) ``cloud`` (aligned with the (Q, 3) ``reference``)
    on the reference's ``planes``, each ``(unit normal (3,), offset)`` for the points x with
    ``normal . x = offset``. A reference point lies on the plane of ``planes`` and
    ``other_planes`` (planes met but not measured: a room's floor and ceiling) nearest to it,
    when within ``on_plane`` of it; a cloud point belongs to the plane its nearest reference
    point lies on. Raises EvaluationError for an empty cloud or reference, or when no plane owns
    :data:`MIN_PLANE_POINTS` cloud points."""
    if len(cloud) == 0 or len(reference) == 0:
        raise EvaluationError(f"cannot measure planes with {len(cloud)} cloud and {len(reference)} reference points")
    every = [*planes, *other_planes]
    off = np.stack([np.abs(reference @ normal - offset) for normal, offset in every])  # (planes, Q)
    owner = np.where(off.min(axis=0) < on_plane, off.argmin(axis=0), -1)  # -1: on no plane
    _, nearest = cKDTree(reference).query(cloud)
    cloud_owner = owner[nearest]
    residuals = []
    for index, (normal, _) in enumerate(planes):
        owned = cloud[cloud_owner == index]
        if len(owned) < MIN_PLANE_POINTS:
            continue
        centred = owned - owned.mean(axis=0)
        directions = np.linalg.svd(centred, full_matrices=False)[2]  # rows: unit directions
        fitted_normal = directions[np.argmax(np.abs(directions @ normal))]
        residuals.append(np.abs(centred @ fitted_normal))
    if not residuals:
        raise EvaluationError(f"no plane owns {MIN_PLANE_POINTS} of the cloud's {len(cloud)} points")
    distances = np.concatenate(residuals)
    return PlaneFlatness(
        planes=len(residuals),
        points=len(distances),
        median=float(np.median(distances)),
        p90=float(np.percentile(distances, 90)),
    )
