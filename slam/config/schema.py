"""The SLAM system's configuration schema: one dataclass tree with the defaults (YAML files and
``section.field=value`` overrides are applied by :mod:`slam.config.loader`; the tree is recorded
in stats.json)."""

from __future__ import annotations

from dataclasses import dataclass, field

from slam.errors import ConfigError

#: The smallest processing image area (``frontend.pixels``): the classical motion module computes
#: OpenCV DIS optical flow at half the processing resolution, and DIS needs an image side of at
#: least 12 pixels, so a processing side of 24; sides are multiples of 16, hence 32 x 32. (The
#: learned modules resize the images to their own input size.)
MIN_PIXELS = 32 * 32


@dataclass(frozen=True)
class ModulesConfig:
    """Which depth and motion modules run.

    - ``depth``, ``motion``: "classical" (no weights), "lite" or "paper" (learned).
    - ``weights``: checkpoint of the learned modules; None: the shipped ``weights/lite.pt``.
    - ``device``: torch device the modules run on.
    - ``threads``: torch threads of the tracking thread (and of whatever runs in the caller's
      thread: a cold start, an inline backend); at least 1.
    - ``background_threads``: torch threads of each thread that works beside tracking (the
      keyframe worker, the backend); at least 1. The defaults give every thread one torch
      thread: the tracking thread, the keyframe worker and the backend already share two cores,
      and a second OpenMP thread each only adds waiting (see docs/tuning.md).
    """

    depth: str = "lite"
    motion: str = "classical"
    weights: str | None = None
    device: str = "cpu"
    threads: int = 1
    background_threads: int = 1


