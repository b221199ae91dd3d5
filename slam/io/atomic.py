"""Output files that are either whole or absent: each is written to a temporary name in its own
folder, flushed to the disk, and renamed onto its final name (a rename within one folder is
atomic on POSIX and Windows). A run killed while writing, a full disk or an error leaves the
previous file (or none) and never a truncated one; the temporary file is removed on any error
or interruption (a SIGKILL leaves it behind, hidden: ``.NAME.partial``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from slam.errors import ExportError

#: the suffix of a file being written (hidden: its name starts with a dot)
PARTIAL_SUFFIX = ".partial"


def partial_path(path: Path) -> Path:
    """The temporary name ``path`` is written to before the rename."""
    return path.with_name(f".{path.name}{PARTIAL_SUFFIX}")


@contextlib.contextmanager
def atomic_file(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """A file opened for writing (text, UTF-8, or ``binary``) that becomes ``path`` when the
    block ends without an exception; parent folders are created. Any exception inside (or a
    KeyboardInterrupt) removes the temporary file and propagates; an OS error (no permission, a
    full disk, ``path`` is a folder) becomes :class:`ExportError` naming ``path``."""
    path = Path(path)
    temporary = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(temporary, "wb" if binary else "w", encoding=None if binary else "utf-8")
    except OSError as err:
        raise ExportError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        temporary.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise ExportError(f"cannot write {path}: {err.strerror or err}") from None
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_file`."""
    with atomic_file(path) as handle:
        handle.write(text)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_file`."""
    with atomic_file(path, binary=True) as handle:
        handle.write(data)
