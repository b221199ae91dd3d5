"""Small SLAM systems for the system tests: the classical modules, a cold start on 4 frames, no
mesh; and a depth module made to fail."""

from __future__ import annotations

import dataclasses

import torch

from slam.config.loader import override
from slam.config.schema import SystemConfig
from slam.io.frame import Frame
from slam.system.slam_system import SlamSystem


def classical_system(frames: list[Frame], *settings: str) -> SlamSystem:
    """A system for ``frames``' camera with the classical modules and a cold start on 4 frames
    (``settings`` on top)."""
    config = override(
        SystemConfig(),
        "modules.depth=classical",
        "modules.motion=classical",
        "fusion.mesh=false",
        "frontend.init_frames=4",
        *settings,
    )
    return SlamSystem(config, frames[0].camera)


def nan_depths(module, monkeypatch) -> None:
    """Make ``module.depth`` return NaN depth everywhere."""
    depth = module.depth

    def broken(*args, **kwargs):
        estimate = depth(*args, **kwargs)
        return dataclasses.replace(estimate, depth=torch.full_like(estimate.depth, float("nan")))

    monkeypatch.setattr(module, "depth", broken)
