"""The `v2d` command: one entry point, one module per subcommand.

Each subcommand module in :data:`SUBCOMMANDS` defines ``register(subparsers)``, which adds its
parser and sets ``func`` to a function taking the parsed arguments and returning an exit code.
Subcommand modules import heavy packages (torch, open3d, Qt) inside their functions, so that
``v2d --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from slam import __version__
from slam.errors import V2DError

SUBCOMMANDS = ("run", "demo", "download", "calibrate", "evaluate", "bench", "train")


def positive_int(text: str) -> int:
    """argparse ``type`` for a count of at least 1: the integer in ``text``, or an
    ArgumentTypeError naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="v2d", description="DeepV2D SLAM: monocular SLAM with learned depth and motion."
    )
    parser.add_argument("--version", action="version", version=f"v2d {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"apps.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``v2d`` with ``argv``; input errors print one line and return 2; Ctrl-C returns 130,
    SIGTERM and SIGHUP 128 + the signal's number, each after the command saved what it had."""
    from slam.system.stop_signals import Terminated, raising_on_stop_signals, stop_behind

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as given, for records such as BENCHMARKS.md
    try:
        try:
            with raising_on_stop_signals():
                return int(args.func(args) or 0)
        except Exception as err:  # a signal that surfaced as another error is that signal
            signalled = stop_behind(err)
            if signalled is None:
                raise
            # what the signal interrupted may be left half set up (open3d, its import cut short,
            # makes the interpreter's exit fail with status 1): leave without the exit handlers;
            # whatever the command saved is on disk already (every output is fsynced)
            code = 128 + signalled.signum if isinstance(signalled, Terminated) else 130
            print(f"v2d {args.command}: stopped by {signalled or 'SIGINT'}", file=sys.stderr, flush=True)
            os._exit(code)
    except V2DError as err:
        print(f"v2d {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Terminated as err:
        print(f"v2d {args.command}: stopped by {err}", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:
        print(f"v2d {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