@dataclass(frozen=True)
class FrontendConfig:
    """Tracking and keyframes. Flows and parallax are in processing pixels; depths in map units.

    - ``pixels``: processing image area (H x W); the source's aspect ratio is kept, both sides
      rounded to multiples of 16. At least :data:`MIN_PIXELS`.
    - ``tracking_steps``: the most Gauss-Newton steps per frame (the flow recomputed before each).
    - ``tracking_confident``: tracking stops after a step whose flow quality (see
      ``keyframe_quality``) reached this; None: always ``tracking_steps`` steps.
    - ``tracking_pool``: the tracking solve runs on a grid this many times coarser than the
      motion module's (block means of its correspondences; 1: its own grid).
    - ``keyframe_flow``: mean flow induced by the motion since the keyframe above which the
      frame becomes a keyframe.
    - ``keyframe_parallax``: mean flow induced by the translation alone (the flow less that of
      the rotation) above which the frame becomes a keyframe: a turn on the spot makes none.
    - ``keyframe_quality``: tracking quality (mean flow confidence over the keyframe's pixels with
      depth, 0-1) below which the frame becomes a keyframe.
    - ``min_quality``: tracking quality below which the frame is lost.
    - ``max_lost``: consecutive lost frames after which tracking stops and relocalization begins.
    - ``relocalize_frames``: lost frames (not counting blank ones) that relocalization tries to
      register against the map before a new map segment starts from a cold start (0: a new
      segment at once, no relocalization).
    - ``relocalize_by_appearance``, ``relocalize_by_proximity``: keyframes tried per frame, by
      appearance and by nearness to the last tracked pose.
    - ``relocalize_steps``: Gauss-Newton steps of a relocalization attempt.
    - ``relocalize_quality``: flow quality a relocalization needs (as ``keyframe_quality``).
    - ``relocalize_residual``: the most residual flow (processing pixels, confidence-weighted mean,
      before the last step) a relocalization may leave: the pose has converged.
    - ``init_frames``: frames gathered before the cold start.
    - ``init_rounds``: motion-depth rounds of the cold start's alternation.
    - ``init_depth``: the constant depth the cold start begins from: the map's scale with the
      classical depth module; a learned one's estimates set the scale themselves (docs/tuning.md).
    - ``depth_range``: (min, max) depth hypotheses.
    - ``neighbours``: frames used with a new keyframe to compute its depth.
    - ``refine_keyframes``: a new keyframe's pose and depth are refined by dense bundle
      adjustment against this many of the newest keyframes (0: off; solver settings from the
      backend's ``depth_prior``, ``bundle_pool`` and ``bundle_iterations``).
    - ``keyframe_lag``: a new keyframe's depth and refinement are computed in a worker thread
      while tracking goes on against the previous keyframe, for at most this many frames (then
      tracking waits for it); 0: computed in the tracking thread before the next frame. With
      ``backend.mode=thread`` the keyframe joins the map as soon as it is ready; otherwise
      exactly this many frames later (the same run every time).
    - ``reuse_keyframes``: when a frame asks for a new keyframe, up to this many keyframes of
      the map it may be tracked against instead (those that see the frame's view at the current
      poses with less flow and parallax than ask for a keyframe) are tried first;
      one that tracks it well enough not to ask for a keyframe itself becomes the one tracking
      uses, and no keyframe is made: a camera that comes back is tracked against the map it
      built, at that map's scale (0: always a new keyframe).

    docs/tuning.md says how the defaults were chosen.
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
    relocalize_frames: int = 30
    relocalize_by_appearance: int = 3
    relocalize_by_proximity: int = 2
    relocalize_steps: int = 4
    relocalize_quality: float = 0.3
    relocalize_residual: float = 1.0
    init_frames: int = 8
    init_rounds: int = 4
    init_depth: float = 2.0
    depth_range: tuple[float, float] = (0.2, 10.0)
    neighbours: int = 4
    refine_keyframes: int = 4
    keyframe_lag: int = 4
    reuse_keyframes: int = 2


@dataclass(frozen=True)
class BackendConfig:
    """Sliding-window optimisation of keyframe poses and depths.

    - ``mode``: "thread" (beside tracking: the live setting), "inline" (after each new keyframe,
      in the tracking thread: deterministic, for tests) or "disabled".
    - ``window``: keyframes optimised together (the oldest held fixed).
    - ``pose_steps``: flow computations per pass (each followed by the solver's steps).
    - ``bundle_adjustment``: each step also refines every window keyframe's per-pixel depth
      (dense bundle adjustment, :mod:`slam.system.bundle`); False: poses only.
    - ``depth_prior``: weight of the prior that holds depth near where the pass began (squared
      pixels per squared relative depth change).
    - ``bundle_pool``: the bundle adjustment's grid is this many times coarser than the motion
      module's (block means of its targets; 1: its own grid).
    - ``bundle_iterations``: bundle adjustment steps per flow computation.
    - ``depth_updates``: newest window keyframes whose depth the depth module recomputes with
      the refined poses after each pass (0: none; the paper's scheme uses 2).
    - ``huber``: residual length (pixels of the solver's grid) beyond which a correspondence
      counts as 1 / length (robust Huber term); None: plain least squares.
    - ``edge_span``: edges join window keyframes at most this many apart; None: every pair.
    - ``flow_reuse``: a keyframe pair's correspondences are reused while its reprojection has
      moved less than this many pixels (motion module's grid, on average) since they were
      computed (:mod:`slam.system.flow_cache`); None: recomputed every pass.
    - ``covisible``: older keyframes (at least ``window`` keyframes older than the window) that
      join each bundle adjustment pass, held fixed, when they see at least ``covisible_overlap``
      of what the newest keyframe sees (0: none); edges join them with the newest
      ``covisible_edges`` window keyframes, both ways.
    - ``loops``: detect, verify and close loops (:mod:`slam.system.loop_closure`): keyframes at
      least ``loop_gap`` keyframes older than the window, or in an earlier map segment than the
      newest one (begun by a cold start after a loss), are candidates, up to
      ``loop_by_proximity`` per pass, then (when none passes) ``loop_by_appearance``, each verified by
      ``loop_steps`` tracking steps that must reach a flow quality of ``loop_quality`` and a
      residual under ``loop_residual`` pixels; a proximity candidate is tried only when the flow
      its current relative pose predicts is at most ``loop_max_flow`` pixels (twice the
      frontend's ``keyframe_flow``: the motion tracking is asked to register); an accepted loop
      that disagrees with the estimate by more than ``loop_correction`` standard deviations of a
      loop measurement (in translation, rotation or scale) triggers a Sim(3) pose-graph
      optimization of the keyframes older than the window. With it, released keyframes' pixels
      are kept on disk so that the map can be fused again after a correction. Runs after each
      backend pass, which tracking does not wait for.
    - ``final_bundle_adjustment``: when the run ends, a dense bundle adjustment over every
      keyframe on the keyframe graph's edges (:mod:`slam.system.global_bundle`): temporal ones to
      the next ``final_span`` keyframes, covisibility and loops; ``final_steps`` flow
      computations, on a grid ``final_pool`` times coarser than the motion module's. Released
      keyframes' pixels are then kept on disk, so that the map can be fused again after it.
    - ``align_final_scales``: a keyframe leaving the window (final) has its depth, and the
      translations of the frames tracked against it, rescaled to agree with the final keyframes
      of its map segment that it overlaps, at their poses, before it is fused
      (:mod:`slam.system.archive`), so that every depth keeps its segment's scale.
    - ``align_live_end`` (with ``align_final_scales``): the keyframes after it in its segment
      (the window, which tracking and the backend work on) are rescaled with it, their places
      moved about its pose by the same factor, so that the live end of the map goes on at the
      segment's scale instead of drifting from it: the trajectory follows the final depths'
      scale. Off by default: on driving footage the final depths' scale itself drifts (see
      docs/tuning.md).
    - ``max_lag`` (thread mode): tracking waits for the pass under way when more than this many
      keyframes have not been seen by a finished pass; None: never waits.

    docs/tuning.md says how the defaults were chosen.
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
    covisible: int = 2
    covisible_overlap: float = 0.5
    covisible_edges: int = 2
    loops: bool = True
    loop_gap: int = 10
    loop_by_proximity: int = 1
    loop_by_appearance: int = 1
    loop_steps: int = 4
    loop_quality: float = 0.3
    loop_residual: float = 1.0
    loop_correction: float = 3.0
    loop_max_flow: float = 80.0
    flow_reuse: float | None = 0.5
    final_bundle_adjustment: bool = False
    final_span: int = 2
    final_steps: int = 2
    final_pool: int = 4
    align_final_scales: bool = True
    align_live_end: bool = False


@dataclass(frozen=True)
class FusionConfig:
    """Point cloud and mesh from keyframe depths, fused as keyframes become final
    (:mod:`slam.mapping.streaming`, :mod:`slam.mapping.fusion`). Sizes in map units.

    - ``min_confidence``: depths less confident (0-1) are left out: with the dense bundle
      adjustment, a keyframe's confidence is the share of its depth that the views determine
      (:attr:`slam.system.map.Keyframe.confidence`).
    - ``consistency_views``: nearby keyframes that must confirm a point.
    - ``average_views``: a kept point moves to the mean of where it and the keyframes that
      confirm it place the surface (:mod:`slam.mapping.fusion`).
    - ``voxel_size``: the point cloud's voxel (one point per voxel, the mean of those inside);
      None: the median keyframe depth / ``point_resolution``.
    - ``point_resolution``: voxels per median keyframe depth when ``voxel_size`` is None.
    - ``max_points``: the most points the cloud holds; beyond, its voxel doubles.
    - ``mesh``: build the TSDF mesh (needs Open3D).
    - ``mesh_resolution``: TSDF voxels per median keyframe depth (memory grows with its cube).
    - ``mesh_depth_limit``: depths beyond this many median keyframe depths stay out of the mesh.
    """

    min_confidence: float = 0.6
    consistency_views: int = 1
    average_views: bool = True
    voxel_size: float | None = None
    point_resolution: float = 200.0
    max_points: int = 1_000_000
    mesh: bool = True
    mesh_resolution: float = 50.0
    mesh_depth_limit: float = 3.0


@dataclass(frozen=True)
class SystemConfig:
    """The whole configuration of ``v2d run``; checks the fields against each other."""

    modules: ModulesConfig = field(default_factory=ModulesConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    def __post_init__(self) -> None:
        if self.modules.threads < 1:
            raise ConfigError(f"modules.threads must be at least 1, got {self.modules.threads}")
        if self.modules.background_threads < 1:
            raise ConfigError(f"modules.background_threads must be at least 1, got {self.modules.background_threads}")
        if self.frontend.tracking_steps < 1:
            raise ConfigError(f"frontend.tracking_steps must be at least 1, got {self.frontend.tracking_steps}")
        if self.frontend.pixels < MIN_PIXELS:
            raise ConfigError(
                f"frontend.pixels must be at least {MIN_PIXELS} (a 32 x 32 image, the smallest the classical "
                f"motion module's optical flow works on), got {self.frontend.pixels}"
            )
        if self.backend.mode not in ("thread", "inline", "disabled"):
            raise ConfigError(f"backend.mode must be thread, inline or disabled, got {self.backend.mode!r}")
        if self.backend.window < 2 or self.frontend.init_frames < 2 or self.frontend.neighbours < 1:
            raise ConfigError(
                "backend.window and frontend.init_frames must be at least 2, frontend.neighbours at least 1"
            )
        if self.frontend.keyframe_lag < 0 or self.frontend.reuse_keyframes < 0:
            raise ConfigError(
                f"frontend.keyframe_lag and frontend.reuse_keyframes must be >= 0, got "
                f"{self.frontend.keyframe_lag} and {self.frontend.reuse_keyframes}"
            )
        if self.frontend.refine_keyframes < 0 or self.backend.bundle_iterations < 1 or self.backend.depth_prior <= 0:
            raise ConfigError(
                "need frontend.refine_keyframes >= 0, backend.bundle_iterations >= 1 and backend.depth_prior > 0"
            )
        frontend = self.frontend
        if min(frontend.relocalize_frames, frontend.relocalize_by_appearance, frontend.relocalize_by_proximity) < 0 or (
            frontend.relocalize_steps < 1 or frontend.relocalize_residual <= 0
        ):
            raise ConfigError(
                "need frontend.relocalize_frames, relocalize_by_appearance and relocalize_by_proximity >= 0, "
                "relocalize_steps >= 1 and relocalize_residual > 0"
            )
        if (
            self.backend.covisible < 0
            or self.backend.covisible_edges < 1
            or not 0 < self.backend.covisible_overlap <= 1
        ):
            raise ConfigError("need backend.covisible >= 0, covisible_edges >= 1 and 0 < covisible_overlap <= 1")
        backend = self.backend
        if min(backend.loop_gap, backend.loop_by_proximity, backend.loop_by_appearance) < 0 or (
            backend.loop_steps < 1
            or backend.loop_residual <= 0
            or backend.loop_correction <= 0
            or backend.loop_max_flow <= 0
        ):
            raise ConfigError(
                "need backend.loop_gap, loop_by_proximity and loop_by_appearance >= 0, loop_steps >= 1, "
                "loop_residual, loop_correction and loop_max_flow > 0"
            )
        if self.backend.edge_span is not None and self.backend.edge_span < 1:
            raise ConfigError(f"backend.edge_span must be >= 1 or null, got {self.backend.edge_span}")
        if self.backend.final_span < 1 or self.backend.final_steps < 1:
            raise ConfigError(
                f"backend.final_span and final_steps must be >= 1, got {self.backend.final_span} "
                f"and {self.backend.final_steps}"
            )
        if self.backend.max_lag is not None and self.backend.max_lag < 1:
            raise ConfigError(f"backend.max_lag must be >= 1 or null, got {self.backend.max_lag}")
        if self.backend.flow_reuse is not None and self.backend.flow_reuse <= 0:
            raise ConfigError(f"backend.flow_reuse must be > 0 or null, got {self.backend.flow_reuse}")
        if self.backend.huber is not None and self.backend.huber <= 0:
            raise ConfigError(f"backend.huber must be > 0 or null, got {self.backend.huber}")
        for name, pool in (
            ("backend.bundle_pool", self.backend.bundle_pool),
            ("backend.final_pool", self.backend.final_pool),
            ("frontend.tracking_pool", self.frontend.tracking_pool),
        ):
            if pool not in (1, 2, 4, 8):
                raise ConfigError(f"{name} must be 1, 2, 4 or 8, got {pool}")
        fusion = self.fusion
        if min(fusion.point_resolution, fusion.mesh_resolution, fusion.mesh_depth_limit, fusion.max_points) <= 0 or (
            fusion.voxel_size is not None and fusion.voxel_size <= 0
        ):
            raise ConfigError(
                "fusion.point_resolution, fusion.mesh_resolution, fusion.mesh_depth_limit, "
                "fusion.max_points and fusion.voxel_size (when set) must be > 0"
            )
        low, high = self.frontend.depth_range
        if not 0 < low < self.frontend.init_depth < high:
            raise ConfigError(
                f"need 0 < depth_range min < init_depth < depth_range max, got {low}, "
                f"{self.frontend.init_depth}, {high}"
            )


def processing_size(width: int, height: int, pixels: int) -> tuple[int, int]:
    """(W, H) of the processing images: the source's aspect ratio, about ``pixels`` in area,
    sides multiples of 16."""
    scale = (pixels / (width * height)) ** 0.5
    return max(16, int(round(width * scale / 16)) * 16), max(16, int(round(height * scale / 16)) * 16)


def upscale_warning(width: int, height: int, pixels: int) -> str | None:
    """A one-line warning when ``pixels`` (``frontend.pixels``) asks for more than the source's
    ``width`` x ``height`` image area, so that its frames would be upscaled to the processing size
    (more time, no detail); None otherwise."""
    if pixels <= width * height:
        return None
    processing_width, processing_height = processing_size(width, height, pixels)
    return (
        f"frontend.pixels={pixels} is more than the source's {width}x{height} = {width * height} pixels: "
        f"its frames are upscaled to {processing_width}x{processing_height}, which costs time and adds no "
        f"detail; set frontend.pixels={width * height} or less"
    )
