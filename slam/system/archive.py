"""Keyframes leave the map's memory once they are final: the backend never moves a keyframe
older than its window again, so such a keyframe is fused (:class:`~slam.mapping.streaming.StreamingFusion`),
its depth map and image written when the run saves them, and its pixels released a few keyframes later
(it serves as a witness for the consistency of the next ones first). What stays of it in the
map is its pose and times, which the trajectory needs, and its place record (coarse features and
depth, an appearance descriptor), which relocalization matches against. Memory then grows slowly
over a long run: the newest keyframes, the fused geometry of the volume mapped, a pose per frame
and a place record per keyframe.

Scale: the window's bundle adjustment lets a keyframe's depth drift a little from the scale its
pose and its neighbours keep (its points then land a few percent in front of or behind theirs,
and the fused walls thicken). With ``align_scales``, a keyframe that becomes final is brought to
the scale of the final keyframes of its map segment that it overlaps before it is fused
(:func:`slam.mapping.fusion.depth_scale_against`), its frames with it; one after another, a
segment's depths keep the scale of its first keyframe (segments meet at their own scales, which
loop closure measures).

"Final" holds for the backend's window, not for a loop closure, which moves old keyframes (see
:mod:`slam.system.loop_closure`). With ``keep_released``, a released keyframe's pixels go to disk
(:class:`~slam.system.released_pixels.ReleasedPixels`), and when the run ends with fused
keyframes that moved since they were fused, :meth:`KeyframeArchive.rebuild` fuses the whole map
again at the final poses and scales, so that the exported cloud and mesh follow the corrected
trajectory.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from slam.io.depth_maps import write_depth_npy
from slam.mapping.fusion import FusionKeyframe, depth_scale_against, nearest_neighbours
from slam.mapping.posed_views import write_view_image
from slam.mapping.streaming import NUM_NEIGHBOURS, StreamingFusion
from slam.system.bundle import UNSUPPORTED_DEPTH
from slam.system.map import KeyframeView, MapState, first_of_segment, segment_starts, translation_scaled
from slam.system.released_pixels import ReleasedPixels

log = logging.getLogger(__name__)

#: the least confidence of a pixel that measures a keyframe's scale against the fused keyframes
#: (:meth:`KeyframeArchive._align`): every depth the depth module was confident of, however
#: little the views support it (see :attr:`slam.system.map.Keyframe.confidence`). The scale is
#: a median over the pixels that agree with the witnesses, which leaves the wrong ones out; the
#: cloud's confidence threshold would also leave out the far pixels that little parallax
#: supports, and the scale would then rest on the near field (docs/tuning.md: the driving
#: sequences' ATE rose by up to 40%).
ALIGNMENT_MIN_CONFIDENCE = UNSUPPORTED_DEPTH


class KeyframeArchive:
    """Moves final keyframes out of ``map_state`` into ``fusion`` (see the module docstring).

    - ``active``: the newest keyframes that may still change (the backend's window and the one
      before it, which the frontend and the backend still read); all older ones are final.
    - ``witnesses``: fused keyframes that keep their pixels, to confirm the points of the
      keyframes fused after them.
    - ``depth_folder``: where each fused keyframe's depth map goes (see
      :func:`slam.io.depth_maps.write_depth_npy`), or None.
    - ``views_folder``: the posed views' folder each fused keyframe's image goes into (see
      :func:`slam.mapping.posed_views.write_view_image`), or None.
    - ``intrinsics``: ``[fx, fy, cx, cy]`` of the keyframes' images.
    - ``keep_released``: keep released keyframes' pixels on disk, for :meth:`rebuild`.
    - ``align_scales``: before a final keyframe is fused, its depth is brought to the scale of
      the final keyframes of its map segment that it overlaps (:meth:`_align`).
      Depths less confident than :data:`ALIGNMENT_MIN_CONFIDENCE` are left out of that
      comparison. ``align_live_end``: the keyframes after it in its segment are rescaled with
      it (see :meth:`_align`).

    Call :meth:`update` from the thread that runs the backend (the keyframes it fuses must not
    move meanwhile).
    """

    def __init__(
        self,
        map_state: MapState,
        fusion: StreamingFusion,
        intrinsics: np.ndarray,
        active: int,
        witnesses: int = NUM_NEIGHBOURS,
        depth_folder: Path | None = None,
        views_folder: Path | None = None,
        keep_released: bool = False,
        align_scales: bool = False,
        align_live_end: bool = False,
    ):
        if active < 1 or witnesses < 0:
            raise ValueError(f"need active >= 1 and witnesses >= 0, got {active} and {witnesses}")
        self.map = map_state
        self.fusion = fusion
        self.intrinsics = np.asarray(intrinsics, dtype=np.float64)
        self.active = active
        self.witnesses = witnesses
        self.depth_folder = depth_folder
        self.views_folder = views_folder
        self.released = ReleasedPixels() if keep_released else None
        self.align_scales = align_scales
        self.align_live_end = align_live_end
        self.scale_corrections: list[float] = []  # each aligned keyframe's depth factor (see _align)
        # held from a keyframe's release until its pixels are in the store (see detached_map)
        self._spilling = threading.Lock()
        # each fused keyframe's (4, 4) camera-to-world pose and released_depth_scale when fused
        self._fused_as: dict[int, tuple[np.ndarray, float]] = {}
        # the last update's fusion input per keyframe that keeps its pixels: reused while the
        # keyframe is unchanged, with what fusion derived from it (see _candidates)
        self._last_candidates: dict[int, FusionKeyframe] = {}

    def fusion_keyframe(self, view: KeyframeView) -> FusionKeyframe:
        """A keyframe's view (with its pixels) as fusion input."""
        assert view.image is not None and view.depth is not None  # views with pixels only
        return FusionKeyframe(
            view.image, view.depth, view.confidence, view.pose_c2w, self.intrinsics, view.timestamp, view.id
        )

    def _candidates(self, views: list[KeyframeView]) -> list[FusionKeyframe]:
        """The ``views`` as fusion input; a view equal to the one the last update made
        (:meth:`FusionKeyframe.same_as`) gives that update's object back, so that what fusion
        computed from it (its median depth, its masked depths as a witness) is not computed
        again: a keyframe witnesses the fusion of several that follow it."""
        candidates = []
        for view in views:
            candidate = self.fusion_keyframe(view)
            last = self._last_candidates.get(candidate.id)
            candidates.append(last if last is not None and last.same_as(candidate) else candidate)
        self._last_candidates = {candidate.id: candidate for candidate in candidates}
        return candidates

    def update(self, final: bool = False) -> int:
        """Fuse the keyframes that became final (every keyframe with ``final``: the run is over),
        write their depth maps, and release the pixels of those fused more than ``witnesses``
        keyframes before the newest fused one. Returns how many keyframes were fused."""
        with self.map.lock:
            keyframes = self.map.keyframe_list()
            done = keyframes if final else keyframes[: max(0, len(keyframes) - self.active)]
            fresh = [kf for kf in done if not kf.released and not self.fusion.fused(kf.id)]
            views = self.map.keyframe_views([kf for kf in keyframes if not kf.released]) if fresh else []
        candidates = self._candidates(views) if views else []
        fresh_ids = {kf.id for kf in fresh}
        for k, view in enumerate(views):
            if candidates[k].id in fresh_ids:
                if self.align_scales:
                    segment = first_of_segment(keyframes, candidates[k].id)
                    references = [c for c in candidates if c.id >= segment and self.fusion.fused(c.id)]
                    aligned = self._align(candidates[k], references)
                    if aligned is not None:
                        candidates = _scaled_about(candidates, candidates[k], *aligned)
                candidate = candidates[k]
                self.fusion.add(candidate, candidates)
                self._fused_as[candidate.id] = (candidate.pose_c2w, 1.0)  # not released yet
                assert view.depth is not None and view.image is not None  # unreleased keyframes carry pixels
                if self.depth_folder is not None:
                    write_depth_npy(self.depth_folder, view.frame_index, candidate.depth)
                if self.views_folder is not None:
                    write_view_image(self.views_folder, view.frame_index, view.image)
        fused = [kf for kf in done if self.fusion.fused(kf.id)]
        spilled: list[KeyframeView] = []  # written to disk once the map's lock is free: tracking waits on it
        with self._spilling:
            with self.map.lock:
                for keyframe in fused[: max(0, len(fused) - self.witnesses)]:
                    if not keyframe.released:
                        if self.released is not None:
                            spilled.append(self.map.keyframe_views([keyframe])[0])
                        keyframe.release()
                        self.map.version += 1
            for view in spilled:
                assert self.released is not None  # views are spilled only into a store
                self.released.put(view)
        if fresh:
            log.debug("fused %d final keyframes (%d in all)", len(fresh), len(self.fusion))
        return len(fresh)

    def _align(self, keyframe: FusionKeyframe, fused: list[FusionKeyframe]) -> tuple[float, set[int]] | None:
        """Bring ``keyframe`` (final, not fused yet) to the scale of the ``witnesses`` nearest of
        the ``fused`` keyframes (those of its own map segment: :func:`depth_scale_against`):
        the map's keyframe has its depth multiplied by that factor
        (:meth:`MapState.apply_similarities` at its own pose: its depth, its place depth and the
        translations of the frames tracked against it, which were measured with its depth when
        it was the newest keyframe); with ``align_live_end``, so have the keyframes after it in
        its segment (the backend's window, the live end of the map), their places moved about
        its pose by the same factor, so that tracking and the window go on at the map's scale
        instead of drifting from it (a keyframe being computed meanwhile follows its previous
        keyframe's :attr:`Keyframe.rescaled_by`). The backend's window
        lets each keyframe's depth drift a little from the scale its pose and its neighbours'
        keep; aligned one after another as they become final, the depths of a map segment keep
        the scale of its first keyframe. Returns the factor and the ids of the keyframes it
        rescaled (``keyframe``'s, and the live end's); None (nothing changed) when the overlap is
        too small (a segment's first keyframe has none)."""
        nearest = nearest_neighbours([keyframe, *fused], self.witnesses)[0]
        factor = depth_scale_against(keyframe, [fused[j - 1] for j in nearest], ALIGNMENT_MIN_CONFIDENCE)
        if factor is None or not np.isfinite(factor) or factor <= 0:
            return None
        self.scale_corrections.append(factor)
        with self.map.lock:
            pivot_w2c = self.map.keyframes[keyframe.id].pose_w2c
            corrections = {keyframe.id: (pivot_w2c, 1.0 / factor)}
            if self.align_live_end:  # the later keyframes up to the next segment's start
                keyframes = self.map.keyframe_list()
                end = min((start for start in segment_starts(keyframes) if start > keyframe.id), default=None)
                for later in keyframes:
                    if later.id > keyframe.id and (end is None or later.id < end):
                        from_pivot = translation_scaled(later.pose_w2c * pivot_w2c.inv(), factor)
                        corrections[later.id] = (from_pivot * pivot_w2c, 1.0 / factor)
            self.map.apply_similarities(corrections)
        return factor, set(corrections)

    def moved_since_fusion(self, tolerance: float = 1e-6) -> bool:
        """Whether a fused keyframe's pose or scale changed since it was fused (by more than
        ``tolerance``, in the pose matrix's entries or the depth scale)."""
        with self.map.lock:
            keyframes = [kf for kf in self.map.keyframe_list() if kf.id in self._fused_as]
            views = self.map.keyframe_views(keyframes, with_images=False)
            scales = [kf.released_depth_scale for kf in keyframes]
        return any(
            abs(scale - self._fused_as[view.id][1]) > tolerance
            or float(np.abs(view.pose_c2w - self._fused_as[view.id][0]).max()) > tolerance
            for view, scale in zip(views, scales)
        )

    def detached_map(self) -> MapState:
        """A detached copy of the map (:meth:`MapState.detached_copy`) taken when every released
        keyframe's pixels are in the store, so that :meth:`fuse_map` can fuse all of its
        keyframes while the run goes on."""
        with self._spilling:
            return self.map.detached_copy()

    def _final_keyframes(self, map_state: MapState) -> Iterator[tuple[FusionKeyframe, float, int]]:
        """Every keyframe of ``map_state`` in order at its current pose, with its pixels from
        memory or from the released store (its depth in today's units), one at a time, with its
        ``released_depth_scale`` and frame index."""
        assert self.released is not None  # fusing again needs the released pixels
        for keyframe in map_state.keyframe_list():
            with map_state.lock:
                view = map_state.keyframe_views([keyframe])[0]
                divisor = keyframe.released_depth_scale
            if view.has_pixels:
                yield self.fusion_keyframe(view), divisor, view.frame_index
            elif keyframe.id in self.released:
                view.image, depth, view.confidence = self.released.get(keyframe.id)
                view.depth = depth / divisor
                yield self.fusion_keyframe(view), divisor, view.frame_index
            else:  # released before a store existed: cannot be fused again
                log.warning("keyframe %d has no pixels left to fuse again", keyframe.id)

    def fuse_map(
        self,
        map_state: MapState,
        depth_folder: Path | None,
        on_fused: Callable[[FusionKeyframe, float], None] | None = None,
    ) -> StreamingFusion:
        """A new fusion of every keyframe of ``map_state`` (the live map, or a detached copy from
        :meth:`detached_map`) at its pose and scale there, each checked against the ``witnesses``
        keyframes before it and the ``active`` after it, as when it was first fused; each
        keyframe's depth map is written to ``depth_folder`` (None: nowhere) and passed to
        ``on_fused`` with its ``released_depth_scale``. Needs ``keep_released``; leaves this
        archive as it is. The caller closes the fusion."""
        fusion = StreamingFusion(self.fusion.config)

        def fuse(keyframe: FusionKeyframe, scale: float, frame_index: int, witnesses: list[FusionKeyframe]) -> None:
            fusion.add(keyframe, witnesses)
            if depth_folder is not None:
                write_depth_npy(depth_folder, frame_index, keyframe.depth)
            if on_fused is not None:
                on_fused(keyframe, scale)

        recent: list[tuple[FusionKeyframe, float, int]] = []  # (keyframe, released_depth_scale, frame index)
        for entry in self._final_keyframes(map_state):
            recent = [*recent[-(self.witnesses + self.active) :], entry]
            if len(recent) > self.active:  # the keyframe ``active`` before this one has its witnesses
                fuse(*recent[-1 - self.active], [kf for kf, _, _ in recent])
        for keyframe, scale, frame_index in recent:  # the newest, with fewer witnesses after them
            if not fusion.fused(keyframe.id):
                fuse(keyframe, scale, frame_index, [kf for kf, _, _ in recent])
        return fusion

    def rebuild(self) -> StreamingFusion:
        """:meth:`fuse_map` of the live map into :attr:`fusion`'s place, rewriting the depth maps
        of ``depth_folder``; afterwards the fused keyframes count as fused at their current
        poses (:meth:`moved_since_fusion`). The caller closes the old fusion."""

        def record(keyframe: FusionKeyframe, released_depth_scale: float) -> None:
            self._fused_as[keyframe.id] = (keyframe.pose_c2w, released_depth_scale)

        self.fusion = self.fuse_map(self.map, self.depth_folder, record)
        return self.fusion


def _scaled_about(
    candidates: list[FusionKeyframe], pivot: FusionKeyframe, factor: float, rescaled: set[int]
) -> list[FusionKeyframe]:
    """The fusion views ``candidates`` after :meth:`KeyframeArchive._align` rescaled the map's
    keyframes ``rescaled`` by ``factor`` about the ``pivot``'s pose: each of those views with its
    depth multiplied by the factor and its camera centre moved away from the pivot's by it, as
    the map's keyframes were (the pivot's own centre stays)."""
    scaled = list(candidates)
    for m, view in enumerate(candidates):
        if view.id in rescaled:
            pose_c2w = view.pose_c2w.copy()
            pose_c2w[:3, 3] = pivot.pose_c2w[:3, 3] + factor * (view.pose_c2w[:3, 3] - pivot.pose_c2w[:3, 3])
            scaled[m] = dataclasses.replace(view, depth=view.depth * np.float32(factor), pose_c2w=pose_c2w)
    return scaled
