"""`v2d train`: train the learned depth and motion networks (see training/trainer.py); under
`torchrun --nproc_per_node N -m apps.cli train ...` the processes train together (DDP)."""

from __future__ import annotations

import argparse
import logging
import shlex


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the learned DeepV2D networks (synthetic data on the fly, or a dataset of yours)",
        description="Two-stage DeepV2D training (motion, then joint) with checkpoints, resume, a CSV log and "
        "validation on a fixed synthetic set. Writes last.pt, best.pt, model_card.md, train_log.csv and "
        "validation.csv to --out. Run it under torchrun for several processes or GPUs.",
    )
    parser.add_argument(
        "--config", help="YAML file with training sections (see training/config.py; e.g. configs/train_lite.yaml)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one configuration value (repeatable), e.g. --set schedule.batch_size=4",
    )
    parser.add_argument("--out", default="outputs/train", help="run folder (default: outputs/train)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--init", metavar="FILE", help="start the networks from these weights (e.g. weights/lite.pt)")
    parser.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="stop after this step (the schedule keeps its length; --resume goes on later)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: one GPU per process)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    parser.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """The training configuration from defaults, --config and --set."""
    from slam.config.loader import configure
    from training.config import TrainConfig

    return configure(TrainConfig(), args.config, args.set)


def run(args: argparse.Namespace) -> int:
    from training.trainer import Trainer

    logging.basicConfig(level=logging.INFO, format="v2d train: %(message)s")
    config = build_config(args)
    command = "v2d " + shlex.join(getattr(args, "argv", ["train"]))
    trainer = Trainer(
        config,
        args.out,
        device=args.device,
        resume=args.resume,
        init=args.init,
        command=command,
        progress=not args.no_progress,
        stop_at=args.stop_at,
    )
    trainer.run()
    if trainer.process.is_main:
        print(f"trained to step {trainer.step}; best validation score {trainer.best_score:.4f}; wrote {args.out}/")
    return 0
