"""The cold start: DeepV2D's alternation of motion and depth updates from a constant depth, on the
first frames of a map (or of a new map after tracking was lost)."""

from __future__ import annotations

import torch

from networks.deepv2d import AlternationConfig, DeepV2D
from networks.interfaces import DepthModule, MotionModule
from slam.config.schema import FrontendConfig
from slam.system.keyframe_depth import all_finite, fill_invalid


def initial_picks(num_frames: int, neighbours: int) -> list[int]:
    """Indices of the frames the cold start uses among ``num_frames`` gathered ones: the first
    (the keyframe), then up to ``neighbours`` spread evenly over the rest."""
    count = min(neighbours, num_frames - 1)
    return [0] + [round(1 + k * (num_frames - 2) / max(count - 1, 1)) for k in range(count)]


def cold_start(
    depth_module: DepthModule,
    motion_module: MotionModule,
    images: torch.Tensor,
    intrinsics: torch.Tensor,
    config: FrontendConfig,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Depth and confidence, (H, W) each, of the first of ``images`` (N, 3, H, W) with (4,)
    ``intrinsics``: ``config.init_rounds`` rounds of the alternation from the constant depth
    ``config.init_depth`` (which sets the map's scale), holes filled with the median depth. None when
    any value of the alternation's depth or confidence is not finite (no map is to start from it)."""
    alternation = DeepV2D(
        depth_module,
        motion_module,
        AlternationConfig(rounds=config.init_rounds, init="constant", constant_depth=config.init_depth),
    )
    with torch.no_grad():
        result = alternation(images[None], intrinsics[None])
    confidence = result.depth_estimates[-1].confidence[0]
    if not all_finite(result.depth[0], confidence):
        return None
    return fill_invalid(result.depth[0], config.init_depth), confidence
