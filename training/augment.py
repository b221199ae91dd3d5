"""Photometric augmentation of training clips: the images change, depth and poses never do."""

from __future__ import annotations

import numpy as np

from training.config import AugmentConfig

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def augment_images(images: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> the same shape, with one draw of brightness, contrast, gamma,
    colour balance and saturation for the whole clip (a camera's auto exposure and white
    balance) and a small per-frame brightness change (exposure flicker)."""
    out = images.astype(np.float32) / 255.0
    gamma = np.exp(rng.uniform(-config.gamma, config.gamma))
    out = out**gamma
    grey = out @ LUMA
    saturation = 1.0 + rng.uniform(-config.saturation, config.saturation)
    out = grey[..., None] + saturation * (out - grey[..., None])
    mean = out.mean()
    contrast = 1.0 + rng.uniform(-config.contrast, config.contrast)
    out = mean + contrast * (out - mean)
    gain = (1.0 + rng.uniform(-config.brightness, config.brightness)) * (
        1.0 + rng.uniform(-config.colour, config.colour, 3)
    )
    frame_gain = 1.0 + rng.uniform(-config.frame_brightness, config.frame_brightness, (len(images), 1, 1, 1))
    out = out * gain.astype(np.float32) * frame_gain.astype(np.float32)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
