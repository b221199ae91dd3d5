"""Loop closure: the backend recognises that its newest keyframe sees a place an old keyframe
saw, verifies it geometrically, and corrects the whole keyframe graph with a Sim(3) pose-graph
optimization, so that the drift accumulated around the loop (position, rotation and, in
monocular SLAM, scale) is spread over the keyframes that made it.

Detection. Candidates are keyframes at least ``config.loop_gap`` keyframes older than the
window, and those of an earlier map segment (before a cold start) at any gap: by proximity (the
old keyframe that sees most of what the newest one sees at their current poses,
:func:`slam.system.covisibility.covisible_keyframes`: small drift; kept only when the flow its
current relative pose predicts is within ``config.loop_max_flow``, the range the tracker
registers, as DPV-SLAM's proximity loops do), and, when none of those passes, by appearance (the
best-scoring thumbnail, :mod:`slam.system.places`, when it scores at least as well as the
window's other keyframes do: drift that has moved the estimate away from the place). An old
keyframe that failed against a window keyframe is not tried again until the window has moved on.

Verification. The newest keyframe is tracked against the candidate (the motion module's
correspondences and the Gauss-Newton solve with the old keyframe's depth, from the current
relative pose for a proximity candidate, from the thumbnails' turn for an appearance one) and
accepted only when the flow is consistent and converged (as relocalization,
:mod:`slam.system.relocalizer`) and the two keyframes' depths agree on the scale between them
over enough pixels (:func:`relative_scale`): a look-alike that is not the same place fails one or
the other. The accepted loop is an edge with a relative Sim(3): the tracked motion, in the old
keyframe's units, and the ratio of the units.

Correction. When the loop edge disagrees with the current estimate by more than
``config.loop_correction`` (relative translation, rotation in radians, or log scale), the
keyframe graph (an edge from each keyframe to its anchor, the keyframe its pose was computed
from, and a weak one to the keyframe made before it where that is another, at their current
relative poses; every loop edge accepted so far) is optimised with the window's keyframes held
(those of the newest map segment, when the window spans a cold start) and the keyframe tracking
uses (an old one it came back to, :attr:`MapState.tracked_keyframe_id`): the live end of the map
does not move; the older keyframes move to meet
it, with their depths rescaled and the frames tracked against them following. Keyframes already
fused (:mod:`slam.system.archive`) keep their pixels on disk, and the run's end fuses the map
again at the corrected poses and scales (:meth:`slam.system.archive.KeyframeArchive.rebuild`).

Poses are world-to-camera (``G``, ``S``); ``S_new S_old^-1`` maps the old keyframe's camera to the
new one's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from networks.flow_geometry import resize_intrinsics
from slam.config.schema import BackendConfig
from slam.geometry.lie import SE3
from slam.geometry.pose_graph import compose, inverse, optimise_pose_graph, se3_and_scale, sim3_from_se3
from slam.geometry.pose_graph import log as sim3_log
from slam.geometry.projection import MIN_DEPTH, backproject, project
from slam.geometry.resize import resize_depth
from slam.system.covisibility import covisible_keyframes, reprojection_flow
from slam.system.map import Keyframe, MapState, first_of_segment, segment_starts
from slam.system.places import Candidate, candidates, shifted_scores
from slam.system.tracker import Tracker

log = logging.getLogger(__name__)

#: the least share of the old keyframe's pixels with depth that must land on the new keyframe's
#: pixels with depth for the scale between them to be measured
MIN_SHARED = 0.25

#: the largest spread (median absolute deviation of the log depth ratios) of a verified loop:
#: the depths of the same surfaces differ by one scale factor, those of different ones do not
MAX_SCALE_SPREAD = 0.15

#: the thumbnail score (normalized cross-correlation) an appearance candidate must exceed
MIN_APPEARANCE = 0.3

#: standard deviations of the pose graph's measurements, which weight its residuals (by the
#: inverse of their squares): the translation between two keyframes, as a share of the scene
#: depth; their rotation, radians; the log scale between consecutive keyframes (tracked against
#: one another's depth, their units agree closely); and the log scale a loop measures (the ratio
#: of two depth maps, each with an error of its own of several percent where the poses do not
#: drift, so it says less about the drift than the tracked motion does)
TRANSLATION_STD = 0.01
ROTATION_STD = 0.005
STEP_SCALE_STD = 0.005
LOOP_SCALE_STD = 0.1

#: a verification stops after its first step when the flow quality is under this share of
#: ``config.loop_quality`` (most candidates that are not the same place score a tenth of it)
GIVE_UP_SHARE = 0.25

#: weight, relative to the others, of the edge from a keyframe to the one made before it where
#: that is not its anchor: a cold start's (a new map segment: the relative pose is a guess, which
#: a loop edge overrides), a relocalized one's, or one made after tracking came back to an old
#: keyframe (the two may never have been measured against each other)
COLD_START_WEIGHT = 1e-6


def information(scene_depth: float, scale_std: float) -> list[float]:
    """The (7,) weights of a pose-graph edge's residual ``[tau, phi, sigma]`` (see the standard
    deviations above), for a scene ``scene_depth`` deep in the map's units."""
    return [(TRANSLATION_STD * scene_depth) ** -2] * 3 + [ROTATION_STD**-2] * 3 + [scale_std**-2]


