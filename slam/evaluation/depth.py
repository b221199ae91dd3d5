"""Depth maps against ground truth: the standard single-image depth metrics.

:func:`depth_metrics` scores one predicted depth map against ground truth over the pixels
where the ground truth is valid (finite, > 0, within ``[min_depth, max_depth]``); the
prediction is clipped to that range (after median scaling, if asked). Several images are
summarised by the mean of their per-image metrics (:func:`average_depth_metrics`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from slam.errors import EvaluationError
from slam.io.depth_maps import TUM_DEPTH_SCALE, read_depth

#: Extensions of depth map files: .npy in metres, 16-bit .png as value / depth_scale metres.
DEPTH_EXTENSIONS = (".npy", ".png")
DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")


def valid_depth_mask(gt: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Pixels where the ground-truth depth (metres) is finite, positive and within range."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(gt) & (gt > 0) & (gt >= min_depth) & (gt <= max_depth)


def depth_metrics(
    pred: np.ndarray, gt: np.ndarray, median_scaling: bool = False, min_depth: float = 1e-3, max_depth: float = 80.0
) -> dict[str, float]:
    """Standard depth metrics of a predicted depth map against ground truth, both HxW in metres.

    Over the valid ground-truth pixels (:func:`valid_depth_mask`): with ``median_scaling`` the
    prediction is multiplied by ``scale = median(gt) / median(pred)``; it is then clipped to
    ``[min_depth, max_depth]``. Returns ``abs_rel`` = mean |p - g| / g, ``sq_rel`` =
    mean (p - g)^2 / g, ``rmse`` = sqrt(mean (p - g)^2) (metres), ``rmse_log`` =
    sqrt(mean (ln p - ln g)^2), ``delta1..3`` = share of pixels with max(p/g, g/p) below
    1.25, 1.25^2, 1.25^3, ``scale`` (1 without median scaling) and ``valid_pixels``.
    Raises EvaluationError on different shapes or when no pixel is valid.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise EvaluationError(f"predicted depth is {pred.shape} but ground truth is {gt.shape}")
    if not 0 < min_depth < max_depth:
        raise EvaluationError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    mask = valid_depth_mask(gt, min_depth, max_depth)
    if not mask.any():
        raise EvaluationError(f"no valid ground-truth depth between {min_depth} and {max_depth} m")
    g = gt[mask]
    p = np.nan_to_num(pred[mask], nan=0.0, posinf=max_depth, neginf=0.0)
    scale = 1.0
    if median_scaling:
        median_pred = float(np.median(p))
        if median_pred <= 0:
            raise EvaluationError("the median predicted depth over valid pixels is not positive; cannot scale it")
        scale = float(np.median(g)) / median_pred
        p = p * scale
    p = np.clip(p, min_depth, max_depth)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "scale": scale,
        "valid_pixels": int(mask.sum()),
    }


def average_depth_metrics(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Mean of per-image :func:`depth_metrics` (every image weighs the same, as is standard),
    with ``images`` = how many were averaged."""
    if not per_image:
        raise EvaluationError("no depth maps to average")
    keys = [k for k in per_image[0] if k != "valid_pixels"]
    mean = {k: float(np.mean([m[k] for m in per_image])) for k in keys}
    mean["images"] = len(per_image)
    return mean


@dataclass
class DepthEvaluation:
    """Depth metrics over a folder: ``mean`` (:func:`average_depth_metrics`), ``per_image``
    (file stem -> :func:`depth_metrics`), ``skipped`` (stems whose ground truth has no valid
    pixel), ``unmatched_pred`` / ``unmatched_gt`` (stems in only one folder)."""

    mean: dict[str, float]
    per_image: dict[str, dict[str, float]]
    skipped: list[str]
    unmatched_pred: int
    unmatched_gt: int

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        m = self.mean
        text = (
            f"depth over {m['images']} images: abs rel {m['abs_rel']:.4f}, sq rel {m['sq_rel']:.4f}, "
            f"RMSE {m['rmse']:.4f} m, RMSE log {m['rmse_log']:.4f}, delta<1.25 {m['delta1']:.4f}, "
            f"<1.25^2 {m['delta2']:.4f}, <1.25^3 {m['delta3']:.4f}, mean scale {m['scale']:.4f}"
        )
        notes = []
        if self.skipped:
            notes.append(f"{len(self.skipped)} skipped without valid ground truth")
        if self.unmatched_pred or self.unmatched_gt:
            notes.append(f"{self.unmatched_pred} predictions and {self.unmatched_gt} ground-truth maps unmatched")
        return text + (f"\n({'; '.join(notes)})" if notes else "")


def _depth_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise EvaluationError(f"{what} folder not found: {folder}")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in DEPTH_EXTENSIONS:
            if path.stem in files:
                raise EvaluationError(f"{folder}: both {files[path.stem].name} and {path.name}; keep one per frame")
            files[path.stem] = path
    return files


def evaluate_depth_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    median_scaling: bool = False,
    depth_scale: float = TUM_DEPTH_SCALE,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
) -> DepthEvaluation:
    """Score every predicted depth map in ``pred_dir`` against the ground-truth map with the same
    file stem in ``gt_dir`` (:func:`read_depth` formats). A prediction of another size is resized
    to the ground truth's (bilinear). Raises EvaluationError when no stems match."""
    if depth_scale <= 0:
        raise EvaluationError(f"the depth scale must be positive, got {depth_scale}")
    pred_files = _depth_files(Path(pred_dir), "predicted depth")
    gt_files = _depth_files(Path(gt_dir), "ground-truth depth")
    common = sorted(set(pred_files) & set(gt_files))
    if not common:
        raise EvaluationError(
            f"no depth maps with the same file name (stem) in {pred_dir} "
            f"({len(pred_files)} .npy/.png) and {gt_dir} ({len(gt_files)} .npy/.png)"
        )
    per_image: dict[str, dict[str, float]] = {}
    skipped: list[str] = []
    for stem in common:
        gt = read_depth(gt_files[stem], depth_scale)
        if not valid_depth_mask(gt, min_depth, max_depth).any():
            skipped.append(stem)
            continue
        pred = read_depth(pred_files[stem], depth_scale)
        if pred.shape != gt.shape:
            pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
        per_image[stem] = depth_metrics(pred, gt, median_scaling, min_depth, max_depth)
    if not per_image:
        raise EvaluationError(
            f"no ground-truth depth map in {gt_dir} has valid pixels between {min_depth} and {max_depth} m"
        )
    return DepthEvaluation(
        average_depth_metrics(list(per_image.values())),
        per_image,
        skipped,
        len(pred_files) - len(common),
        len(gt_files) - len(common),
    )
