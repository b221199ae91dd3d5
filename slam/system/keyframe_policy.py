"""The frontend's decisions on a tracked frame: lost, a new keyframe (and why), or an ordinary
tracked frame. Pure functions of the tracking result and the configuration."""

from __future__ import annotations

from slam.config.schema import FrontendConfig
from slam.system.tracker import TrackingResult


def is_lost(result: TrackingResult, config: FrontendConfig) -> bool:
    """The frame is lost: its flow quality is below ``config.min_quality`` or its pose is not
    finite."""
    return result.quality < config.min_quality or not result.finite


def keyframe_reason(result: TrackingResult, config: FrontendConfig) -> str | None:
    """Why a tracked frame becomes a keyframe, or None when it does not: ``"parallax"`` (the
    translation gives depth a baseline: ``config.keyframe_parallax``), ``"flow"`` (the image has
    moved a lot: ``config.keyframe_flow``) or ``"quality"`` (the view has changed:
    ``config.keyframe_quality``), tested in that order."""
    if result.parallax > config.keyframe_parallax:
        return "parallax"
    if result.flow > config.keyframe_flow:
        return "flow"
    if result.quality < config.keyframe_quality:
        return "quality"
    return None
