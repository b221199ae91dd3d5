"""The process's allocator settings: glibc's malloc arenas can be limited (where glibc is)."""

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
