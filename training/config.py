"""The training configuration: one dataclass tree with defaults, loadable from YAML and
overridable with ``section.field=value`` (through :mod:`slam.config.loader`), recorded in every
checkpoint and in the log folder."""

from __future__ import annotations

from dataclasses import dataclass, field

from slam.errors import ConfigError

DATA_KINDS = ("synthetic", "tum", "scannet", "kitti")
MODEL_SIZES = ("lite", "paper")


@dataclass(frozen=True)
class ModelConfig:
    """``size``: "lite" or "paper" (see DepthNetConfig / MotionNetConfig); ``depth_range``: the
    depth bins' (min, max), in the training data's units (metres)."""

    size: str = "lite"
    depth_range: tuple[float, float] = (0.2, 10.0)


@dataclass(frozen=True)
class DataConfig:
    """Where clips come from.

    - ``kind``: "synthetic" (rendered on the fly: infinite and seeded), or a user's dataset:
      "tum" (a folder of TUM RGB-D sequences), "scannet" (a folder of ScanNet-style scenes:
      color/, depth/, pose/, intrinsic/) or "kitti" (a KITTI odometry folder; poses only, so
      it trains the motion module alone).
    - ``path``: the dataset folder (not for synthetic).
    - ``frames``: frames per clip (the keyframe and ``frames - 1`` neighbours).
    - ``image_size``: (H, W) the clips are rendered or resized to.
    - ``min_gap``, ``max_gap``: frame-index distances between the keyframe and its neighbours
      are drawn log-uniformly between these (synthetic driving scenes, at a third of the frame
      rate, use a third of them), so clips cover small and wide baselines. Wide ones matter:
      the cost volume works at 1/4 resolution, where a few centimetres of baseline move a
      point by a fraction of a pixel.
    - ``road_share``: share of synthetic clips from driving scenes (the rest are rooms).
    - ``focal_range``: synthetic focal length as a fraction of the image width (wide to narrow).
    - Synthetic scenes are scaled so that the keyframe's median depth falls at a random place
      well inside the depth bins (monocular scale is arbitrary: the networks should not learn
      one room size).
    - ``clips_per_scene``: clips drawn from one rendered scene before a new one is built.
    - ``metric_scale``: poses and depths of a user's dataset are multiplied by this (e.g. 0.1
      for KITTI, so that street depths fall inside the depth bins).
    - ``workers``: data-loading processes (0: in the training process).
    """

    kind: str = "synthetic"
    path: str | None = None
    frames: int = 4
    image_size: tuple[int, int] = (192, 256)
    min_gap: int = 3
    max_gap: int = 36
    road_share: float = 0.25
    focal_range: tuple[float, float] = (0.55, 1.05)
    clips_per_scene: int = 4
    metric_scale: float = 1.0
    workers: int = 1


@dataclass(frozen=True)
class AugmentConfig:
    """Photometric augmentation of the images (never of depth or poses): per clip brightness,
    contrast, gamma, colour balance and saturation; per frame a smaller brightness change;
    sensor noise (8-bit grey levels); vignetting; motion blur (rendered, synthetic only, the
    share of clips with a blurred exposure)."""

    brightness: float = 0.25
    contrast: float = 0.25
    gamma: float = 0.25
    colour: float = 0.08
    saturation: float = 0.3
    frame_brightness: float = 0.05
    noise: tuple[float, float] = (0.0, 4.0)
    vignetting: tuple[float, float] = (0.0, 0.4)
    blur_share: float = 0.25


@dataclass(frozen=True)
class LossConfig:
    """Loss weights. Depth: L1 to ground truth on every head (later heads weigh more by
    ``head_gamma``) plus ``smoothness`` (edge-aware, where ground truth is missing). Motion: the
    reprojection error of the flow induced by predicted vs true poses after every Gauss-Newton
    step, plus ``residual`` times the weighted error of the predicted targets and ``weights``
    times the mean of -log(confidence)."""

    head_gamma: float = 0.8
    smoothness: float = 0.02
    flow: float = 1.0
    residual: float = 0.1
    weights: float = 0.01


@dataclass(frozen=True)
class ScheduleConfig:
    """The two stages of the paper: ``motion_steps`` steps where the motion module works on
    true depth and the depth module on true poses, then ``joint_steps`` where they feed each
    other. Pose starts are the true poses perturbed by up to ``rotation_noise`` degrees and
    ``translation_noise`` (a share of the scene's median depth). ``gauss_newton_steps`` per
    motion update. Optimizer AdamW; the learning rate warms up over ``warmup`` steps and then
    follows a cosine to ``lr * final_lr_ratio`` over both stages; gradients are clipped to
    ``clip_norm``."""

    motion_steps: int = 2000
    joint_steps: int = 4000
    batch_size: int = 2
    lr: float = 4e-4
    final_lr_ratio: float = 0.05
    weight_decay: float = 1e-4
    warmup: int = 100
    clip_norm: float = 2.5
    rotation_noise: float = 4.0
    translation_noise: float = 0.08
    gauss_newton_steps: int = 2


@dataclass(frozen=True)
class RunConfig:
    """Bookkeeping: ``seed`` (data, augmentation and initial weights), ``threads`` (torch threads
    per process), ``validate_every`` / ``checkpoint_every`` (steps), ``validation_clips`` (the
    fixed synthetic validation set, seeded apart from training)."""

    seed: int = 0
    threads: int = 1
    validate_every: int = 250
    checkpoint_every: int = 50
    validation_clips: int = 24
    log_every: int = 10


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if self.model.size not in MODEL_SIZES:
            raise ConfigError(f"model.size must be one of {', '.join(MODEL_SIZES)}, got {self.model.size!r}")
        if self.data.kind not in DATA_KINDS:
            raise ConfigError(f"data.kind must be one of {', '.join(DATA_KINDS)}, got {self.data.kind!r}")
        if self.data.kind != "synthetic" and not self.data.path:
            raise ConfigError(f"data.kind={self.data.kind} needs data.path (the dataset folder)")
        if self.data.frames < 2 or not 1 <= self.data.min_gap <= self.data.max_gap:
            raise ConfigError("data.frames must be at least 2 and 1 <= data.min_gap <= data.max_gap")
        if any(s <= 0 or s % 16 for s in self.data.image_size):
            raise ConfigError(f"data.image_size must be multiples of 16, got {self.data.image_size}")
        if self.schedule.batch_size < 1 or self.schedule.motion_steps < 0 or self.schedule.joint_steps < 0:
            raise ConfigError("schedule: batch_size must be positive and step counts not negative")

    @property
    def total_steps(self) -> int:
        return self.schedule.motion_steps + self.schedule.joint_steps

    def stage(self, step: int) -> str:
        """ "motion" for the first ``motion_steps`` steps, then "joint"."""
        return "motion" if step < self.schedule.motion_steps else "joint"
