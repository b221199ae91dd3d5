"""The process's allocator and thread settings: glibc's malloc arenas can be limited (where glibc
is), and a thread's torch thread count pinned."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest


def _has_glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        return False


@pytest.mark.skipif(not _has_glibc(), reason="glibc's mallopt is not here")
def test_the_malloc_arenas_can_be_limited_in_a_fresh_process():
    code = "from slam.system.machine import limit_allocator_arenas; print(limit_allocator_arenas(2))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_a_pinned_thread_keeps_its_torch_threads_whatever_another_thread_sets_later():
    """torch gives a thread the process-wide count at its first parallel work, over what the
    thread set before; pin_torch_threads makes the thread's own count stick."""
    code = """
import threading, torch
from slam.system.machine import pin_torch_threads
torch.set_num_threads(2)
seen = {}
for pinned in (False, True):
    ready, go = threading.Event(), threading.Event()
    def work():
        pin_torch_threads(1) if pinned else torch.set_num_threads(1)
        ready.set(); go.wait()
        seen[pinned] = torch.get_num_threads()
    thread = threading.Thread(target=work); thread.start(); ready.wait()
    torch.set_num_threads(3); torch.set_num_threads(2)  # another thread's count, meanwhile
    go.set(); thread.join()
print(seen[False], seen[True])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["2", "1"]  # unpinned, the thread took the process-wide 2