@dataclass(frozen=True)
class LoopEdge:
    """A verified loop: keyframe ``new_id`` sees what keyframe ``old_id`` saw;
    ``new_from_old`` (8,) float64 Sim(3) is the measured ``S_new S_old^-1``; ``why`` is how the
    old keyframe was found ("proximity" or "appearance")."""

    new_id: int
    old_id: int
    new_from_old: torch.Tensor
    why: str


def relative_scale(
    new_depth: torch.Tensor,
    old_depth: torch.Tensor,
    new_from_old: SE3,
    intrinsics: torch.Tensor,
    image_size: tuple[int, int],
) -> tuple[float, float, float]:
    """How the old keyframe's depth units relate to the new one's: the old keyframe's pixels
    with depth (``old_depth`` (h, w), any resolution) moved by ``new_from_old`` (SE3 (), in the
    old keyframe's units) onto the new keyframe's pixels with depth (``new_depth`` (H', W'), any
    resolution, its own units). Returns (median ratio of the old units to the new ones, share of
    the old pixels that landed, spread: the median absolute deviation of the log ratios); a ratio
    of NaN when none landed. ``intrinsics`` (4,) at the processing size ``image_size`` (H, W)."""
    old_depth = old_depth.float()
    height, width = old_depth.shape
    grid_intrinsics = resize_intrinsics(intrinsics, image_size, (height, width))
    known = old_depth > 0
    points = backproject(old_depth[None], grid_intrinsics[None])[0][known]  # (P, 3) old camera
    moved = new_from_old.act(points)
    coords = project(moved, grid_intrinsics, extra_dims=1).round().long()
    new_small = resize_depth(new_depth.float(), (height, width))
    inside = (
        (moved[:, 2] > MIN_DEPTH)
        & (coords[:, 0] >= 0)
        & (coords[:, 0] < width)
        & (coords[:, 1] >= 0)
        & (coords[:, 1] < height)
    )
    sampled = torch.zeros_like(moved[:, 2])
    sampled[inside] = new_small[coords[inside, 1], coords[inside, 0]]
    landed = inside & (sampled > 0)
    share = float(landed.sum()) / max(int(known.sum()), 1)
    if not bool(landed.any()):
        return float("nan"), share, float("inf")
    log_ratios = (moved[landed, 2] / sampled[landed]).log()
    middle = log_ratios.median()
    return float(middle.exp()), share, float((log_ratios - middle).abs().median())


