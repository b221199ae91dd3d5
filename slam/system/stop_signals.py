"""The signals that stop a run: SIGINT (Ctrl-C), SIGTERM (what ``timeout``, ``kill``, docker,
systemd and Slurm send) and SIGHUP (a closed terminal). Each ends a run the way Ctrl-C does:
tracking stops and whatever was computed is saved (see :func:`slam.system.run.run_slam`)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

#: the signals that stop a run besides SIGINT (those this platform has)
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Terminated(KeyboardInterrupt):
    """A run stopped by SIGTERM or SIGHUP: handled as Ctrl-C is; the process should exit with
    status 128 + ``signum``, as one killed by the signal would."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _handlers(signals: tuple[signal.Signals, ...], handler: Callable[[int, object], None]) -> Iterator[None]:
    """``handler`` for ``signals`` while inside, the previous handlers after; an ignored SIGHUP
    stays ignored (``nohup`` asks for that; SIGINT and SIGTERM are handled even where a
    background shell ignored them); nothing outside the main thread (only it may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hangup = getattr(signal, "SIGHUP", None)
    previous = {
        signum: signal.signal(signum, handler)
        for signum in signals
        if not (signum == hangup and signal.getsignal(signum) == signal.SIG_IGN)
    }
    try:
        yield
    finally:
        for signum, old in previous.items():
            if old is not None:  # None: a handler set outside Python, which cannot be put back
                signal.signal(signum, old)


class SavingGuard:
    """Stop signals for one run, installed while inside (main thread only): until
    :meth:`saving` is called, SIGINT raises KeyboardInterrupt and SIGTERM and SIGHUP raise
    :class:`Terminated`, which stops tracking; after it, the first signal prints "saving, please
    wait" and is otherwise ignored, so that the outputs are written whole; the next one raises as
    before and aborts the save (each output file stays whole or absent: see
    :mod:`slam.io.atomic`)."""

    #: what the first signal during saving prints on stderr
    MESSAGE = "v2d: saving, please wait (another signal aborts the save)\n"

    def __init__(self):
        self._saving = False
        self._warned = False
        self._installed: contextlib.AbstractContextManager[None] | None = None

    def saving(self) -> None:
        """From now on the first signal is only reported."""
        self._saving = True

    def _handle(self, signum: int, _frame: object) -> None:
        if self._saving and not self._warned:
            self._warned = True
            os.write(2, self.MESSAGE.encode())  # stderr; print() may be mid-write
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    def __enter__(self) -> SavingGuard:
        self._installed = _handlers((signal.SIGINT, *STOP_SIGNALS), self._handle)
        self._installed.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._installed is not None  # entered
        self._installed.__exit__(None, None, None)


def stop_behind(error: BaseException) -> BaseException | None:
    """The :class:`Terminated` or KeyboardInterrupt that ``error`` was raised while handling (its
    cause or context, at any depth), or None: a signal that arrives while a library runs may come
    out as that library's own error (an extension module's import fails with ImportError)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, (Terminated, KeyboardInterrupt)):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def raising_on_stop_signals() -> contextlib.AbstractContextManager[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread, as SIGINT
    raises KeyboardInterrupt."""
    return _handlers(STOP_SIGNALS, _raise_terminated)


def calling_on_stop_signals(callback: Callable[[int], None]) -> contextlib.AbstractContextManager[None]:
    """While inside, SIGINT, SIGTERM and SIGHUP call ``callback(signum)`` instead (a viewer's event
    loop: it asks the run to stop and save)."""
    return _handlers((signal.SIGINT, *STOP_SIGNALS), lambda signum, _frame: callback(signum))
