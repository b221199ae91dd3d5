"""Each thread's torch budget: the threads that work beside tracking (the keyframe worker, the
backend) run with ``modules.background_threads`` torch threads of their own, and tracking keeps
``modules.threads``."""

from __future__ import annotations

import threading

import torch

from slam.io.sources.synthetic import SyntheticSource
from slam.system.backend import Backend
from slam.system.frontend import Frontend
from tests.system.classical_systems import classical_system


def test_background_threads_run_with_their_own_torch_budget(monkeypatch):
    frames = list(SyntheticSource("room", 0, 16, 240, 320))
    seen: dict[str, set[int]] = {"worker": set(), "backend": set(), "tracking": set()}
    build, optimise, process = Frontend._build_keyframe, Backend.optimise, Frontend.process

    def building(frontend, *args):
        seen["worker"].add(torch.get_num_threads())
        return build(frontend, *args)

    def optimising(backend):
        if threading.current_thread().name == "v2d-backend":  # finish's last pass runs in the caller's
            seen["backend"].add(torch.get_num_threads())
        return optimise(backend)

    def processing(frontend, *args, **kwargs):
        seen["tracking"].add(torch.get_num_threads())
        return process(frontend, *args, **kwargs)

    monkeypatch.setattr(Frontend, "_build_keyframe", building)
    monkeypatch.setattr(Backend, "optimise", optimising)
    monkeypatch.setattr(Frontend, "process", processing)
    threads = torch.get_num_threads()
    try:
        system = classical_system(
            frames,
            "backend.mode=thread",
            "frontend.keyframe_parallax=0.0",
            "frontend.keyframe_lag=2",
            "modules.threads=2",
            "modules.background_threads=1",
        )
        for frame in frames:
            system.process(frame)
        system.finish()
    finally:
        torch.set_num_threads(threads)
    assert seen == {"worker": {1}, "backend": {1}, "tracking": {2}}
