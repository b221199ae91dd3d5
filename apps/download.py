"""`v2d download`: fetch a public sequence from its official site into a cache folder, resumable,
checked and unpacked, and print the `v2d run` command for it (see :mod:`slam.io.datasets`)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

#: where sequences go unless --cache or $V2D_DATA says otherwise
DEFAULT_CACHE = Path.home() / ".cache" / "v2d" / "datasets"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download",
        help="fetch a public sequence (TUM RGB-D, KITTI odometry, EuRoC) and print its v2d run command",
        description="Fetch a public sequence from its official site into a cache folder (resumable: run "
        "again after an interruption), check it, unpack it and print the v2d run command. KITTI "
        "publishes the odometry images of all sequences in one archive of about 22 GB.",
    )
    parser.add_argument("dataset", choices=("tum", "kitti", "euroc"), help="which benchmark")
    parser.add_argument("name", help="the sequence: tum freiburg1_rpy (or fr1_rpy), kitti 07, euroc MH_01_easy")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"folder to keep the sequences in (default: $V2D_DATA, else {DEFAULT_CACHE})",
    )
    parser.add_argument("--url", help="fetch the sequence's archive from this address instead (a mirror)")
    parser.add_argument("--sha256", help="the archive's expected SHA-256, checked before it is unpacked")
    parser.set_defaults(func=run)


class _Report:
    """Bytes fetched on stderr: one line rewritten on a terminal, a line every 10 s in a log."""

    def __init__(self) -> None:
        self.terminal = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < (0.5 if self.terminal else 10.0):
            return
        self.last = now
        of_total = f" of {total / 1e6:.1f} MB ({100 * done / total:.0f}%)" if total else " MB"
        text = f"downloaded {done / 1e6:.1f}{of_total}"
        print(f"\r{text}" if self.terminal else text, end="" if self.terminal else "\n", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from slam.io.datasets import download

    cache = args.cache or Path(os.environ.get("V2D_DATA") or DEFAULT_CACHE)
    report = _Report()
    folder = download(args.dataset, args.name, cache, args.url, args.sha256, report)
    if report.terminal and report.last:
        print(file=sys.stderr)
    print(f"{folder}\nrun it with: v2d run {shlex.quote(str(folder))}")
    return 0
