"""Reading ahead (slam.io.sources.prefetch): same frames, same order, errors where they happened,
and an early stop leaves no reading thread behind."""

import threading
import time

import pytest

from slam.io.sources.prefetch import Prefetcher


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "v2d-reader"]


def test_yields_every_frame_in_order_while_reading_ahead():
    read = []

    def frames():
        for k in range(20):
            read.append(k)
            yield k

    seen = []
    with Prefetcher(frames(), ahead=3) as prefetched:
        for frame in prefetched:
            if frame == 0:
                time.sleep(0.2)  # a slow consumer: the reader runs ahead, bounded by the queue
                assert 3 <= len(read) <= 5
            seen.append(frame)
    assert seen == list(range(20))
    assert not _reader_threads()


def test_a_reading_error_is_raised_after_the_frames_before_it():
    def frames():
        yield 0
        yield 1
        raise OSError("corrupt frame 2")

    seen = []
    with pytest.raises(OSError, match="corrupt frame 2"), Prefetcher(frames()) as prefetched:
        for frame in prefetched:
            seen.append(frame)
    assert seen == [0, 1]


def test_stopping_early_closes_the_source_iterator_and_the_thread():
    closed = threading.Event()

    def frames():
        try:
            yield from range(1000)
        finally:
            closed.set()

    with Prefetcher(frames(), ahead=2) as prefetched:
        for frame in prefetched:
            if frame == 5:
                break
    assert closed.wait(1.0)
    assert not _reader_threads()


def test_needs_room_for_one_frame():
    with pytest.raises(ValueError, match="ahead"):
        Prefetcher(iter([]), ahead=0)
