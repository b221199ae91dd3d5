"""`v2d demo`: SLAM on the built-in synthetic scene (no download), outputs under outputs/demo."""

from __future__ import annotations

import argparse

from apps.run import add_run_arguments, run


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run SLAM on the built-in synthetic scene (no download needed)",
        description="`v2d run synthetic` with the demo's defaults: a hand-held room sequence, outputs in "
        "outputs/demo (replaced on each run).",
    )
    add_run_arguments(parser, default_source="synthetic")
    parser.set_defaults(func=run, out="outputs/demo", max_frames=90, overwrite=True)  # replaces its own run
