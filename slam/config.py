"""The SLAM system's configuration tree (defaults here; YAML files and ``section.field=value``
overrides through :mod:`slam.configuration`; recorded in stats.json)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModulesConfig:
    """Which depth and motion modules run: "classical" (no weights), "lite" or "paper"
    (learned, from ``weights``; None: the shipped lite weights, ``weights/lite.pt``).
    ``threads``: torch threads (2 = this project's CPU budget).

    The default follows the benchmarks (BENCHMARKS.md, SLAM system): the learned lite depth
    network with the classical motion module beats the classical pair on every real sequence;
    the learned motion network does not yet."""

    depth: str = "lite"
    motion: str = "classical"
    weights: str | None = None
    device: str = "cpu"
    threads: int = 2


@dataclass(frozen=True)
class FrontendConfig:
    """Tracking and keyframes.

    - ``pixels``: processing image area (H x W); the source's aspect ratio is kept and both
      sides are rounded to multiples of 16.
    - ``tracking_steps``: the most Gauss-Newton steps per frame (the flow is recomputed before
      each).
    - ``tracking_confident``: tracking stops after a step whose flow had at least this quality
      (see ``keyframe_quality``): its correspondences were reliable and the step solved the pose
      (a further step moves it by about 0.1 pixel on TUM). Null: always ``tracking_steps``
      steps. 0.3 (the default, with ``backend.flow_reuse``) took TUM from 11.8 to 14.2
      frames/s at the same accuracy; alone, without the flow reuse, it cost the synthetic room
      its accuracy in thread mode (1.1% of the path against 0.9%; BENCHMARKS.md, README).
    - ``tracking_pool``: the tracking solve runs on a grid this many times coarser than the
      motion module's (block means of its correspondences, as the bundle adjustment's
      ``bundle_pool``; 1 = its own grid).
    - ``keyframe_flow``: mean flow (processing pixels) induced by the motion since the keyframe
      above which the frame becomes a keyframe. Every TUM keyframe comes from this test (its
      motion is mostly rotation): 40 instead of 32 made 15 keyframes of its 120 frames instead
      of 21, took it from 14 to 17-18 frames/s and its ATE from 0.021 to 0.017 m, and left the
      other sequences within noise; 48 cost HoloLens 0.1 m.
    - ``keyframe_parallax``: mean flow induced by the translation alone (the flow less that of
      the rotation) above which the frame becomes a keyframe: a new view with a baseline for
      depth, where a turn on the spot only moves the image. 12 instead of 16 (with
      ``backend.depth_prior`` 0.5) took the synthetic room from 0.045-0.049 m (at its 1% target)
      to 0.033-0.034 m in quick runs, at the cost of KITTI (0.36 to 0.53 m, 67 keyframes of 100
      frames instead of 47); 14 gave the room 0.040-0.044 m and KITTI 0.45 m; TUM's keyframes
      come from ``keyframe_flow``.
    - ``keyframe_quality``: tracking quality (mean flow confidence over the keyframe's pixels)
      below which the frame becomes a keyframe even with little motion (the view has changed).
    - ``min_quality``: tracking quality below which the frame is lost. HoloLens's last frames
      (dark, bare cabinets, a fast pan) sit at 0.14-0.18 and are lost in most runs; 0.1 tracks
      all of its frames but did not lower its ATE (0.141 m against 0.126-0.138).
    - ``max_lost``: consecutive lost frames after which the system re-initialises.
    - ``init_frames``: frames gathered before the cold-start alternation.
    - ``init_rounds``: motion-depth rounds of the cold start.
    - ``init_depth``: the constant depth the cold start begins from (sets the map's arbitrary scale).
    - ``depth_range``: (min, max) depth hypotheses, in the map's units.
    - ``neighbours``: frames used with a new keyframe to compute its depth.
    - ``refine_keyframes``: a new keyframe's pose and depth are refined by dense bundle
      adjustment against this many of the newest keyframes before tracking uses them (0 = off;
      the solver settings are the backend's ``depth_prior``, ``bundle_pool``, ``bundle_iterations``).
    """

    pixels: int = 76800
    tracking_steps: int = 2
    tracking_confident: float | None = 0.3
    tracking_pool: int = 2
    keyframe_flow: float = 40.0
    keyframe_parallax: float = 12.0
    keyframe_quality: float = 0.3
    min_quality: float = 0.15
    max_lost: int = 5
    init_frames: int = 8
    init_rounds: int = 4
    init_depth: float = 2.0
    depth_range: tuple[float, float] = (0.2, 10.0)
    neighbours: int = 4
    refine_keyframes: int = 4


@dataclass(frozen=True)
class BackendConfig:
    """Sliding-window global pose optimization and depth updates.

    - ``mode``: "thread" (concurrent with tracking, the live setting), "inline" (run after each
      new keyframe in the tracking thread: deterministic, for tests), or "disabled".
    - ``window``: keyframes optimised together (the oldest one is held fixed).
    - ``pose_steps``: Gauss-Newton steps per optimisation (flow recomputed before each).
    - ``bundle_adjustment``: each Gauss-Newton step also refines every window keyframe's
      per-pixel depth (dense bundle adjustment on the motion module's targets, held near the
      depth the pass started from by ``depth_prior``; see slam.bundle). False: poses only.
    - ``depth_prior``: weight of that prior (squared pixels per squared relative depth change).
      0.5 (10 before) lets the correspondences move the depth further: v2d bench took HoloLens
      from 0.31 to 0.126 m and the road from 0.8% to 0.2% of its path, KITTI from 0.27 to
      0.36 m, the room within noise (0.034-0.049 m over six runs); 0.2 was worse everywhere,
      1 and 2 worse on HoloLens.
    - ``bundle_pool``: the bundle adjustment works on a grid this many times coarser than the
      motion module's (block means of its targets; 1 = its own grid).
    - ``bundle_iterations``: bundle adjustment steps per flow computation (``pose_steps`` flow
      computations per pass).
    - ``depth_updates``: how many of the newest window keyframes get their depth recomputed
      by the depth module with the refined poses after each optimisation (0 = none).
    - ``huber``: the bundle adjustment's data term is robust (Huber): a correspondence whose
      residual is longer than this many pixels of its grid counts less, as 1 / length (null:
      plain least squares). The motion module's confidences miss some wrong correspondences.
    - ``edge_span``: the window's edges join keyframes at most this many apart (null: every
      pair). 2 keeps 14 of a 5-keyframe window's 20 edges: each pass is cheaper, so more passes
      run, and the benchmarks gained (BENCHMARKS.md).
    - ``flow_reuse``: the bundle adjustment reuses a keyframe pair's correspondences from an
      earlier pass while the pair's reprojection has moved less than this many pixels (of the
      motion module's grid, on average) since they were computed (see slam.flow_cache); null:
      recomputed every pass. 0.5 (the default) reused two thirds of the pairs on TUM with the
      same accuracy; the lighter backend keeps up with one-step tracking
      (``frontend.tracking_confident``), which the synthetic room needs in thread mode.
    - ``max_lag`` (thread mode): when a new keyframe leaves the backend more than this many
      keyframes behind the map (keyframes that no finished pass has seen), tracking waits for
      the pass under way, so that every keyframe is optimised while in the window (null: never
      waits; the backend then skips keyframes on a scene that makes many, and accuracy suffers).
    """

    mode: str = "thread"
    window: int = 5
    pose_steps: int = 1
    bundle_adjustment: bool = True
    depth_prior: float = 0.5
    bundle_pool: int = 2
    bundle_iterations: int = 2
    depth_updates: int = 0
    huber: float | None = 1.0
    edge_span: int | None = 2
    max_lag: int | None = 2
    flow_reuse: float | None = 0.5


@dataclass(frozen=True)
class FusionConfig:
    """Point cloud and mesh from keyframe depths, fused as keyframes become final (see
    slam.streaming and slam.fusion).

    - ``min_confidence``: depths less confident are left out; ``consistency_views``: nearby
      keyframes that must confirm a point (see slam.fusion).
    - ``voxel_size``: the point cloud's voxel (one point per voxel, the mean of those inside) in
      the map's units; None: the median keyframe depth / ``point_resolution``.
    - ``max_points``: the most points the cloud holds; beyond, its voxel doubles (memory stays
      bounded however long the run).
    - ``mesh_resolution``: TSDF voxels per median keyframe depth (memory grows with its cube:
      100 took 4 GB more than 50 on the 150-frame HoloLens scene).
    - ``mesh_depth_limit``: depths beyond this many median keyframe depths are left out of the
      mesh (far, unreliable monocular depth grows the volume).
    """

    min_confidence: float = 0.3
    consistency_views: int = 1
    voxel_size: float | None = None
    point_resolution: float = 200.0
    max_points: int = 1_000_000
    mesh: bool = True
    mesh_resolution: float = 50.0
    mesh_depth_limit: float = 3.0


@dataclass(frozen=True)
class SystemConfig:
    modules: ModulesConfig = field(default_factory=ModulesConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    def __post_init__(self) -> None:
        from slam.configuration import ConfigError

        if self.backend.mode not in ("thread", "inline", "disabled"):
            raise ConfigError(f"backend.mode must be thread, inline or disabled, got {self.backend.mode!r}")
        if self.backend.window < 2 or self.frontend.init_frames < 2 or self.frontend.neighbours < 1:
            raise ConfigError("backend.window and frontend.init_frames must be at least 2, frontend.neighbours at least 1")
        if self.frontend.refine_keyframes < 0 or self.backend.bundle_iterations < 1 or self.backend.depth_prior <= 0:
            raise ConfigError("need frontend.refine_keyframes >= 0, backend.bundle_iterations >= 1 and "
                              "backend.depth_prior > 0")
        if self.backend.edge_span is not None and self.backend.edge_span < 1:
            raise ConfigError(f"backend.edge_span must be >= 1 or null, got {self.backend.edge_span}")
        if self.backend.max_lag is not None and self.backend.max_lag < 1:
            raise ConfigError(f"backend.max_lag must be >= 1 or null, got {self.backend.max_lag}")
        if self.backend.flow_reuse is not None and self.backend.flow_reuse <= 0:
            raise ConfigError(f"backend.flow_reuse must be > 0 or null, got {self.backend.flow_reuse}")
        if self.backend.huber is not None and self.backend.huber <= 0:
            raise ConfigError(f"backend.huber must be > 0 or null, got {self.backend.huber}")
        for name, pool in (("backend.bundle_pool", self.backend.bundle_pool),
                           ("frontend.tracking_pool", self.frontend.tracking_pool)):
            if pool not in (1, 2, 4, 8):
                raise ConfigError(f"{name} must be 1, 2, 4 or 8, got {pool}")
        fusion = self.fusion
        if min(fusion.point_resolution, fusion.mesh_resolution, fusion.mesh_depth_limit, fusion.max_points) <= 0 or (
                fusion.voxel_size is not None and fusion.voxel_size <= 0):
            raise ConfigError("fusion.point_resolution, fusion.mesh_resolution, fusion.mesh_depth_limit, "
                              "fusion.max_points and fusion.voxel_size (when set) must be > 0")
        low, high = self.frontend.depth_range
        if not 0 < low < self.frontend.init_depth < high:
            raise ConfigError(f"need 0 < depth_range min < init_depth < depth_range max, got {low}, "
                              f"{self.frontend.init_depth}, {high}")


def processing_size(width: int, height: int, pixels: int) -> tuple[int, int]:
    """(W, H) of the processing images: the source's aspect ratio, about ``pixels`` in area,
    sides multiples of 16."""
    scale = (pixels / (width * height)) ** 0.5
    return max(16, int(round(width * scale / 16)) * 16), max(16, int(round(height * scale / 16)) * 16)