class LoopCloser:
    """Detects, verifies and closes loops on the map's keyframe graph (see the module
    docstring). Call :meth:`close` from the backend's thread once per pass."""

    def __init__(
        self,
        tracker: Tracker,
        map_state: MapState,
        config: BackendConfig,
        intrinsics: torch.Tensor,
        image_size: tuple[int, int],
    ):
        """``tracker``: the backend's own (not the frontend's: it caches per keyframe);
        ``intrinsics`` (4,) at the processing size ``image_size`` (H, W)."""
        self.tracker = tracker
        self.map = map_state
        self.config = config
        self.intrinsics = intrinsics
        self.image_size = image_size
        self.edges: list[LoopEdge] = []
        self.rejected = 0  # candidates that failed the verification
        self._failed_at: dict[int, int] = {}  # old keyframe id -> newest keyframe id of its last failure
        self.correction_seconds: list[float] = []  # time of each pose-graph correction

    @property
    def corrections(self) -> int:
        return len(self.correction_seconds)

    def segments_joined(self) -> int:
        """How many map segments after the first (each begun by a cold start, at a scale of its
        own) an accepted loop joins to the one before: a loop edge from a keyframe at or after a
        segment's first keyframe to one before it spans that start, and the correction weighs the
        start's guessed relative pose next to nothing beside the loop's measured one."""
        starts = segment_starts(self.map.keyframe_list())[1:]
        return sum(any(edge.old_id < start <= edge.new_id for edge in self.edges) for start in starts)

    def close(self, window: list[Keyframe]) -> LoopEdge | None:
        """Look for a loop at the window's newest keyframe; correct the graph when one is found
        that the current estimate does not meet (see the module docstring). Returns the loop
        accepted, or None."""
        if not self.config.loops or not window:
            return None
        newest = window[-1]
        older = self._candidates_for(window)
        if newest.motion_features is None or newest.depth is None or not older:
            return None
        edge = self._detect(window, older)
        if edge is None:
            return None
        # a keyframe keeps one loop edge per old keyframe
        self.edges = [e for e in self.edges if (e.new_id, e.old_id) != (edge.new_id, edge.old_id)] + [edge]
        error = self._disagreement(edge)
        log.debug("loop %d -> %d (%s) accepted, disagreement %.4f", edge.new_id, edge.old_id, edge.why, error)
        if error > self.config.loop_correction:
            self._correct(window)
        return edge

    def _candidates_for(self, window: list[Keyframe]) -> list[Keyframe]:
        """The keyframes a loop from the ``window``'s newest keyframe may reach: those at least
        ``config.loop_gap`` keyframes older than the window (the ones between are tracked against
        one another already), and every keyframe of an earlier map segment than the newest
        one's, outside the window: no tracking joins two segments, however few keyframes the
        loss between them left (a blackout makes none)."""
        keyframes = self.map.keyframe_list()
        in_window = {kf.id for kf in window}
        segment_start = first_of_segment(keyframes, window[-1].id)
        return [
            kf
            for kf in keyframes
            if kf.id not in in_window and (kf.id < window[0].id - self.config.loop_gap or kf.id < segment_start)
        ]

    def _detect(self, window: list[Keyframe], older: list[Keyframe]) -> LoopEdge | None:
        """The verified loop edge from the ``window``'s newest keyframe to one of the ``older``
        keyframes: the proximity candidates first; the appearance ones only when none of those
        passes (drift has hidden the place), less those the proximity round verified already; of
        those that pass, the one with the best flow quality. A candidate that failed against a
        keyframe of the window (views close to the newest one's) is not tried again: where the
        road or corridor looks alike, the same old keyframe comes back for every new keyframe
        and fails every time."""
        newest, window_start = window[-1], window[0].id
        tried: set[int] = set()
        rounds = (lambda: self._by_proximity(newest, older), lambda: self._by_appearance(window, older))
        for find in rounds:  # the appearance round is searched only when the proximity one found nothing
            best: tuple[LoopEdge, float] | None = None
            for candidate in find():
                old_id = candidate.keyframe.id
                if old_id in tried:
                    continue
                tried.add(old_id)
                if self._failed_at.get(old_id, -1) >= window_start:
                    continue
                verified = self._verify(newest, candidate)
                if verified is None:
                    self.rejected += 1
                    self._failed_at[old_id] = newest.id
                elif best is None or verified[1] > best[1]:
                    best = verified
            if best is not None:
                return best[0]
        return None

    def _by_proximity(self, newest: Keyframe, older: list[Keyframe]) -> list[Candidate]:
        """Old keyframes that see what ``newest`` sees at the current poses and whose pixels the
        current relative pose moves by at most ``config.loop_max_flow`` (a forward camera sees
        the road it will drive on from far behind, with far more flow than tracking can find),
        each with the start of its verification (``G_new G_old^-1``: the current relative
        pose)."""
        near = covisible_keyframes(
            newest,
            older,
            self.config.loop_by_proximity,
            self.config.covisible_overlap,
            self.intrinsics,
            self.image_size,
        )
        found = []
        for old in near:
            start, matching = newest.pose_w2c * old.pose_w2c.inv(), old.matching()
            if (
                matching is not None
                and reprojection_flow(matching[1], start, self.intrinsics, self.image_size) <= self.config.loop_max_flow
            ):
                found.append(Candidate(old, start, "proximity"))
        return found

    def _by_appearance(self, window: list[Keyframe], older: list[Keyframe]) -> list[Candidate]:
        """Old keyframes whose thumbnails match that of the ``window``'s newest keyframe best,
        each with the start of its verification (the turn the thumbnails' best shift says). A
        candidate must score above :data:`MIN_APPEARANCE` and at least as well as the least
        alike of the window's other keyframes, which see the same place (as ORB-SLAM's loop
        detection asks of its covisible keyframes): where every view looks alike, as along a
        street, only an old view more alike than those neighbours is worth a verification."""
        newest = window[-1]
        if newest.descriptor is None:
            return []
        neighbours = [kf.descriptor for kf in window[:-1] if kf.descriptor is not None]
        least_alike = float(shifted_scores(newest.descriptor, torch.stack(neighbours))[0].min()) if neighbours else 0.0
        return candidates(
            older,
            newest.descriptor,
            None,
            self.config.loop_by_appearance,
            0,
            self.intrinsics,
            self.image_size,
            min_score=max(MIN_APPEARANCE, least_alike),
        )

    def _verify(self, newest: Keyframe, candidate: Candidate) -> tuple[LoopEdge, float] | None:
        """The loop edge from ``newest`` to the candidate's keyframe and its flow quality when the
        verification passes (see the module docstring), else None."""
        assert newest.motion_features is not None and newest.depth is not None  # checked by close
        old, why, features = candidate.keyframe, candidate.why, newest.motion_features
        result = self.tracker.track(old, features, candidate.start, steps=1, stop_when_confident=False)
        if result.quality < self.config.loop_quality * GIVE_UP_SHARE:
            return None  # nothing alike after the first step: not worth the others
        if self.config.loop_steps > 1:
            result = self.tracker.track(
                old, features, result.frame_from_keyframe, steps=self.config.loop_steps - 1, stop_when_confident=False
            )
        log.debug(
            "loop verification %d -> %d (%s): quality %.3f, residual %.2f px",
            newest.id,
            old.id,
            why,
            result.quality,
            result.residual,
        )
        matching = old.matching()
        if (
            matching is None
            or not result.finite
            or result.quality < self.config.loop_quality
            or result.residual > self.config.loop_residual
        ):
            return None
        ratio, share, spread = relative_scale(
            newest.depth, matching[1], result.frame_from_keyframe, self.intrinsics, self.image_size
        )
        log.debug(
            "loop candidate %d -> %d (%s): quality %.3f, residual %.2f px, scale %.3f over %.0f%%, spread %.3f",
            newest.id,
            old.id,
            why,
            result.quality,
            result.residual,
            ratio,
            100 * share,
            spread,
        )
        if not share >= MIN_SHARED or not spread <= MAX_SCALE_SPREAD or not ratio > 0:
            return None
        # x_new (new units) = T x_old (old units) / ratio: the Sim(3) (R, t / ratio, 1 / ratio)
        tracked = sim3_from_se3(result.frame_from_keyframe)
        measured = compose(torch.tensor([0, 0, 0, 0, 0, 0, 1, 1 / ratio], dtype=torch.float64), tracked)
        return LoopEdge(newest.id, old.id, measured.cpu(), why), result.quality

    def _disagreement(self, edge: LoopEdge) -> float:
        """The largest part of ``log(M^-1 S_new S_old^-1)`` at the current poses, in standard
        deviations of a loop measurement: translation (over the old keyframe's median depth),
        rotation and log scale."""
        with self.map.lock:
            new, old = self.map.keyframes[edge.new_id], self.map.keyframes[edge.old_id]
            current = sim3_from_se3(new.pose_w2c * old.pose_w2c.inv()).cpu()
            matching = old.matching()
        error = sim3_log(compose(inverse(edge.new_from_old), current))
        depth = float(matching[1][matching[1] > 0].median()) if matching is not None else 1.0
        parts = (
            float(error[:3].norm()) / (TRANSLATION_STD * max(depth, 1e-6)),
            float(error[3:6].norm()) / ROTATION_STD,
            abs(float(error[6])) / LOOP_SCALE_STD,
        )
        log.debug("loop %d -> %d: translation %.4f, rotation %.4f, scale %.4f", edge.new_id, edge.old_id, *parts)
        return max(parts)

    def _correct(self, window: list[Keyframe]) -> None:
        """Optimise the keyframe graph up to the window's newest keyframe, the window's keyframes
        of the newest map segment held, and move the other keyframes, their depths and their
        frames (see the module docstring)."""
        start = time.perf_counter()
        with self.map.lock:
            keyframes = [kf for kf in self.map.keyframe_list() if kf.id <= window[-1].id]
            poses = SE3.stack([kf.pose_w2c for kf in keyframes])
            tracked_id = self.map.tracked_keyframe_id
        nodes = sim3_from_se3(poses).cpu()
        index = {kf.id: k for k, kf in enumerate(keyframes)}
        newest_depth = window[-1].depth
        assert newest_depth is not None  # a window keyframe
        scene_depth = float(newest_depth[newest_depth > 0].median()) if bool((newest_depth > 0).any()) else 1.0
        step, cold = information(scene_depth, STEP_SCALE_STD), information(scene_depth, 1.0)
        ii: list[int] = []
        jj: list[int] = []
        weights: list[list[float]] = []
        for k in range(1, len(keyframes)):
            anchor = keyframes[k].anchor_id
            ii.append(k)
            jj.append(k - 1)
            # the keyframe's pose was measured from its anchor: the one made before it is only
            # its neighbour in time when that is its anchor (tracking may have come back to an
            # old keyframe in between)
            weights.append(step if anchor == keyframes[k - 1].id else [COLD_START_WEIGHT * w for w in cold])
            if anchor is not None and anchor in index and index[anchor] != k - 1:
                ii.append(k)
                jj.append(index[anchor])
                weights.append(step)
        edges_i, edges_j = torch.tensor(ii, dtype=torch.long), torch.tensor(jj, dtype=torch.long)
        measured = compose(nodes[edges_i], inverse(nodes[edges_j]))
        loops = [edge for edge in self.edges if edge.new_id in index and edge.old_id in index]
        if loops:
            edges_i = torch.cat([edges_i, torch.tensor([index[e.new_id] for e in loops])])
            edges_j = torch.cat([edges_j, torch.tensor([index[e.old_id] for e in loops])])
            measured = torch.cat([measured, torch.stack([e.new_from_old for e in loops])])
            weights += [information(scene_depth, LOOP_SCALE_STD)] * len(loops)
        live_end = max(window[0].id, first_of_segment(keyframes, window[-1].id))
        fixed = torch.tensor([kf.id >= live_end or kf.id == tracked_id for kf in keyframes])
        corrected = optimise_pose_graph(
            nodes, edges_i, edges_j, measured, torch.tensor(weights, dtype=torch.float64), fixed
        )
        poses_w2c, scales = se3_and_scale(corrected)
        moved = {kf.id: k for k, kf in enumerate(keyframes) if not bool(fixed[k])}
        with self.map.lock:
            if self.map.tracked_keyframe_id in moved:  # tracking moved on to a keyframe it would move
                log.info("loop correction dropped: tracking came back to a keyframe it moves")
                return
            self.map.apply_similarities(
                {kf_id: (SE3(poses_w2c.data[k]), float(scales[k])) for kf_id, k in moved.items()}
            )
        self.correction_seconds.append(time.perf_counter() - start)
        log.info(
            "loop closed: %d keyframes corrected in %.2f s (scale %.3f-%.3f)",
            len(moved),
            self.correction_seconds[-1],
            float(scales.min()),
            float(scales.max()),
        )
