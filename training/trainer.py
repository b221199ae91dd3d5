"""The training loop of ``v2d train``: the two-stage schedule, AdamW with warm-up and cosine decay,
gradient clipping, checkpoints with resume, a CSV log, validation on the fixed synthetic set, and
data-parallel training over torchrun's processes (DistributedDataParallel).

Files written to the output folder (by the main process):
- ``last.pt``: networks, optimizer, step and wall time; ``--resume`` continues from it.
- ``best.pt``: the networks with the best validation score so far (a checkpoint ``v2d run
  --weights`` loads), with ``model_card.md`` beside it.
- ``train_log.csv`` (losses and metrics every ``run.log_every`` steps), ``validation.csv``, and
  ``curves.png`` (the training curve, redrawn at every validation).
- ``config.yaml``: the configuration of the run.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import signal
import time
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel

from networks.factory import load_checkpoint, save_checkpoint
from slam.config.loader import to_dict
from slam.errors import V2DError
from training import distributed
from training.clips import Clip
from training.config import TrainConfig
from training.curves import plot_training_curves
from training.loader import batches
from training.model import DeepV2DTraining, build_networks
from training.validation import evaluate_modules, validation_clips

log = logging.getLogger(__name__)


def learning_rate_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of ``schedule.lr`` at ``step``: linear warm-up, then a cosine down to
    ``final_lr_ratio`` at the last step."""
    schedule = config.schedule
    if step < schedule.warmup:
        return (step + 1) / schedule.warmup
    progress = min(1.0, (step - schedule.warmup) / max(1, config.total_steps - schedule.warmup))
    return schedule.final_lr_ratio + (1 - schedule.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _load_networks(model: DeepV2DTraining, checkpoint: dict, source: str, allow_new_layers: bool = False) -> None:
    """Load both networks' weights from ``checkpoint``. ``allow_new_layers`` (for ``--init``):
    layers of the current architecture that ``checkpoint`` lacks keep their fresh
    initialisation, with a warning; otherwise (resuming) every layer must be there."""
    for name in ("depth", "motion"):
        stored = checkpoint.get(name)
        if stored is None:
            raise V2DError(f"{source} holds no {name} network")
        try:
            missing, unexpected = getattr(model, name).load_state_dict(stored["state_dict"], strict=False)
        except RuntimeError as err:  # a stored tensor of another shape
            missing, unexpected = [], [str(err).splitlines()[-1].strip()]
        if unexpected or (missing and not allow_new_layers):
            problem = unexpected[0] if unexpected else f"it lacks {', '.join(missing)}"
            raise V2DError(
                f"{source}: its {name} network does not fit model.size={model.config.model.size} ({problem})"
            )
        if missing:  # layers this architecture adds start from their fresh initialisation
            log.warning("%s: %s network layers absent there start fresh: %s", source, name, ", ".join(missing))


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _machine_text(machine: dict) -> str:
    device = machine["cuda"] or f"{machine['cpu']} ({machine['cores']} cores)"
    return f"{device}, {machine['torch_threads']} torch thread(s)"


def write_model_card(path: Path, summary: dict) -> None:
    """A Markdown model card from a training summary (command, seed, data, steps, wall time,
    validation metrics, configuration)."""
    metrics = summary["validation"]
    lines = [
        f"# DeepV2D {summary['model_size']} weights",
        "",
        "Trained by this project's `v2d train` on CPU, from the synthetic generator only "
        "(never on the evaluation data).",
        "",
        "| | |",
        "|---|---|",
        f"| command | `{summary['command']}` |",
        f"| seed | {summary['seed']} |",
        f"| initialised from | {summary['init'] or 'random weights (the seed)'} |",
        f"| data | {summary['data']} |",
        f"| steps | {summary['step']} (batch {summary['batch_size']} x {summary['processes']} process(es)) |",
        f"| wall time | {summary['wall_time_h']:.2f} h on {_machine_text(summary['machine'])} |",
        f"| torch | {summary['torch']} |",
        "",
        "## Validation (fixed synthetic set, training/validation.py)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value:.4f} |" for name, value in metrics.items()]
    lines += [
        "",
        "## Configuration",
        "",
        "```yaml",
        yaml.safe_dump(summary["config"], sort_keys=False).strip(),
        "```",
        "",
    ]
    path.write_text("\n".join(lines))


class Trainer:
    """One training run into ``out_dir``. ``resume``: continue from ``out_dir/last.pt``;
    ``init``: start the networks from a checkpoint (e.g. the shipped weights) with a fresh
    optimizer and schedule. ``command``: the command line, recorded in the model card.
    ``stop_at``: stop after this step (the schedule still spans the configured steps; a later
    ``resume`` goes on), so long schedules can be trained in pieces."""

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | Path,
        device: str = "cpu",
        resume: bool = False,
        init: str | None = None,
        command: str = "v2d train",
        progress: bool = True,
        stop_at: int | None = None,
    ):
        self.config = config
        self.out = Path(out_dir)
        self.command = command
        self.progress = progress
        self.stop_at = config.total_steps if stop_at is None else min(stop_at, config.total_steps)
        self.process = distributed.start(device)
        torch.set_num_threads(config.run.threads)
        torch.manual_seed(config.run.seed)  # the same initial weights in every process
        self.model = DeepV2DTraining(*build_networks(config), config).to(self.process.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.schedule.lr, weight_decay=config.schedule.weight_decay
        )
        self.step = 0
        self.wall_time = 0.0
        self.best_score = math.inf
        last = self.out / "last.pt"
        if resume:
            if not last.is_file():
                raise V2DError(f"--resume: no checkpoint {last} to resume from")
            self._restore(load_checkpoint(last))
        elif last.is_file():
            raise V2DError(
                f"{self.out} already holds a training run (last.pt): pass --resume to continue it, "
                "or choose another --out"
            )
        elif init:
            _load_networks(self.model, load_checkpoint(init), init, allow_new_layers=True)
        self.init = init
        self.wrapped = DistributedDataParallel(self.model) if self.process.distributed else self.model
        self._validation: list[Clip] | None = None

    # ------------------------------------------------------------------ checkpoints
    def _restore(self, checkpoint: dict) -> None:
        _load_networks(self.model, checkpoint, str(self.out / "last.pt"))
        state = checkpoint.get("training") or {}
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.step = int(state.get("step", 0))
        self.wall_time = float(state.get("wall_time", 0.0))
        self.best_score = float(state.get("best_score", math.inf))
        log.info("resumed %s at step %d", self.out, self.step)

    def _training_state(self) -> dict:
        return {"step": self.step, "wall_time": self.wall_time, "best_score": self.best_score}

    def save_last(self) -> None:
        """Write ``last.pt`` atomically (a crash mid-write leaves the previous one)."""
        if not self.process.is_main:
            return
        temporary = self.out / "last.pt.tmp"
        save_checkpoint(
            temporary,
            self.model.depth,
            self.model.motion,
            extra={
                "training": self._training_state(),
                "optimizer": self.optimizer.state_dict(),
                "config": to_dict(self.config),
            },
        )
        os.replace(temporary, self.out / "last.pt")

    def _summary(self, metrics: dict[str, float]) -> dict:
        from slam.system.machine import machine_summary

        data = self.config.data
        return {
            "model_size": self.config.model.size,
            "command": self.command,
            "seed": self.config.run.seed,
            "data": "synthetic generator (rooms and streets, on the fly)"
            if data.kind == "synthetic"
            else f"{data.kind} at {data.path}",
            "step": self.step,
            "batch_size": self.config.schedule.batch_size,
            "processes": self.process.world_size,
            "wall_time_h": self.wall_time / 3600.0,
            "machine": machine_summary(),
            "torch": str(torch.__version__),
            "init": self.init,
            "validation": metrics,
            "config": to_dict(self.config),
        }

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, float]:
        """Score the networks on the fixed validation set, log it, and keep ``best.pt`` when the
        score improves on every earlier one of this run (and on ``init``'s)."""
        if self._validation is None:
            self._validation = validation_clips(self.config)
        self.model.eval()
        metrics = evaluate_modules(
            self.model.depth, self.model.motion, self._validation, self.config, device=self.process.device
        )
        self.model.train()
        _append_csv(
            self.out / "validation.csv",
            {
                "step": self.step,
                "wall_time_s": round(self.wall_time, 1),
                **{k: round(v, 5) for k, v in metrics.items()},
            },
        )
        if metrics["score"] < self.best_score:
            self.best_score = metrics["score"]
            summary = self._summary(metrics)
            save_checkpoint(self.out / "best.pt", self.model.depth, self.model.motion, extra={"summary": summary})
            write_model_card(self.out / "model_card.md", summary)
            (self.out / "best.json").write_text(json.dumps(summary, indent=2) + "\n")
        plot_training_curves(self.out, self.out / "curves.png")
        log.info("validation at step %d: %s", self.step, json.dumps({k: round(v, 4) for k, v in metrics.items()}))
        return metrics

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        """Train to the configured number of steps (or ``stop_at``). Ctrl-C (or SIGTERM) stops
        after saving ``last.pt``; the run can be resumed."""
        config, main = self.config, self.process.is_main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
        try:
            if main and self.step == 0:
                self.validate()
            self._loop()
            if not distributed.parameters_agree(self.process, self.model):
                raise V2DError("the training processes ended with different weights")
            if self.process.distributed:
                log.info("rank %d: weights agree across %d processes", self.process.rank, self.process.world_size)
            if main:
                self.validate()
            # the others wait for the main process's validation: a process that tears the group
            # down while another still runs can abort in gloo's teardown (seen once in CI)
            distributed.barrier(self.process)
        finally:
            self.save_last()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            distributed.stop(self.process)

    def _loop(self) -> None:
        from tqdm import tqdm

        config, main = self.config, self.process.is_main
        stream = batches(config, self.process.rank, self.step)
        generator = torch.Generator()
        bar = tqdm(
            total=config.total_steps,
            initial=self.step,
            disable=not (main and self.progress),
            mininterval=5,
            desc="v2d train",
            unit="step",
        )
        totals: dict[str, float] = {}
        count = 0
        while self.step < self.stop_at:
            start = time.perf_counter()
            batch = next(stream).to(self.process.device)
            stage = config.stage(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = config.schedule.lr * learning_rate_factor(self.step, config)
            generator.manual_seed(config.run.seed * 1_000_003 + self.process.rank * 7919 + self.step)
            loss, metrics = self.wrapped(batch, stage, generator)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.schedule.clip_norm)
            if torch.isfinite(grad_norm):
                self.optimizer.step()
            else:
                log.warning("step %d: non-finite gradient, update skipped", self.step)
            self.step += 1
            self.wall_time += time.perf_counter() - start
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value
            count += 1
            bar.update(1)
            if main and (self.step % config.run.log_every == 0 or self.step == self.stop_at):
                row = {
                    "step": self.step,
                    "stage": stage,
                    "wall_time_s": round(self.wall_time, 1),
                    "lr": f"{self.optimizer.param_groups[0]['lr']:.3g}",
                    "grad_norm": round(float(grad_norm), 4),
                    **{k: round(v / count, 5) for k, v in totals.items()},
                }
                _append_csv(self.out / "train_log.csv", row)
                bar.set_postfix(loss=row["loss"], abs_rel=row["abs_rel"], flow_px=row["flow_px"])
                totals, count = {}, 0
            if self.step % config.run.checkpoint_every == 0:
                self.save_last()
            if main and self.step % config.run.validate_every == 0 and self.step < self.stop_at:
                self.validate()
        bar.close()
