"""The backend thread's hand-over with tracking: keyframes that arrive during a pass are taken
together by the next, each is looked at for a loop, and tracking waits when the backend falls
too far behind."""

from __future__ import annotations

import threading

import pytest
import torch

from slam.config.loader import override
from slam.config.schema import BackendConfig, SystemConfig
from slam.errors import ConfigError
from slam.geometry.lie import SE3
from slam.system.backend import Backend, BackendThread
from slam.system.map import Keyframe, MapState


class _GatedWork:
    """A backend pass that blocks until the test lets it through, one pass per release."""

    def __init__(self, fail: bool = False):
        self.entered = threading.Semaphore(0)
        self.gate = threading.Semaphore(0)
        self.passes = 0
        self.fail = fail

    def __call__(self) -> None:
        self.entered.release()
        assert self.gate.acquire(timeout=10)
        self.passes += 1
        if self.fail:
            raise RuntimeError("pass failed")


def _waiter(thread: BackendThread, max_lag: int) -> threading.Event:
    """Run ``thread.wait_for_lag(max_lag)`` in a helper thread; the event is set when it returns."""
    done = threading.Event()
    threading.Thread(target=lambda: (thread.wait_for_lag(max_lag), done.set()), daemon=True).start()
    return done


def test_tracking_waits_while_the_backend_is_more_than_max_lag_keyframes_behind():
    work = _GatedWork()
    thread = BackendThread(work)
    thread.start()
    try:
        thread.notify()
        assert work.entered.acquire(timeout=10)  # the first pass has taken keyframe 1
        thread.notify()
        thread.notify()
        assert thread.lag == 3
        done = _waiter(thread, max_lag=1)
        assert not done.wait(0.3)
        work.gate.release()  # the first pass ends: keyframes 2 and 3 are still unseen
        assert work.entered.acquire(timeout=10)  # the next pass takes both
        assert thread.lag == 2 and not done.wait(0.3)
        work.gate.release()
        assert done.wait(10) and thread.lag == 0 and work.passes == 2
        assert _waiter(thread, max_lag=1).wait(1)  # nothing behind: no wait
    finally:
        thread.stop()
        work.gate.release()
        thread.join(10)


def test_tracking_does_not_wait_for_the_follow_up_of_a_pass():
    work, follow_up = _GatedWork(), _GatedWork()
    thread = BackendThread(work, follow_up)
    thread.start()
    try:
        thread.notify()
        assert work.entered.acquire(timeout=10)
        done = _waiter(thread, max_lag=0)
        assert not done.wait(0.3)
        work.gate.release()  # the pass's work ends: tracking goes on while the follow-up runs
        assert follow_up.entered.acquire(timeout=10)
        assert done.wait(10) and thread.lag == 0 and follow_up.passes == 0
        follow_up.gate.release()
    finally:
        thread.stop()
        work.gate.release()
        follow_up.gate.release()
        thread.join(10)
    assert follow_up.passes == 1


def test_a_failed_backend_never_holds_tracking_back():
    work = _GatedWork(fail=True)
    thread = BackendThread(work)
    thread.start()
    thread.notify()
    assert work.entered.acquire(timeout=10)
    thread.notify()
    thread.notify()
    done = _waiter(thread, max_lag=1)
    work.gate.release()
    assert done.wait(10)
    thread.join(10)
    assert isinstance(thread.error, RuntimeError) and thread.lag == 3  # the failed pass covers nothing


@pytest.mark.parametrize("max_lag", [0, -1])
def test_max_lag_must_be_positive_or_null(max_lag):
    with pytest.raises(ConfigError, match="max_lag"):
        override(SystemConfig(), f"backend.max_lag={max_lag}")
    assert override(SystemConfig(), "backend.max_lag=null").backend.max_lag is None


class _RecordingLoopCloser:
    """Stands in for :class:`slam.system.loop_closure.LoopCloser`: records the ids of each window
    it is asked to close a loop at, accepts none."""

    def __init__(self) -> None:
        self.windows: list[list[int]] = []

    def close(self, window: list[Keyframe]) -> None:
        self.windows.append([kf.id for kf in window])


def test_loop_closure_looks_at_every_keyframe_a_pass_took_once():
    """Keyframes that arrive together (the backend thread fell behind) are each looked at for a
    loop once a pass has optimised them, oldest first, as the newest of the window that ends at
    it; none twice; those with fewer than 2 keyframes before them, or compacted before their
    turn, are passed over."""
    map_state = MapState()
    closer = _RecordingLoopCloser()
    config = BackendConfig(window=4)
    backend = Backend(None, None, map_state, config, torch.ones(4), (8, 8), None, closer)  # type: ignore[arg-type]

    def add(k: int) -> None:
        features = torch.zeros(2, 2, 2)
        map_state.add_keyframe(
            Keyframe(
                k, k, float(k), torch.zeros(3, 8, 8), SE3.identity(), torch.ones(8, 8), torch.ones(8, 8), None, features
            )
        )

    for k in range(3):
        add(k)
    backend.close_loops()
    assert closer.windows == []  # not optimised yet
    backend.optimised_through = 2  # as a pass over keyframes 0-2 leaves it
    backend.close_loops()
    assert closer.windows == [[0, 1, 2]]
    for k in range(3, 8):  # five at once, the last during the pass that took the others
        add(k)
    backend.optimised_through = 6
    map_state.keyframes[3].compact()  # left the window's reach before its turn
    backend.close_loops()
    backend.close_loops()  # nothing new: nothing looked at again
    assert closer.windows == [[0, 1, 2], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6]]
    backend.optimised_through = 7
    backend.close_loops()
    assert closer.windows[-1] == [4, 5, 6, 7] and backend.loop_checks == 5
