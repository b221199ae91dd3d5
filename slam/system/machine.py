"""Facts about the machine and software, for BENCHMARKS.md and stats.json."""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from slam import __version__


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else platform.processor())."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_summary() -> dict:
    """CPU, core count, torch version and threads, Python, and this software's version."""
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "v2d": __version__,
    }


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux: VmHWM)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def release_free_memory() -> None:
    """Hand memory freed by the allocator back to the system (glibc's malloc_trim; nothing
    elsewhere). Long runs otherwise keep the peak of every short-lived buffer in their
    resident size."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


#: glibc's mallopt parameter for the most malloc arenas (malloc.h)
M_ARENA_MAX = -8


def limit_allocator_arenas(arenas: int) -> bool:
    """Let glibc's malloc make at most ``arenas`` arenas for the whole process (it makes up to
    8 per core as threads allocate at once, each keeping its own freed memory): call it before
    the threads start. Whether it was set (False where there is no glibc)."""
    libc = _glibc()
    return libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc with the signatures of malloc_trim and mallopt, or None where there is none."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


def limit_library_threads(threads: int) -> None:
    """Let the thread pools of the libraries under the run (the BLAS behind numpy and scipy,
    through threadpoolctl where it is installed; OpenCV's, which runs DIS flow) use at most
    ``threads`` threads each, process-wide. Their work comes in small pieces (fusion's products
    of tall matrices by 3 x 3 ones, a DIS flow at 120 x 160) from threads that already share the
    cores, and a pool's extra threads spin on a core after each piece, waiting for the next
    (docs/tuning.md)."""
    import cv2

    cv2.setNumThreads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads, user_api="blas")


def pin_torch_threads(count: int) -> None:
    """Give this thread ``count`` torch threads, to keep whatever other threads set. torch applies
    the process-wide count (the last that any thread set) to a thread when it first asks for
    its count or works in parallel, over a count the thread set before that: asking first makes
    the thread's own count stick."""
    import torch

    torch.get_num_threads()  # this thread takes the process-wide count now, not later
    torch.set_num_threads(count)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the ``with`` block with ``count`` torch threads in this thread, then give back the
    count it had (for work that other threads' idle cores can take: the cold start, the run's
    end)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
