"""Build the depth and motion modules by name: ``classical`` (no weights), ``lite`` and ``paper``
(the learned DeepV2D networks at two sizes, same code), at the processing resolution of a run.
A learned module takes its size from the checkpoint it is loaded from.

Checkpoints of learned modules are plain dicts loaded with ``torch.load(weights_only=True)``:
``{"format": 1, "depth": {"config": {...}, "state_dict": {...}}, "motion": {...}}``, where
each config holds the fields of DepthNetConfig / MotionNetConfig. A checkpoint may hold only one
of the two modules. :func:`load_checkpoint` refuses weights that are not finite and adds
``"file"`` (the path it read, for messages) to the dict it returns.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TypeVar

import torch

from networks.classical_depth import ClassicalDepthConfig, ClassicalDepthModule
from networks.classical_motion import ClassicalMotionConfig, ClassicalMotionModule
from networks.depth import DepthNetConfig, LearnedDepthModule
from networks.interfaces import DepthModule, MotionModule
from networks.motion import LearnedMotionModule, MotionNetConfig
from slam.errors import V2DError

MODULE_KINDS = ("classical", "lite", "paper")
#: the checkpoint keys of the learned modules
MODULE_ROLES = ("depth", "motion")
CHECKPOINT_FORMAT = 1


class WeightsError(V2DError):
    """A checkpoint is missing, unreadable, or does not fit the module it is loaded into."""


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint file safely (``weights_only=True``); raises WeightsError naming it."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise WeightsError(f"cannot read weights {path}: {err.__class__.__name__}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not a v2d checkpoint (format {CHECKPOINT_FORMAT})")
    for role in MODULE_ROLES:
        for name, tensor in (checkpoint.get(role) or {}).get("state_dict", {}).items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise WeightsError(
                    f"{path}: {role}.{name} holds NaN or infinite values: the weights are broken "
                    "(a diverged training?); use another checkpoint"
                )
    return {**checkpoint, "file": str(path)}


def save_checkpoint(
    path: str | Path,
    depth: LearnedDepthModule | None = None,
    motion: LearnedMotionModule | None = None,
    extra: dict | None = None,
) -> None:
    """Write the learned modules' configs and weights (and JSON-able ``extra`` metadata)."""
    checkpoint: dict = {"format": CHECKPOINT_FORMAT, **(extra or {})}
    for name, module in zip(MODULE_ROLES, (depth, motion)):
        if module is not None:
            checkpoint[name] = {"config": dataclasses.asdict(module.config), "state_dict": module.state_dict()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


_M = TypeVar("_M", bound=torch.nn.Module)


def _learned_module(
    role: str, kind: str, module_cls: type[_M], config_cls, checkpoint: dict | None, device: str | torch.device
) -> _M:
    """The learned ``role`` ("depth" or "motion") module stored in ``checkpoint``, on ``device``,
    in eval mode (its size comes from the stored config)."""
    if kind not in MODULE_KINDS:
        raise V2DError(f"unknown {role} module {kind!r}: use one of {', '.join(MODULE_KINDS)}")
    checkpoint = checkpoint or {}
    stored = checkpoint.get(role)
    if stored is None:
        raise WeightsError(
            f"the {kind} {role} network needs trained weights (--weights FILE with a {role} module); "
            "use the classical module without weights"
        )
    config = config_cls(**{**stored["config"], "input_size": tuple(stored["config"]["input_size"])})
    module = module_cls(config)
    file = str(checkpoint.get("file", "the checkpoint"))
    _check_fits(module, stored["state_dict"], file, role)
    _check_size(kind, module_cls, config_cls, stored["state_dict"], file, role)
    module.load_state_dict(stored["state_dict"])
    return module.to(device).eval()


def _check_size(kind: str, module_cls: type, config_cls, state_dict: dict, file: str, role: str) -> None:
    """WeightsError when the ``role`` network in ``file`` (its ``state_dict``) has the shapes of
    the other named size than ``kind`` asks for (lite weights run as ``paper`` or the reverse
    would silently run the size they hold); a network of neither size passes."""
    other = {"lite": "paper", "paper": "lite"}[kind]

    def shapes_of(size: str) -> dict:
        return {name: tensor.shape for name, tensor in module_cls(getattr(config_cls, size)()).state_dict().items()}

    held = {name: tensor.shape for name, tensor in state_dict.items()}
    if held != shapes_of(kind) and held == shapes_of(other):
        raise WeightsError(
            f"{file} holds the {other} {role} network, not the {kind} one: set modules.{role}={other} "
            f"or give {kind} weights"
        )


def _check_fits(module: torch.nn.Module, state_dict: dict, file: str, role: str) -> None:
    """WeightsError naming ``file`` and the first tensor of ``state_dict`` that ``module`` (the
    ``role`` network built from the checkpoint's stored config) lacks, has not, or has in
    another shape."""
    expected = module.state_dict()
    hint = "its stored config and weights disagree; write checkpoints with v2d train (save_checkpoint)"
    for name, tensor in state_dict.items():
        if name not in expected:
            raise WeightsError(f"{file}: {role}.{name} is not a tensor of the {role} network; {hint}")
        if tensor.shape != expected[name].shape:
            raise WeightsError(
                f"{file}: {role}.{name} has shape {tuple(tensor.shape)}, the {role} network of its stored "
                f"config expects {tuple(expected[name].shape)}; {hint}"
            )
    missing = [name for name in expected if name not in state_dict]
    if missing:
        raise WeightsError(f"{file}: the {role} weights lack {role}.{missing[0]}; {hint}")


def build_depth_module(
    kind: str,
    input_size: tuple[int, int],
    depth_range: tuple[float, float],
    checkpoint: dict | None = None,
    device: str | torch.device = "cpu",
) -> DepthModule:
    """A depth module of ``kind`` for images of ``input_size`` (H, W) with depth hypotheses over
    ``depth_range`` metres (the classical module's; a learned one keeps its trained range)."""
    if kind == "classical":
        return ClassicalDepthModule(
            ClassicalDepthConfig(input_size=input_size, min_depth=depth_range[0], max_depth=depth_range[1])
        )
    return _learned_module("depth", kind, LearnedDepthModule, DepthNetConfig, checkpoint, device)


def build_motion_module(
    kind: str, input_size: tuple[int, int], checkpoint: dict | None = None, device: str | torch.device = "cpu"
) -> MotionModule:
    """A motion module of ``kind`` for images of ``input_size`` (H, W)."""
    if kind == "classical":
        return ClassicalMotionModule(ClassicalMotionConfig(input_size=input_size)).to(device)
    return _learned_module("motion", kind, LearnedMotionModule, MotionNetConfig, checkpoint, device)
