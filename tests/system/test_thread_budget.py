"""Each thread's torch budget: the threads that work beside tracking (the keyframe worker, the
backend) run with ``modules.background_threads`` torch threads of their own, tracking keeps
``modules.threads``, and the run's end, once they have stopped, takes both; numpy's BLAS and
OpenCV run one thread each for the whole process."""

from __future__ import annotations

import threading

import cv2
import torch
from threadpoolctl import threadpool_info

from slam.io.sources.synthetic import SyntheticSource
from slam.system.backend import Backend
from slam.system.frontend import Frontend
from tests.system.classical_systems import classical_system


def test_background_threads_run_with_their_own_torch_budget(monkeypatch):
    frames = list(SyntheticSource("room", 0, 16, 240, 320))
    seen: dict[str, set[int]] = {"worker": set(), "backend": set(), "tracking": set(), "finish": set()}
    build, optimise, process = Frontend._build_keyframe, Backend.optimise, Frontend.process

    def building(frontend, *args):
        seen["worker"].add(torch.get_num_threads())
        return build(frontend, *args)

    def optimising(backend):
        # finish's last pass runs in the caller's thread
        seen["backend" if threading.current_thread().name == "v2d-backend" else "finish"].add(torch.get_num_threads())
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
        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        opencv = cv2.getNumThreads()
        for frame in frames:
            system.process(frame)
        system.finish()
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    assert seen == {"worker": {1}, "backend": {1}, "tracking": {2}, "finish": {3}}
    assert after == 2  # tracking's budget again
    assert blas and set(blas) == {1} and opencv == 1
