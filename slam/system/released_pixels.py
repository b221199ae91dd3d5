"""The pixels of keyframes released from memory, kept on disk so that the fused map can be rebuilt
when a loop closure moves keyframes that were fused already (see :mod:`slam.system.archive`).

Each keyframe is one uncompressed ``.npz`` in a temporary folder: its image (H, W, 3) uint8 RGB,
and its depth and confidence (H, W) float16 (map units when released; half the float32 size,
as the map itself keeps them once compacted). The folder is removed when the store is closed,
garbage collected or the interpreter exits. A process killed outright (SIGKILL, a crash) cannot
remove its folder: the folder's name carries the process id, and a new store removes the folders
of processes that no longer exist and that have not changed for :data:`STALE_SECONDS`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from slam.system.map import KeyframeView

#: prefix of a store's folder in the system's temporary folder; the process id follows
PREFIX = "v2d-keyframes-"

#: a dead process's folder unchanged for this long is left over (a shared temporary folder may
#: hold those of processes in other containers, whose ids this one does not see)
STALE_SECONDS = 3600.0


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def remove_left_over(folder: Path, now: float | None = None) -> list[Path]:
    """Remove the stores in ``folder`` left by processes that no longer run and unchanged for
    :data:`STALE_SECONDS` before ``now`` (default: the time now); returns them."""
    now = time.time() if now is None else now
    removed = []
    for path in folder.glob(f"{PREFIX}*-*"):
        pid = path.name[len(PREFIX) :].split("-", 1)[0]
        try:
            stale = now - path.stat().st_mtime > STALE_SECONDS
        except OSError:
            continue
        if pid.isdigit() and stale and not _running(int(pid)) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class ReleasedPixels:
    """Keyframes' pixels by keyframe id, on disk (see the module docstring)."""

    def __init__(self) -> None:
        remove_left_over(Path(tempfile.gettempdir()))
        self._folder = tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-")
        self._ids: set[int] = set()

    def __contains__(self, keyframe_id: int) -> bool:
        return keyframe_id in self._ids

    def _path(self, keyframe_id: int) -> Path:
        return Path(self._folder.name) / f"{keyframe_id:06d}.npz"

    def put(self, view: KeyframeView) -> None:
        """Store the pixels of ``view`` (a view with them: image, depth and confidence)."""
        assert view.image is not None and view.depth is not None and view.confidence is not None  # with pixels
        np.savez(
            self._path(view.id),
            image=view.image,
            depth=view.depth.astype(np.float16),
            confidence=view.confidence.astype(np.float16),
        )
        self._ids.add(view.id)

    def get(self, keyframe_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored image (H, W, 3) uint8 and depth and confidence (H, W) float32 of a keyframe."""
        with np.load(self._path(keyframe_id)) as stored:
            return stored["image"], stored["depth"].astype(np.float32), stored["confidence"].astype(np.float32)

    def close(self) -> None:
        """Remove the folder and everything in it."""
        self._folder.cleanup()
        self._ids.clear()
