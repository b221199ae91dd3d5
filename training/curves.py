"""The training curve of a run: validation metrics against steps and wall time, and the training
loss, drawn from the run's CSV logs into one PNG."""

from __future__ import annotations

import csv
from pathlib import Path

#: validation metrics drawn, with their axis labels
PANELS = (
    ("abs_rel", "depth abs rel"),
    ("delta1", "depth delta < 1.25"),
    ("flow_px", "end-point error (px, 1/4 res)"),
    ("rotation_deg", "rotation error (deg)"),
)


def _read(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                continue
    return columns


def plot_training_curves(run_dir: str | Path, path: str | Path) -> None:
    """Draw ``run_dir``'s validation.csv (metrics against steps, wall time on a second axis) and
    train_log.csv (the loss) into the PNG ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    validation, training = _read(run_dir / "validation.csv"), _read(run_dir / "train_log.csv")
    figure, axes = plt.subplots(1, len(PANELS) + 1, figsize=(4 * (len(PANELS) + 1), 3.4))
    if training.get("step"):
        axes[0].plot(training["step"], training["loss"], color="0.6", linewidth=0.8)
    axes[0].set(title="training loss", xlabel="step")
    for axis, (key, label) in zip(axes[1:], PANELS):
        if validation.get(key):
            axis.plot(validation["step"], validation[key], marker="o", color="tab:blue")
            hours = [s / 3600.0 for s in validation["wall_time_s"]]
            top = axis.twiny()
            top.set_xlim(axis.get_xlim())
            steps = validation["step"]
            low, high = axis.get_xlim()  # ticks in view, from the first validation on (no negative hours)
            ticks = [t for t in axis.get_xticks() if max(low, steps[0]) <= t <= high]
            top.set_xticks(ticks)
            top.set_xticklabels([f"{_interpolate(t, steps, hours):.1f}" for t in ticks], fontsize=7)
            top.set_xlabel("hours of training", fontsize=8)
        axis.set(title=f"validation: {label}", xlabel="step")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _interpolate(x: float, xs: list[float], ys: list[float]) -> float:
    """Linear interpolation (extrapolating with the end slopes) of ys(xs) at x."""
    import numpy as np

    if len(xs) < 2:
        return ys[0] if ys else 0.0
    if x <= xs[0] or x >= xs[-1]:
        k = 0 if x <= xs[0] else len(xs) - 2
        slope = (ys[k + 1] - ys[k]) / max(xs[k + 1] - xs[k], 1e-9)
        return max(0.0, ys[k] + slope * (x - xs[k]))
    return float(np.interp(x, xs, ys))
