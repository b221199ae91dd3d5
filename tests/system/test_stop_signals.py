"""The signals that stop a run: SIGTERM raises Terminated while the handlers are in place, an
ignored SIGHUP (nohup) stays ignored, and the previous handlers come back."""

from __future__ import annotations

import signal

import pytest

from slam.system.stop_signals import Terminated, calling_on_stop_signals, raising_on_stop_signals, stop_behind


def test_sigterm_raises_terminated_and_an_ignored_sighup_stays_ignored():
    term_before = signal.getsignal(signal.SIGTERM)
    hup_before = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup leaves it
    try:
        with raising_on_stop_signals():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            with pytest.raises(Terminated) as caught:
                signal.raise_signal(signal.SIGTERM)
            assert caught.value.signum == signal.SIGTERM and isinstance(caught.value, KeyboardInterrupt)
        assert signal.getsignal(signal.SIGTERM) == term_before
    finally:
        signal.signal(signal.SIGHUP, hup_before)


def test_a_viewer_gets_every_stop_signal_as_a_call_even_where_a_shell_ignored_sigint():
    received = []
    int_before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a background job of a script
    try:
        with calling_on_stop_signals(received.append):
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGTERM)
        assert received == [signal.SIGINT, signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, int_before)


def test_a_signal_that_surfaced_as_another_error_is_found_behind_it():
    """SIGTERM during an extension module's import comes out as ImportError ("initialization
    failed") raised while handling Terminated: the CLI treats it as the signal."""
    try:
        try:
            raise Terminated(signal.SIGTERM)
        except Terminated:
            raise ImportError("initialization failed")  # noqa: B904 - what the import machinery does
    except ImportError as err:
        found = stop_behind(err)
    assert isinstance(found, Terminated) and found.signum == signal.SIGTERM
    assert stop_behind(ValueError("no signal")) is None
