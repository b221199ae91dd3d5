"""Global bundle adjustment at the end of a run: every keyframe of the map, not only the backend's
window, refined together by the dense bundle adjustment (:class:`slam.system.bundle.BundleAdjuster`)
on the keyframe graph's edges, as DROID-SLAM's final global BA does.

Each keyframe takes part with what it keeps for matching for the whole run (:meth:`Keyframe.matching`:
its motion features and a coarse depth), so keyframes whose pixels were released join too. Edges,
both ways:

- temporal: each keyframe with the next ``span`` keyframes of its map segment (no edge crosses a
  cold start: the relative pose there is a guess);
- covisibility: each keyframe with up to ``config.covisible`` older keyframes (older than its
  temporal neighbours) that see at least ``config.covisible_overlap`` of what it sees, when the
  flow their current relative pose predicts is within ``config.loop_max_flow`` pixels (the range
  the motion module registers): a camera that returned, however far apart in time;
- loops: every loop the loop closer accepted.

The oldest keyframe of each connected part of the graph is held (the gauge). The solve refines
poses and per-pixel depths on a grid ``config.final_pool`` times coarser than the motion module's;
the map takes the new poses and, per keyframe, the median change of its depth as a scale (its
depth map, place depth and the frames tracked against it follow, as after a loop correction:
:meth:`slam.system.map.MapState.apply_similarities`), so that released keyframes, of which only
that scale can change, and held ones are treated alike. Fused keyframes that moved are fused again
when the run ends (:meth:`slam.system.archive.KeyframeArchive.rebuild`).

Poses are world-to-camera SE3 (``G``); depths in the map's units.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch

from slam.config.schema import BackendConfig
from slam.geometry.lie import SE3
from slam.geometry.resize import resize_depth
from slam.system.bundle import BundleAdjuster
from slam.system.covisibility import covisible_keyframes, reprojection_flow
from slam.system.loop_closure import LoopEdge
from slam.system.map import Keyframe, MapState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GlobalBundleReport:
    """What one global bundle adjustment did: ``keyframes`` refined, ``held`` (one per connected
    part of the graph), ``edges`` by kind (each direction counted), wall ``seconds``, and the
    median and largest change of a keyframe's camera centre (map units) and the range of the
    scales applied (new units = old units / scale)."""

    keyframes: int
    held: int
    edges: dict[str, int]
    seconds: float
    median_shift: float
    largest_shift: float
    scales: tuple[float, float]

    def as_stats(self) -> dict:
        return {
            "keyframes": self.keyframes,
            "held": self.held,
            "edges": self.edges,
            "seconds": round(self.seconds, 3),
            "median_shift": round(self.median_shift, 5),
            "largest_shift": round(self.largest_shift, 5),
            "scales": [round(s, 4) for s in self.scales],
        }


def graph_edges(
    keyframes: list[Keyframe],
    loops: list[LoopEdge],
    config: BackendConfig,
    span: int,
    intrinsics: torch.Tensor,
    image_size: tuple[int, int],
) -> dict[str, list[tuple[int, int]]]:
    """The graph's edges between ``keyframes`` (in id order, all matchable) as index pairs
    ``(i, j)``, ``i < j``, one per pair, by kind: "temporal", "covisible", "loop" (see the module
    docstring; a pair is counted under the first kind that finds it). ``intrinsics`` (4,) at the
    processing size ``image_size`` (H, W)."""
    index = {kf.id: k for k, kf in enumerate(keyframes)}
    segment = [0] * len(keyframes)
    for k in range(1, len(keyframes)):
        segment[k] = segment[k - 1] + (keyframes[k].anchor_id is None)
    found: set[tuple[int, int]] = set()
    edges: dict[str, list[tuple[int, int]]] = {"temporal": [], "covisible": [], "loop": []}

    def add(kind: str, a: int, b: int) -> None:
        pair = (min(a, b), max(a, b))
        if a != b and pair not in found:
            found.add(pair)
            edges[kind].append(pair)

    for k in range(len(keyframes)):
        for m in range(k + 1, min(k + span + 1, len(keyframes))):
            if segment[m] == segment[k]:
                add("temporal", k, m)
    for k, keyframe in enumerate(keyframes):
        matching = keyframe.matching()
        older = keyframes[: max(0, k - span)]
        if matching is None or not older or config.covisible == 0:
            continue
        for other in covisible_keyframes(
            keyframe, older, config.covisible, config.covisible_overlap, intrinsics, image_size
        ):
            flow = reprojection_flow(matching[1], keyframe.pose_w2c * other.pose_w2c.inv(), intrinsics, image_size)
            if flow <= config.loop_max_flow:
                add("covisible", k, index[other.id])
    for loop in loops:
        if loop.new_id in index and loop.old_id in index:
            add("loop", index[loop.new_id], index[loop.old_id])
    return edges


def _held(count: int, pairs: list[tuple[int, int]]) -> list[int]:
    """The lowest index of each connected part of a graph of ``count`` nodes with edges ``pairs``."""
    parent = list(range(count))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in pairs:
        ra, rb = root(a), root(b)
        parent[max(ra, rb)] = min(ra, rb)
    return sorted({root(k) for k in range(count)})


class GlobalBundleAdjuster:
    """Refines every keyframe of a map together (see the module docstring); ``bundle`` holds the
    solver's settings (its pool and prior), ``config`` the graph's (covisibility and
    ``final_span``, ``final_steps``)."""

    def __init__(
        self,
        bundle: BundleAdjuster,
        config: BackendConfig,
        intrinsics: torch.Tensor,
        image_size: tuple[int, int],
    ):
        self.bundle = bundle
        self.config = config
        self.intrinsics = intrinsics  # (4,) at the processing resolution
        self.image_size = image_size  # (H, W)

    def run(self, map_state: MapState, loops: list[LoopEdge]) -> GlobalBundleReport | None:
        """Refine the keyframes of ``map_state`` on their graph (with the accepted ``loops``) and
        write the result to it; None when fewer than 3 keyframes can be matched or no edge joins
        them. Call it on a map nothing else moves meanwhile: the live one once the backend has
        stopped, or a detached copy (:meth:`MapState.detached_copy`)."""
        start = time.perf_counter()
        keyframes = [kf for kf in map_state.keyframe_list() if kf.matchable]
        if len(keyframes) < 3:
            return None
        edges = graph_edges(keyframes, loops, self.config, self.config.final_span, self.intrinsics, self.image_size)
        pairs = [pair for found in edges.values() for pair in found]
        if not pairs:
            return None
        held = _held(len(keyframes), pairs)
        free = sorted(set(range(len(keyframes))) - set(held))
        order = held + free
        position = {k: p for p, k in enumerate(order)}
        ordered = [keyframes[k] for k in order]
        matching = [m for kf in ordered if (m := kf.matching()) is not None]
        assert len(matching) == len(ordered)  # matchable keyframes only: a place record outlives the features
        features = torch.stack([m[0] for m in matching])
        coarse = (features.shape[-2] // 2, features.shape[-1] // 2)  # the place records' depth grid
        depths = torch.stack([resize_depth(m[1], coarse) for m in matching]).to(features.dtype)
        poses = SE3.stack([kf.pose_w2c for kf in ordered])
        ii = torch.tensor([position[a] for a, b in pairs] + [position[b] for a, b in pairs], dtype=torch.long)
        jj = torch.tensor([position[b] for a, b in pairs] + [position[a] for a, b in pairs], dtype=torch.long)
        new_poses, new_depths, _ = self.bundle.refine(
            features, depths, poses, ii, jj, num_fixed=len(held), flow_steps=self.config.final_steps
        )
        known = depths > 0
        scales = [
            float((depths[k][known[k]] / new_depths[k][known[k]]).median()) if bool(known[k].any()) else 1.0
            for k in range(len(ordered))
        ]
        if not (bool(torch.isfinite(new_poses.data).all()) and all(math.isfinite(s) and s > 0 for s in scales)):
            log.warning("the global bundle adjustment gave NaN or infinite poses or scales: the map keeps its own")
            return None
        shifts = (new_poses.inv().data[:, :3] - poses.inv().data[:, :3]).norm(dim=-1)
        map_state.apply_similarities({kf.id: (SE3(new_poses.data[k]), scales[k]) for k, kf in enumerate(ordered)})
        report = GlobalBundleReport(
            keyframes=len(ordered),
            held=len(held),
            edges={kind: 2 * len(found) for kind, found in edges.items()},
            seconds=time.perf_counter() - start,
            median_shift=float(shifts.median()),
            largest_shift=float(shifts.max()),
            scales=(min(scales), max(scales)),
        )
        log.info(
            "global bundle adjustment: %d keyframes, %d edges, %.1f s, camera centres moved %.4f (median) to %.4f",
            report.keyframes,
            len(ii),
            report.seconds,
            report.median_shift,
            report.largest_shift,
        )
        return report
