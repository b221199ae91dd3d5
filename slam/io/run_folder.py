"""The output folder of a run: checked before any work starts, and replaced only on request.

A folder holds a run when it has a ``stats.json`` (a run writes one, marked incomplete, before
anything else, and rewrites it last) or a file being written (``.NAME.partial``, see
:mod:`slam.io.atomic`). A folder that holds a run is replaced whole only with ``overwrite``, its
old files removed first, so that no file of an earlier run sits beside the new ones. A folder
that holds other files is never used: it may be anything of the user's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from slam.errors import ExportError
from slam.io.atomic import PARTIAL_SUFFIX

#: the file every run folder has (see :mod:`slam.system.run`)
STATS_FILE = "stats.json"


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` (an existing folder) holds a run's outputs, complete or not."""
    return (folder / STATS_FILE).is_file() or any(
        entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX) for entry in folder.iterdir()
    )


def _probe_writable(folder: Path) -> None:
    """Raise OSError unless a file can be created in the existing ``folder``."""
    probe = folder / f".v2d-probe-{os.getpid()}"
    probe.touch()
    probe.unlink()


def _probe_creatable(folder: Path) -> None:
    """Raise OSError unless the missing ``folder`` can be created (it is created and removed
    again, with the parents it needed)."""
    missing = [folder]
    while not missing[-1].parent.exists() and missing[-1].parent != missing[-1]:
        missing.append(missing[-1].parent)
    parent = missing[-1].parent
    if not parent.is_dir():
        raise NotADirectoryError(20, f"{parent} is not a folder")
    folder.mkdir(parents=True)
    for created in missing:
        created.rmdir()


def check_output_folder(folder: str | Path, overwrite: bool = False) -> None:
    """Raise :class:`ExportError` (one line) unless a run can write to ``folder``: it is new (and
    can be created), empty, or holds a run and ``overwrite`` is set. Creates nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"--out {folder} is not a folder")
    try:
        if folder.is_dir():
            has_entries = next(folder.iterdir(), None) is not None
            if has_entries and not holds_run(folder):
                raise ExportError(f"--out {folder} holds files that are not a v2d run's; choose a new or empty folder")
            if has_entries and not overwrite:
                raise ExportError(
                    f"--out {folder} holds a previous run; add --overwrite to replace it, or choose another folder"
                )
            _probe_writable(folder)
        else:
            _probe_creatable(folder)
    except OSError as err:
        raise ExportError(f"--out {folder} cannot be written: {err.strerror or err}") from None


def prepare_output_folder(folder: str | Path, overwrite: bool = False) -> None:
    """Check ``folder`` (see :func:`check_output_folder`), remove a previous run's files when
    ``overwrite``, and create it."""
    folder = Path(folder)
    check_output_folder(folder, overwrite)
    try:
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(f"--out {folder}: cannot replace the previous run: {err.strerror or err}") from None
