"""Optional camera effects on rendered images: sensor noise, vignetting and motion blur (the blur
itself is rendered by :class:`~slam.synthetic.sequence.SyntheticSequence`, which averages views
along the path). All are off by default, so that the exact fixture stays exact; depth and poses
are never affected."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Photometric:
    """Camera effects. ``noise``: standard deviation of additive Gaussian noise, in 8-bit grey
    levels. ``vignetting``: fraction of light lost at the image corners (falls off with the
    squared distance from the centre). ``motion_blur``: exposure time as a fraction of the frame
    interval, centred on the frame's timestamp (0: a sharp image), rendered with
    ``blur_samples`` views."""

    noise: float = 0.0
    vignetting: float = 0.0
    motion_blur: float = 0.0
    blur_samples: int = 5

    def __post_init__(self) -> None:
        if self.noise < 0 or not 0 <= self.vignetting < 1 or not 0 <= self.motion_blur <= 1 or self.blur_samples < 2:
            raise ValueError(f"invalid photometric options {self}")

    @property
    def is_identity(self) -> bool:
        return self.noise == 0 and self.vignetting == 0 and self.motion_blur == 0

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Vignetting then noise on an H x W x 3 image (uint8 or float in 0..255): uint8 result."""
        out = np.asarray(image, np.float32)
        if self.vignetting:
            out = out * vignetting_gain(out.shape[0], out.shape[1], self.vignetting)[..., None]
        if self.noise:
            out = out + rng.normal(0.0, self.noise, out.shape).astype(np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def vignetting_gain(height: int, width: int, strength: float) -> np.ndarray:
    """Gain per pixel (H x W float32): 1 at the image centre, 1 - strength at the corners."""
    y = (np.arange(height, dtype=np.float32) - (height - 1) / 2) / ((height - 1) / 2 or 1)
    x = (np.arange(width, dtype=np.float32) - (width - 1) / 2) / ((width - 1) / 2 or 1)
    radius2 = (y[:, None] ** 2 + x[None, :] ** 2) / 2
    return 1.0 - strength * radius2
