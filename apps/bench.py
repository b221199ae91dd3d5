"""`v2d bench`: the benchmark suite. Each suite measures on this machine and rewrites its own
section of BENCHMARKS.md (between ``<!-- bench:NAME -->`` markers), stamped with the command,
the machine and the date, leaving the other sections as they are."""

from __future__ import annotations

import argparse
import datetime
import importlib
import re
import shlex
from pathlib import Path

from apps.cli import positive_int
from slam.errors import V2DError
from weights import LITE

#: the shipped learned weights: the default of ``--weights`` where present
SHIPPED_WEIGHTS = LITE
#: what a suite's learned rows say without weights
NO_WEIGHTS = "no weights: train with v2d train"

#: name -> (what it measures, module in apps.benchmarks whose ``suite(args)`` returns the section's markdown)
SUITES: dict[str, tuple[str, str]] = {
    "renderer": ("synthetic scene rendering speed", "renderer"),
    "depth": ("depth modules: speed, and learned vs classical accuracy with ground-truth poses", "depth"),
    "motion": ("motion modules: speed, and learned vs classical relative-pose accuracy", "motion"),
    "alternation": ("one round of the full DeepV2D alternation, every module family", "alternation"),
    "slam": ("the SLAM system on synthetic and real sequences: ATE, tracking, fps, memory", "slam"),
    "long": (
        "long-term SLAM: sequences played there and back and closed loops, with and without loop closure, "
        "and with the final global bundle adjustment",
        "long",
    ),
    "unseen": ("the default run on synthetic scenes the defaults were not chosen on (seeds 1-5)", "unseen"),
    "map": ("the map against the sensor: keyframe depth, the exported cloud and mesh", "map"),
    "peers": ("COLMAP and ORB odometry beside the default run on the real sequences", "peers"),
    "profile": ("wall time per stage of the default run on every sequence", "profile"),
    "endurance": ("memory over a 10,000-frame synthetic run", "endurance"),
    "viewer": ("the live Qt viewer's cost in end-to-end fps on tum_fr1_rpy", "viewer"),
}


#: the peers suite's methods beside ours (see apps.benchmarks.peers), by the name --peers takes
PEERS = ("colmap", "orb")


def weights_description(args: argparse.Namespace) -> str:
    """One sentence naming the learned weights of ``args`` (see :func:`run`), or saying there are
    none (the suites' learned rows then say :data:`NO_WEIGHTS`)."""
    if args.checkpoint is None:
        return f"No learned weights were given ({NO_WEIGHTS})."
    step = args.checkpoint.get("summary", {}).get("step")
    return f"Learned weights: `{args.weights}`" + (f" (training step {step})." if step is not None else ".")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmark suite and update BENCHMARKS.md",
        description="Measure on this machine and rewrite the suites' sections of BENCHMARKS.md.",
    )
    parser.add_argument(
        "--suite",
        action="append",
        choices=sorted(SUITES),
        help="suite to run (repeatable; default: all): "
        + "; ".join(f"{name}: {what}" for name, (what, _) in SUITES.items()),
    )
    parser.add_argument(
        "--peers",
        action="append",
        choices=PEERS,
        help="peers the peers suite runs (repeatable; default: all); given alone, runs the peers suite only",
    )
    parser.add_argument("--output", default="BENCHMARKS.md", help="markdown file to update (default: BENCHMARKS.md)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (for smoke tests; numbers are noisier)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=2,
        help="torch threads of the benchmark's own process (default: 2, this project's CPU budget); "
        "the `v2d run` processes it starts keep their configuration's",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="learned (lite) checkpoint scored beside the classical modules (default: "
        "weights/lite.pt of the repository when it exists; without weights the learned rows "
        "say so)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen suites. Suites read ``args.quick``, ``args.weights`` (the checkpoint's path
    or None) and ``args.checkpoint`` (its contents, read once here, or None)."""
    import torch

    from networks.factory import load_checkpoint
    from slam.system.machine import machine_summary

    torch.set_num_threads(args.threads)
    if args.weights is None and SHIPPED_WEIGHTS.is_file():
        args.weights = SHIPPED_WEIGHTS
    args.checkpoint = load_checkpoint(args.weights) if args.weights is not None else None
    machine = machine_summary()
    output = Path(args.output)
    command = "v2d " + shlex.join(args.argv)
    for name in args.suite or (["peers"] if args.peers else list(SUITES)):
        body = importlib.import_module(f"apps.benchmarks.{SUITES[name][1]}").suite(args)
        stamp = (
            f"Command: `{command}`; machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
            f"with {machine['torch_threads']} threads in the benchmark's process (a `v2d run` it starts: "
            f"`modules.threads` and `modules.background_threads` per thread); v2d {machine['v2d']}; "
            f"date: {datetime.date.today().isoformat()}."
        )
        update_section(output, name, f"{body}\n\n{stamp}")
        print(f"{name}:\n{body}\n")
    print(f"updated {output}")
    return 0


_HEADER = """# Benchmarks

Every number here is measured by `v2d bench` on the machine named under its table; each suite
rewrites its own section. Numbers are not from timed tests.
"""


def update_section(path: Path, name: str, content: str) -> None:
    """Replace (or append) the section of ``path`` between this suite's markers."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = path.read_text() if path.is_file() else _HEADER
    block = f"{start}\n{content}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    try:
        path.write_text(text)
    except OSError as err:
        raise V2DError(f"cannot write {path}: {err.strerror}") from None
