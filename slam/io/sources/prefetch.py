"""Reading ahead: a source's frames decoded and resized in a background thread while the
previous ones are tracked, so that reading (a 640 x 480 PNG takes about 6 ms to decode here)
overlaps tracking on another core instead of adding to it. The decoders (OpenCV, PyAV) release
the GIL.

Live sources (a webcam) read in their own capture thread already and keep only the newest frame:
reading ahead would add latency, so they are passed through as they are.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

from slam.io.frame import Frame

#: frames read ahead: enough to absorb an uneven decode time, few enough to cost little memory
DEFAULT_AHEAD = 3

_END = object()


class Prefetcher:
    """Iterate ``frames`` in a background thread, at most ``ahead`` frames in advance.

    Iterating the prefetcher yields the same frames in the same order; an error raised while
    reading is raised by the iteration at the point where it happened, after the frames read
    before it. Reading starts with the iteration. Use it as a context manager: leaving the
    ``with`` block (the consumer stopped early, or failed) stops the reading thread and waits
    for it, so the source can be closed safely afterwards.
    """

    def __init__(self, frames: Iterable[Frame], ahead: int = DEFAULT_AHEAD):
        if ahead < 1:
            raise ValueError(f"ahead must be >= 1, got {ahead}")
        self._frames = frames
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name="v2d-reader", daemon=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Frame]:
        if self._thread.ident is None:
            self._thread.start()
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        """Stop reading (frames not yet consumed are dropped) and wait for the thread."""
        self._stopping.set()
        while self._thread.is_alive():
            try:  # unblock a reader waiting for room in the queue
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)

    def _put(self, item: object) -> bool:
        """Queue ``item`` unless stopping; False when stopped."""
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        frames = iter(self._frames)
        try:
            for frame in frames:
                if not self._put(frame):
                    return
        except BaseException as err:  # handed to the consumer, raised where the reading failed
            self._put(err)
            return
        finally:  # a generator stopped early runs its clean-up here, in the thread that ran it
            close = getattr(frames, "close", None)
            if close is not None:
                close()
        self._put(_END)
