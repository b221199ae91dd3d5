"""Keyframes leave the map's memory once they are final: the backend never moves a keyframe
older than its window again, so such a keyframe is fused (:class:`~slam.mapping.streaming.StreamingFusion`),
its depth map written when the run saves them, and its pixels released a few keyframes later
(it serves as a witness for the consistency of the next ones first). What stays of it in the
map is its pose and times, which the trajectory needs, and its place record (coarse features and
depth, an appearance descriptor), which relocalization matches against. Memory then grows slowly
over a long run: the newest keyframes, the fused geometry of the volume mapped, a pose per frame
and a place record per keyframe.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from slam.io.depth_maps import write_depth_npy
from slam.mapping.fusion import FusionKeyframe
from slam.mapping.streaming import NUM_NEIGHBOURS, StreamingFusion
from slam.system.map import KeyframeView, MapState

log = logging.getLogger(__name__)


class KeyframeArchive:
    """Moves final keyframes out of ``map_state`` into ``fusion`` (see the module docstring).

    - ``active``: the newest keyframes that may still change (the backend's window and the one
      before it, which the frontend and the backend still read); all older ones are final.
    - ``witnesses``: fused keyframes that keep their pixels, to confirm the points of the
      keyframes fused after them.
    - ``depth_folder``: where each fused keyframe's depth map goes (see
      :func:`slam.mapping.export.write_depth_npy`), or None.
    - ``intrinsics``: ``[fx, fy, cx, cy]`` of the keyframes' images.

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
    ):
        if active < 1 or witnesses < 0:
            raise ValueError(f"need active >= 1 and witnesses >= 0, got {active} and {witnesses}")
        self.map = map_state
        self.fusion = fusion
        self.intrinsics = np.asarray(intrinsics, dtype=np.float64)
        self.active = active
        self.witnesses = witnesses
        self.depth_folder = depth_folder

    def fusion_keyframe(self, view: KeyframeView) -> FusionKeyframe:
        """A keyframe's view (with its pixels) as fusion input."""
        assert view.image is not None and view.depth is not None  # views with pixels only
        return FusionKeyframe(
            view.image, view.depth, view.confidence, view.pose_c2w, self.intrinsics, view.timestamp, view.id
        )

    def update(self, final: bool = False) -> int:
        """Fuse the keyframes that became final (every keyframe with ``final``: the run is over),
        write their depth maps, and release the pixels of those fused more than ``witnesses``
        keyframes before the newest fused one. Returns how many keyframes were fused."""
        with self.map.lock:
            keyframes = self.map.keyframe_list()
            done = keyframes if final else keyframes[: max(0, len(keyframes) - self.active)]
            fresh = [kf for kf in done if not kf.released and not self.fusion.fused(kf.id)]
            views = self.map.keyframe_views([kf for kf in keyframes if not kf.released]) if fresh else []
        candidates = [self.fusion_keyframe(view) for view in views]
        fresh_ids = {kf.id for kf in fresh}
        for candidate, view in zip(candidates, views):
            if candidate.id in fresh_ids:
                self.fusion.add(candidate, candidates)
                if self.depth_folder is not None:
                    assert view.depth is not None  # views of unreleased keyframes carry pixels
                    write_depth_npy(self.depth_folder, view.frame_index, view.depth)
        fused = [kf for kf in done if self.fusion.fused(kf.id)]
        with self.map.lock:
            for keyframe in fused[: max(0, len(fused) - self.witnesses)]:
                if not keyframe.released:
                    keyframe.release()
                    self.map.version += 1
        if fresh:
            log.debug("fused %d final keyframes (%d in all)", len(fresh), len(self.fusion))
        return len(fresh)
