"""Correspondences of keyframe pairs kept from one backend pass to the next.

The motion module's targets say where each pixel of keyframe i lands in keyframe j: a fact about
the two images, not about the poses. What a recomputation would add is precision: the module
measures a residual flow around the current reprojection, which is more exact when the
reprojection is already close. So a pair whose reprojection has hardly moved since its targets
were computed would get the same targets again: :class:`FlowCache` reuses them and recomputes
only the pairs that moved, and the new ones. The residual of a reused pair is taken against the
current reprojection.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from networks.flow_geometry import edge_reprojection, feature_intrinsics
from networks.interfaces import FlowEstimate, MotionModule
from slam.geometry.lie import SE3


class _Pair(NamedTuple):
    """A keyframe pair's correspondences, each (h, w, ...) on keyframe i's grid."""

    targets: torch.Tensor  # (h, w, 2) pixels in keyframe j
    weights: torch.Tensor  # (h, w, 2)
    coords: torch.Tensor  # (h, w, 2) the reprojection they were computed at
    valid: torch.Tensor  # (h, w) bool, where that reprojection was valid


class FlowCache:
    """Per keyframe pair (by keyframe id): targets, weights, and the reprojection they were
    computed at. ``tolerance``: the mean move (pixels of the motion module's grid, over pixels
    valid then and now) of a pair's reprojection below which its targets are reused. Entries
    of keyframes that leave the set asked for are dropped. Not thread-safe: one caller (the
    backend's thread)."""

    def __init__(self, motion_module: MotionModule, tolerance: float):
        self.motion_module = motion_module
        self.tolerance = tolerance
        self._entries: dict[tuple[int, int], _Pair] = {}
        self.reused = 0
        self.computed = 0

    def flow(
        self,
        ids: list[int],
        features: torch.Tensor,
        depths: torch.Tensor,
        poses: SE3,
        intrinsics: torch.Tensor,
        ii: torch.Tensor,
        jj: torch.Tensor,
        image_size: tuple[int, int],
    ) -> FlowEstimate:
        """The motion module's :meth:`flow` for one batch (B = 1) of keyframes with ``ids`` (N,)
        (arguments as there: ``features`` (1, N, C, h, w), ``depths`` (1, N, h, w), ``poses``
        SE3 (1, N) world-to-camera, ``intrinsics`` (1, 4) at ``image_size``), reusing the
        targets of the pairs that have not moved (see the class docstring)."""
        module = self.motion_module
        K = feature_intrinsics(intrinsics, image_size, module.config.input_size, module.stride)  # type: ignore[attr-defined]  # every MotionModule implementation has a config
        coords, valid = edge_reprojection(depths, poses, K, ii, jj)
        keys = [(ids[i], ids[j]) for i, j in zip(ii.tolist(), jj.tolist())]
        stale = [e for e, key in enumerate(keys) if not self._still_valid(key, coords[0, e], valid[0, e])]
        if stale:
            chosen = torch.tensor(stale, device=ii.device)
            estimate = module.flow(features, depths, poses, intrinsics, ii[chosen], jj[chosen], image_size)
            for k, e in enumerate(stale):  # copies: a view would keep the whole batch alive
                self._entries[keys[e]] = _Pair(
                    estimate.targets[0, k].clone(),
                    estimate.weights[0, k].clone(),
                    coords[0, e].clone(),
                    valid[0, e].clone(),
                )
        self.computed += len(stale)
        self.reused += len(keys) - len(stale)
        live = set(ids)
        for key in [key for key in self._entries if key[0] not in live or key[1] not in live]:
            del self._entries[key]
        targets = torch.stack([self._entries[key].targets for key in keys])[None]
        weights = torch.stack([self._entries[key].weights for key in keys])[None]
        return FlowEstimate(targets=targets, weights=weights, residual=targets - coords, intrinsics=K)

    def _still_valid(self, key: tuple[int, int], coords: torch.Tensor, valid: torch.Tensor) -> bool:
        """Whether the pair ``key`` has targets whose reprojection (h, w, 2) moved less than the
        tolerance since (False: none, or no pixel valid both then and now)."""
        entry = self._entries.get(key)
        if entry is None:
            return False
        both = valid & entry.valid
        return bool(both.any()) and float((coords - entry.coords)[both].norm(dim=-1).mean()) < self.tolerance
