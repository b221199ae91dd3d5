"""Multi-process training through torchrun: the process group from torchrun's environment
(gloo on CPU, NCCL on CUDA), the rank, and the device each process uses."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from slam.errors import V2DError


@dataclass(frozen=True)
class ProcessInfo:
    """``rank`` of ``world_size`` processes; ``device`` this process trains on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start(device: str) -> ProcessInfo:
    """Join torchrun's process group when launched by it (WORLD_SIZE > 1), else a single
    process. ``device`` "cpu" or "cuda": with CUDA each process takes GPU LOCAL_RANK."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise V2DError(f"--device {device}: no CUDA device is available here (use --device cpu)")
        torch_device = torch.device("cuda", local_rank if world_size > 1 else torch.device(device).index or 0)
        torch.cuda.set_device(torch_device)
    elif device == "cpu":
        torch_device = torch.device("cpu")
    else:
        raise V2DError(f"unknown device {device!r}: use cpu or cuda")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
    return ProcessInfo(rank, world_size, torch_device)


def stop(info: ProcessInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: ProcessInfo) -> None:
    if info.distributed:
        dist.barrier()


def parameters_agree(info: ProcessInfo, module: torch.nn.Module) -> bool:
    """Whether every process holds the same weights (a checksum compared across processes);
    True for a single process."""
    if not info.distributed:
        return True
    with torch.no_grad():
        checksum = torch.stack([p.double().sum() for p in module.parameters()]).sum().view(1).to(info.device)
    gathered = [torch.zeros_like(checksum) for _ in range(info.world_size)]
    dist.all_gather(gathered, checksum)
    return all(torch.equal(g, gathered[0]) for g in gathered)
