"""Relocalization: a frame that tracking lost is registered against the map's keyframes, so that
tracking resumes in the same map, at the same scale.

Candidates come from place recognition (:mod:`slam.system.places`: appearance and proximity to
the last tracked pose). Each is verified geometrically: the frame is tracked against it (the
motion module's correspondences and the Gauss-Newton solve with the keyframe's depth, from the
candidate's start pose, ``config.relocalize_steps`` steps), and it is accepted when the flow is
consistent (quality at least ``config.relocalize_quality``) and the pose has converged (the
residual flow before the last step under ``config.relocalize_residual`` pixels): a look-alike
that is not the same place fails one or the other. Of the accepted candidates, the one with the
best quality wins.

Poses are world-to-camera SE3 (``G``); a result is relative to its keyframe
(``frame_from_keyframe = G_frame G_keyframe^-1``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from slam.config.schema import FrontendConfig
from slam.geometry.lie import SE3
from slam.system.map import Keyframe, MapState
from slam.system.places import candidates
from slam.system.tracker import Tracker, TrackingResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Relocalization:
    """A frame registered against ``keyframe``: ``result.frame_from_keyframe`` is its pose."""

    keyframe: Keyframe
    result: TrackingResult
    why: str  # how the keyframe was found: "appearance" or "proximity"


class Relocalizer:
    """Registers lost frames against the map (see the module docstring)."""

    def __init__(self, tracker: Tracker, map_state: MapState, config: FrontendConfig):
        self.tracker = tracker
        self.map = map_state
        self.config = config
        self.attempts = 0  # candidates verified so far

    def accepts(self, result: TrackingResult) -> bool:
        """Whether a candidate's tracking result passes the geometric verification."""
        return (
            result.finite
            and result.quality >= self.config.relocalize_quality
            and result.residual <= self.config.relocalize_residual
        )

    def relocalize(
        self, features: torch.Tensor, descriptor: torch.Tensor, last_w2c: SE3 | None
    ) -> Relocalization | None:
        """The best verified registration of a frame with motion ``features`` (C, h, w) and
        appearance ``descriptor`` (D,), ``last_w2c`` the last tracked pose (None: unknown), or
        None when no candidate passes."""
        best: Relocalization | None = None
        found = candidates(
            self.map.keyframe_list(),
            descriptor,
            last_w2c,
            self.config.relocalize_by_appearance,
            self.config.relocalize_by_proximity,
            self.tracker.intrinsics,
            self.tracker.image_size,
        )
        for candidate in found:
            self.attempts += 1
            result = self.tracker.track(
                candidate.keyframe,
                features,
                candidate.start,
                steps=self.config.relocalize_steps,
                stop_when_confident=False,
            )
            log.debug(
                "relocalization against keyframe %d (%s): quality %.3f, residual %.2f px",
                candidate.keyframe.id,
                candidate.why,
                result.quality,
                result.residual,
            )
            if self.accepts(result) and (best is None or result.quality > best.result.quality):
                best = Relocalization(candidate.keyframe, result, candidate.why)
        return best
