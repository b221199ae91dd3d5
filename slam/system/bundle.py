"""Dense bundle adjustment of keyframe poses and depths on the motion module's correspondences,
shared by the backend (its window) and the frontend (each new keyframe against the newest ones).

The solve runs on a grid ``pool`` times coarser than the motion module's features (block means
of its targets, :func:`slam.geometry.solver.pool_correspondences`), with a prior that holds every depth
near the one the refinement started from (:func:`slam.geometry.solver.bundle_adjustment_step`). The depth
change is handed back as a ratio, upsampled onto the full-resolution depth maps, so their detail
stays and only their geometry is corrected.

With each depth comes its view support: the share of what the solve knows of the pixel's depth
that the correspondences gave, ``I / (I + prior)`` with ``I`` the data term's information on its
relative depth (:func:`slam.geometry.solver.bundle_adjustment_step`) and ``prior`` the depth
prior's weight. It is near 0 where the depth is the prior's (no correspondence, a turn on the spot,
no parallax) and near 1 where several views with parallax pin it down: the depth's confidence.
Cells the depth maps have no depth for get none (the solve sees them at a made-up near depth).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from networks.interfaces import MotionModule
from slam.geometry.lie import SE3
from slam.geometry.projection import MIN_DEPTH
from slam.geometry.resize import resize_depth
from slam.geometry.solver import bundle_adjustment_step, pool_correspondences
from slam.system.flow_cache import FlowCache
from slam.system.map import CONFIDENT_DEPTH

#: the confidence of a depth that no view supports yet: above 0, which marks the pixels without
#: depth, so that a later adjustment that supports it can raise it; exact in float16, which
#: compacted keyframes keep their confidence in
UNSUPPORTED_DEPTH = 2.0**-14
#: edges whose correspondences are computed at once (a graph of many keyframes is taken in
#: parts, each pooled onto the solver's grid before the next: bounded memory)
EDGE_CHUNK = 64


def view_confidence(confidence: torch.Tensor, support: torch.Tensor, from_views: bool) -> torch.Tensor:
    """The (H, W) confidence of a depth that an adjustment gave the (H, W) view ``support``, from
    its ``confidence`` before: when ``from_views`` (the confidence is a support already), the
    higher of the two (the most any adjustment gave) where it is above 0, 0 elsewhere (no
    depth); otherwise (the depth module's) the support where the depth module was confident
    (:data:`slam.system.map.CONFIDENT_DEPTH`), 0 elsewhere. The support counts as at least
    :data:`UNSUPPORTED_DEPTH`, so that a depth no view supports yet stays a depth."""
    floored = support.clamp(min=UNSUPPORTED_DEPTH)
    if from_views:
        return torch.where(confidence > 0, torch.maximum(confidence, floored), torch.zeros_like(floored))
    return torch.where(confidence > CONFIDENT_DEPTH, floored, torch.zeros_like(floored))


class BundleAdjuster:
    """Refines poses and depths of a set of keyframes together (see the module docstring).

    ``prior``: weight of the depth prior (squared pixels per squared relative depth change);
    ``pool``: coarsening of the motion module's grid; ``iterations``: solver steps per flow
    computation; ``huber``: robust data term (pixels of the coarse grid, None: least squares);
    ``flow_cache``: where calls that name their keyframes get their correspondences (see
    :meth:`refine`; None: always from the motion module)."""

    def __init__(
        self,
        motion_module: MotionModule,
        intrinsics: torch.Tensor,
        image_size: tuple[int, int],
        prior: float,
        pool: int,
        iterations: int,
        huber: float | None = None,
        flow_cache: FlowCache | None = None,
    ):
        self.motion_module = motion_module
        self.flow_cache = flow_cache
        self.intrinsics = intrinsics  # (4,) at the processing resolution
        self.image_size = image_size  # (H, W)
        self.prior = prior
        self.pool = pool
        self.iterations = iterations
        self.huber = huber

    def refine(
        self,
        features: torch.Tensor,
        depths: torch.Tensor,
        poses: SE3,
        ii: torch.Tensor,
        jj: torch.Tensor,
        num_fixed: int,
        flow_steps: int,
        ids: list[int] | None = None,
    ) -> tuple[SE3, torch.Tensor, torch.Tensor]:
        """Refine N keyframes with motion ``features`` (N, C, h, w), (N, H, W) ``depths`` (map
        units, > 0 where known; any resolution, the processing one in the backend) and
        world-to-camera ``poses`` SE3 (N,), on the edges ``ii -> jj`` (E,), the first ``num_fixed``
        poses held. The correspondences are recomputed ``flow_steps`` times, through the flow
        cache when ``ids`` (N,) names the keyframes (keyframe ids) and there is one. Returns (SE3
        (N,) world-to-camera, (N, H, W) depths, (N, H, W) view support in [0, 1] of the last step
        (see the module docstring)); only frames that some edge leaves get new depths and a
        support above 0."""
        feature_size = (features.shape[-2], features.shape[-1])
        known_depths = resize_depth(depths[None], feature_size)
        feature_depths = known_depths.clamp(min=MIN_DEPTH)
        pooled_size = (feature_size[0] // self.pool, feature_size[1] // self.pool)
        start = resize_depth(feature_depths, pooled_size)
        known = resize_depth(known_depths, pooled_size) > 0
        estimate, current, poses = start, feature_depths, poses[None]
        information = torch.zeros_like(start)
        with torch.no_grad():
            for _ in range(flow_steps):
                targets, weights, intrinsics = self._correspondences(features, current, poses, ii, jj, ids)
                for _ in range(self.iterations):
                    poses, estimate, information = bundle_adjustment_step(
                        poses,
                        estimate,
                        intrinsics,
                        ii,
                        jj,
                        targets,
                        weights,
                        start,
                        self.prior,
                        num_fixed=num_fixed,
                        huber=self.huber,
                    )
                current = feature_depths * F.interpolate(
                    estimate / start, size=feature_size, mode="bilinear", align_corners=False
                )
            size = tuple(depths.shape[-2:])
            ratio = F.interpolate(estimate / start, size=size, mode="bilinear", align_corners=False)
            share = torch.where(known, information / (information + self.prior), torch.zeros_like(information))
            support = F.interpolate(share, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
        return poses[0], depths * ratio[0], support[0]

    def _correspondences(
        self,
        features: torch.Tensor,
        depths: torch.Tensor,
        poses: SE3,
        ii: torch.Tensor,
        jj: torch.Tensor,
        ids: list[int] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The motion module's correspondences on the edges ``ii -> jj`` (E,) for (N, C, h, w)
        ``features``, (1, N, h, w) ``depths`` and SE3 (1, N) ``poses``, pooled onto the solver's
        grid as they come, :data:`EDGE_CHUNK` edges at a time: (1, E, h', w', 2) targets and
        weights and (1, 4) intrinsics of that grid (see :meth:`refine` for ``ids``)."""
        pooled = []
        for start in range(0, ii.shape[0], EDGE_CHUNK):
            chunk_i, chunk_j = ii[start : start + EDGE_CHUNK], jj[start : start + EDGE_CHUNK]
            if self.flow_cache is not None and ids is not None:
                flow = self.flow_cache.flow(
                    ids, features[None], depths, poses, self.intrinsics[None], chunk_i, chunk_j, self.image_size
                )
            else:
                flow = self.motion_module.flow(
                    features[None], depths, poses, self.intrinsics[None], chunk_i, chunk_j, self.image_size
                )
            pooled.append(pool_correspondences(flow.targets, flow.weights, flow.intrinsics, self.pool))
        targets = torch.cat([p[0] for p in pooled], dim=1)
        weights = torch.cat([p[1] for p in pooled], dim=1)
        return targets, weights, pooled[0][2]
