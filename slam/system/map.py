"""The shared map state: keyframes and the record of every tracked frame, behind one lock with a
version counter. The frontend appends keyframes and frame records, the backend rewrites keyframe
poses and depths, and readers (viewer, exporters) take consistent snapshots.

Poses: each keyframe stores ``pose_w2c``, an SE3 world-to-camera (``G``, what the solver works
with); :attr:`Keyframe.pose_c2w` gives camera-to-world. A non-keyframe stores its pose relative
to its reference keyframe (``frame_from_keyframe = G_frame G_keyframe^-1``), so its world pose
follows when the backend moves the keyframe; tracking uses that pose as it is, and snapshots
(the trajectory, the viewer) correct the frames before each new keyframe as the keyframe was
(:func:`frames_between_keyframes`).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch

from slam.geometry.lie import SE3
from slam.geometry.resize import resize_depth

#: the depth module's confidence above which its depth counts as confident: its new estimate
#: replaces the depth a keyframe has, and a keyframe whose confidence is still the depth
#: module's shows its depth there to readers (:meth:`Keyframe.view`)
CONFIDENT_DEPTH = 0.3


@dataclass
class Keyframe:
    """One keyframe. Tensors are at the processing resolution (H, W) and on the system's device.

    - ``image``: (3, H, W) float32 RGB in [0, 1].
    - ``pose_w2c``: SE3 () world-to-camera.
    - ``depth``: (H, W) metres; ``confidence``: (H, W) in [0, 1], 0 where there is no depth:
      the depth module's confidence until a dense bundle adjustment has refined the keyframe's
      depth (``confidence_from_views`` False), then its view support (True;
      :mod:`slam.system.bundle`: how much of the depth the correspondences, not the prior,
      determine; at least :data:`slam.system.bundle.UNSUPPORTED_DEPTH` where there is depth):
      the most that the frontend's refinement and the backend's window passes gave it.
    - ``depth_features`` / ``motion_features``: (C, h, w) module features.
    - ``anchor_id``: the keyframe whose pose this one's was computed from (None: none, a cold
      start); a backend pass that moves the anchor moves this one with it (see
      :meth:`MapState.update_keyframes`).
    - ``descriptor``: (D,) appearance descriptor (:func:`slam.system.places.appearance`).
    - ``place_features``, ``place_depth``: what relocalization matches against once the window
      features are gone (set by :meth:`compact`): the motion features as float16 (C, h, w) and
      the depth at half their resolution, (h/2, w/2) float16 map units, 0 where unknown.
    - ``released_depth_scale``: what the depth the keyframe held when its pixels were released
      is to be divided by to be in the map's units now (the scales of the corrections since;
      see :meth:`MapState.apply_similarities`).
    - ``rescaled_by``: the product of the factors a correction multiplied the keyframe's depth
      and the translations measured against it by since it was made
      (:meth:`MapState.apply_similarities`): work begun on the keyframe's geometry before a
      correction is brought to its units by the factor between then and now.
    - ``tracked_from_anchor``: SE3 (), the pose of the keyframe's frame as tracking measured it
      against the anchor (``G_frame G_anchor^-1``, before the keyframe's refinement and the
      backend moved it; None: not made from a tracked frame). What the frames tracked against
      the anchor before it were measured alike: see :func:`frames_between_keyframes`.

    When the keyframe leaves the optimization window, :meth:`compact` drops the features and
    keeps the image as uint8 in [0, 255] and depth and confidence as float16: what fusion and
    export need, in a quarter to half of the memory. Once it is fused (see slam.system.archive),
    :meth:`release` drops those too: ``image``, ``depth`` and ``confidence`` become None. The
    pose, times, descriptor and place record stay for the whole run: every keyframe remains a
    place the camera can be relocalized against.
    """

    id: int
    frame_index: int
    timestamp: float
    image: torch.Tensor | None
    pose_w2c: SE3
    depth: torch.Tensor | None
    confidence: torch.Tensor | None
    depth_features: torch.Tensor | None = None
    motion_features: torch.Tensor | None = None
    anchor_id: int | None = None
    descriptor: torch.Tensor | None = None
    place_features: torch.Tensor | None = None
    place_depth: torch.Tensor | None = None
    released_depth_scale: float = 1.0
    rescaled_by: float = 1.0
    tracked_from_anchor: SE3 | None = None
    confidence_from_views: bool = False

    @property
    def pose_c2w(self) -> np.ndarray:
        """(4, 4) float64 camera-to-world."""
        return np.linalg.inv(self.pose_w2c.matrix().detach().double().cpu().numpy())

    @property
    def compacted(self) -> bool:
        return self.released or (self.image is not None and self.image.dtype == torch.uint8)

    @property
    def released(self) -> bool:
        return self.image is None

    def compact(self) -> None:
        """Keep the place record, drop the features and store image, depth and confidence
        compactly (see the class docstring); the keyframe can no longer take part in
        optimization."""
        if self.motion_features is not None and self.depth is not None:
            height, width = self.motion_features.shape[-2:]
            self.place_features = self.motion_features.half()
            self.place_depth = resize_depth(self.depth.float(), (height // 2, width // 2)).half()
        self.depth_features = self.motion_features = None
        if not self.compacted:
            # not released: image, depth and confidence are all still held
            assert self.image is not None and self.depth is not None and self.confidence is not None
            self.image = _rgb8(self.image)
            self.depth = self.depth.half()
            self.confidence = self.confidence.half()

    @property
    def matchable(self) -> bool:
        """Whether :meth:`matching` has something to give (checked without converting it)."""
        return (self.motion_features is not None and self.depth is not None) or (
            self.place_features is not None and self.place_depth is not None
        )

    def matching(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """What tracking against this keyframe needs: (C, h, w) float32 motion features and a
        float32 depth map (map units, 0 unknown; the window's full resolution, or the place
        record's half of the features'), or None for a keyframe without either."""
        # each attribute read once: the backend may compact or release the keyframe meanwhile
        # (it sets the place record before it drops the features)
        features, depth = self.motion_features, self.depth
        if features is not None and depth is not None:
            return features, depth.float()
        place_features, place_depth = self.place_features, self.place_depth
        if place_features is not None and place_depth is not None:
            return place_features.float(), place_depth.float()
        return None

    def release(self) -> None:
        """Drop the pixels too (see the class docstring): for a keyframe already fused."""
        self.compact()
        self.image = self.depth = self.confidence = None

    def view(self, pose_c2w: np.ndarray, with_images: bool = True) -> KeyframeView:
        """What a reader sees of the keyframe (numpy copies), with its camera-to-world pose
        ``pose_c2w`` (computed by the caller, batched); no arrays when released or not
        ``with_images``. The view's confidence is on one scale for every keyframe, the view
        support's: a confidence that is still the depth module's (no adjustment has refined the
        depth: a cold start's keyframe before the backend's first pass, or a configuration
        without the bundle adjustment) shows as 1 where it is above :data:`CONFIDENT_DEPTH`,
        0 elsewhere, so that a threshold on the support keeps its confident depth."""
        image = depth = confidence = None
        if with_images and not self.released:
            assert self.image is not None and self.depth is not None and self.confidence is not None  # not released
            image = (self.image if self.compacted else _rgb8(self.image)).permute(1, 2, 0).cpu().numpy().copy()
            depth = self.depth.float().cpu().numpy().copy()  # later writes must not show
            held = self.confidence.float()
            if not self.confidence_from_views:
                held = (held > CONFIDENT_DEPTH).float()
            confidence = held.cpu().numpy().copy()
        return KeyframeView(self.id, self.frame_index, self.timestamp, image, depth, confidence, pose_c2w)


@dataclass
class FrameRecord:
    """A tracked input frame: its pose relative to keyframe ``keyframe_id``
    (``frame_from_keyframe = G_frame G_keyframe^-1``, SE3 (): keyframe camera to frame camera), or
    None when it was not tracked. ``status``: tracked, keyframe, lost, or blank (an image with
    nothing to track: black, saturated or textureless)."""

    index: int
    timestamp: float
    keyframe_id: int
    frame_from_keyframe: SE3 | None
    status: str = "tracked"


@dataclass
class KeyframeView:
    """What a reader sees of a keyframe: numpy copies, camera-to-world pose. The arrays are None
    when the keyframe's pixels were released (it is fused) or the snapshot skipped them."""

    id: int
    frame_index: int
    timestamp: float
    image: np.ndarray | None  # (H, W, 3) uint8 RGB
    depth: np.ndarray | None  # (H, W) float32 metres
    confidence: np.ndarray | None  # (H, W) float32
    pose_c2w: np.ndarray  # (4, 4) float64

    @property
    def has_pixels(self) -> bool:
        return self.depth is not None


@dataclass
class MapSnapshot:
    """A consistent copy of the map at ``version``: keyframes, and every frame's timestamp and
    camera-to-world pose (frames not tracked are absent from ``frame_poses_c2w``)."""

    version: int
    keyframes: list[KeyframeView]
    frame_indices: np.ndarray  # (M,) int
    frame_timestamps: np.ndarray  # (M,) float64
    frame_poses_c2w: np.ndarray  # (M, 4, 4) float64 camera-to-world
    frame_status: list[str] = field(default_factory=list)
    untracked_status: dict[int, str] = field(default_factory=dict)  # frame index -> lost or blank


class MapState:
    """Keyframes and frame records, guarded by one re-entrant lock; ``version`` grows with every
    change, so readers can skip work when nothing changed. ``tracked_keyframe_id``: the keyframe
    the frontend tracks frames against now (None: none), which may be an old one it came back
    to; a loop correction holds it where it is, as it holds the window."""

    def __init__(self):
        self.lock = threading.RLock()
        self.version = 0
        self.keyframes: dict[int, Keyframe] = {}
        self.frames: list[FrameRecord] = []
        self.tracked_keyframe_id: int | None = None
        self._next_id = 0

    def new_keyframe_id(self) -> int:
        with self.lock:
            self._next_id += 1
            return self._next_id - 1

    def add_keyframe(self, keyframe: Keyframe) -> None:
        with self.lock:
            self.keyframes[keyframe.id] = keyframe
            self.version += 1

    def add_frame(self, record: FrameRecord) -> None:
        with self.lock:
            self.frames.append(record)
            self.version += 1

    def make_keyframe_record(self, record: FrameRecord, keyframe_id: int) -> None:
        """Turn a tracked frame's ``record`` (in the map) into that of keyframe ``keyframe_id``,
        made from the frame: its pose is the keyframe's."""
        with self.lock:
            identity = SE3.identity(device=self.keyframes[keyframe_id].pose_w2c.data.device)
            self.move_frame_record(record, keyframe_id, identity)
            record.status = "keyframe"

    def move_frame_record(self, record: FrameRecord, keyframe_id: int, frame_from_keyframe: SE3) -> None:
        """Attach a tracked frame's ``record`` (in the map) to keyframe ``keyframe_id`` at
        ``frame_from_keyframe`` (``G_frame G_keyframe^-1``)."""
        with self.lock:
            record.keyframe_id = keyframe_id
            record.frame_from_keyframe = frame_from_keyframe
            self.version += 1

    def update_keyframes(
        self,
        ids: list[int],
        poses: SE3 | None = None,
        depths: torch.Tensor | None = None,
        confidences: torch.Tensor | None = None,
        started_from: SE3 | None = None,
        confidences_from_views: bool = False,
    ) -> None:
        """Write back backend results for keyframes ``ids`` (oldest first): poses SE3 (K,)
        world-to-camera, depths and confidences (K, H, W; ``confidences_from_views``: view
        supports, see :attr:`Keyframe.confidence`). Each keyframe gets its own copy (a view
        would keep the whole batch alive for as long as the keyframe lives).

        ``started_from``: SE3 (K,), the poses the backend started from. Keyframes newer than
        ``ids[-1]`` were added meanwhile, anchored to a keyframe's pose then (``anchor_id``): one
        anchored to a keyframe of ``ids``, or to a newer one so anchored, moves with it, keeping
        its pose relative to it (``G_k <- G_k G_old^-1 G_new``); one anchored elsewhere (a
        relocalization against an older keyframe, a cold start) stays. All in one step under the
        lock."""
        with self.lock:
            if poses is not None and started_from is not None:
                corrections = {kf_id: started_from[k].inv() * SE3(poses.data[k]) for k, kf_id in enumerate(ids)}
                for kf_id in sorted(k for k in self.keyframes if k > ids[-1]):
                    keyframe = self.keyframes[kf_id]
                    correction = corrections.get(keyframe.anchor_id) if keyframe.anchor_id is not None else None
                    if correction is not None:
                        keyframe.pose_w2c = keyframe.pose_w2c * correction
                        corrections[kf_id] = correction
            for k, kf_id in enumerate(ids):
                keyframe = self.keyframes[kf_id]
                if poses is not None:
                    keyframe.pose_w2c = SE3(poses.data[k].detach().clone())
                if depths is not None:
                    keyframe.depth = depths[k].detach().clone()
                if confidences is not None:
                    keyframe.confidence = confidences[k].detach().clone()
                    keyframe.confidence_from_views = confidences_from_views
            self.version += 1

    def apply_similarities(self, corrections: dict[int, tuple[SE3, float]]) -> None:
        """Move keyframes by similarities (a loop closure's correction): ``corrections`` maps a
        keyframe id to its new world-to-camera pose (SE3 ()) and the scale ``s`` its geometry
        shrinks by (new units = old units / s). The keyframe's depth and place depth are divided
        by ``s`` (a released keyframe's ``released_depth_scale`` multiplied by it), and so are the
        translations of the frames tracked against it and the tracked poses
        (:attr:`Keyframe.tracked_from_anchor`) of the keyframes anchored to it. All in one step
        under the lock."""
        with self.lock:
            for kf_id, (pose_w2c, scale) in corrections.items():
                keyframe = self.keyframes[kf_id]
                keyframe.pose_w2c = SE3(pose_w2c.data.to(keyframe.pose_w2c.data))
                keyframe.rescaled_by /= scale
                if keyframe.depth is not None:
                    keyframe.depth = keyframe.depth / scale
                else:
                    keyframe.released_depth_scale *= scale
                if keyframe.place_depth is not None:
                    keyframe.place_depth = keyframe.place_depth / scale
            for keyframe in self.keyframes.values():  # measured in its anchor's units, as frames are
                anchor_correction = corrections.get(keyframe.anchor_id) if keyframe.anchor_id is not None else None
                tracked = keyframe.tracked_from_anchor
                if anchor_correction is not None and tracked is not None:
                    keyframe.tracked_from_anchor = translation_scaled(tracked, 1.0 / anchor_correction[1])
            for record in self.frames:
                correction = corrections.get(record.keyframe_id)
                if correction is not None and record.frame_from_keyframe is not None:
                    record.frame_from_keyframe = translation_scaled(record.frame_from_keyframe, 1.0 / correction[1])
            self.version += 1

    def detached_copy(self) -> MapState:
        """An independent copy of the map: its keyframes and frame records are copies (their
        tensors are shared: the map replaces tensors, it never writes into one), so that poses,
        depths and scales can change on either side without showing on the other (an export's
        global bundle adjustment works on one while tracking goes on)."""
        with self.lock:
            copy = MapState()
            copy.version = self.version
            copy.keyframes = {kf_id: dataclasses.replace(kf) for kf_id, kf in self.keyframes.items()}
            copy.frames = [dataclasses.replace(record) for record in self.frames]
            copy._next_id = self._next_id
            return copy

    def keyframe_list(self) -> list[Keyframe]:
        """Keyframes in creation order (a shallow copy of the list)."""
        with self.lock:
            return [self.keyframes[k] for k in sorted(self.keyframes)]

    def keyframe_views(self, keyframes: list[Keyframe], with_images: bool = True) -> list[KeyframeView]:
        """Consistent copies of some of the map's ``keyframes`` (see :meth:`Keyframe.view`)."""
        with self.lock:
            keyframes_c2w = _camera_to_world([kf.pose_w2c for kf in keyframes])  # one batched conversion
            return [kf.view(pose_c2w, with_images) for kf, pose_c2w in zip(keyframes, keyframes_c2w)]

    def snapshot(self, with_images: bool = True) -> MapSnapshot:
        """A consistent copy of the map (numpy, camera-to-world). ``with_images`` False skips
        the keyframe images, depths and confidences (cheap trajectory-only snapshots)."""
        with self.lock:
            views = self.keyframe_views(self.keyframe_list(), with_images)
            tracked = [r for r in self.frames if r.frame_from_keyframe is not None]
            if tracked:
                relative = frames_between_keyframes(tracked, self.keyframes)
                keyframe_poses = SE3.stack([self.keyframes[r.keyframe_id].pose_w2c for r in tracked])
                poses = _camera_to_world([relative * keyframe_poses])
            else:
                poses = np.zeros((0, 4, 4))
            return MapSnapshot(
                self.version,
                views,
                np.array([r.index for r in tracked], dtype=int),
                np.array([r.timestamp for r in tracked], dtype=np.float64),
                poses,
                [r.status for r in tracked],
                {r.index: r.status for r in self.frames if r.frame_from_keyframe is None},
            )


def frames_between_keyframes(tracked: list[FrameRecord], keyframes: dict[int, Keyframe]) -> SE3:
    """The (M,) ``G_frame G_keyframe^-1`` of the ``tracked`` frame records (in the order the map
    keeps them; each with a pose), those tracked against a keyframe up to the next keyframe made
    from it corrected as that keyframe was. Tracking measures each frame against its keyframe
    alone, and the frame that becomes the next keyframe is then refined and optimised with the
    others (its pose changes by ``R = T^-1 G_next G_keyframe^-1``, ``T`` its tracked pose,
    :attr:`Keyframe.tracked_from_anchor`): the frames between, measured the same way, take the
    part ``exp(a log R)`` of that change, ``a`` growing with the frame index from 0 after the
    frame before them to 1 at the next keyframe's (its error grows with the motion since the
    keyframe: where tracking mistook a sideways move for a turn, for instance). Only frames
    tracked one after another on the keyframe (frames lost or blank in between, absent from
    ``tracked``, do not break the run), straight up to the next keyframe's frame, are corrected;
    the others keep their tracked poses."""
    relative = SE3.stack([cast(SE3, r.frame_from_keyframe) for r in tracked])  # tracked: not None
    positions: list[int] = []
    which: list[int] = []  # for each of those, its next keyframe's place in ``followed``
    shares: list[float] = []
    followed: list[Keyframe] = []
    run: list[int] = []  # positions of consecutive frames tracked on one keyframe
    before = 0  # the index of the frame before the run
    for position, record in enumerate(tracked):  # a run ends at any record that is not "tracked"
        if record.status == "tracked":
            if not run or tracked[run[-1]].keyframe_id != record.keyframe_id:
                run, before = [], tracked[position - 1].index if position > 0 else record.index - 1
            run.append(position)
            continue
        following = keyframes.get(record.keyframe_id)
        if (
            run
            and following is not None
            and following.frame_index == record.index
            and following.anchor_id == tracked[run[-1]].keyframe_id
            and following.tracked_from_anchor is not None
        ):
            span = max(record.index - before, 1)
            for earlier in run:
                positions.append(earlier)
                which.append(len(followed))
                shares.append((tracked[earlier].index - before) / span)
            followed.append(following)
        run = []
    if not positions:
        return relative
    anchors = SE3.stack([keyframes[cast(int, kf.anchor_id)].pose_w2c for kf in followed])
    optimised = SE3.stack([kf.pose_w2c for kf in followed]) * anchors.inv()
    measured = SE3.stack([cast(SE3, kf.tracked_from_anchor) for kf in followed])
    changes = (measured.inv() * optimised).log()  # (K, 6)
    device = relative.data.device
    steps = changes[torch.tensor(which, device=device)] * torch.tensor(shares, device=device)[:, None].to(changes)
    index = torch.tensor(positions, device=device)
    data = relative.data.clone()
    data[index] = (SE3(relative.data[index]) * SE3.exp(steps.to(relative.data))).data
    return SE3(data)


def translation_scaled(pose: SE3, factor: float) -> SE3:
    """``pose`` (SE3 ()) with its translation multiplied by ``factor``."""
    data = pose.data.clone()
    data[:3] *= factor
    return SE3(data)


def _camera_to_world(world_to_camera: list[SE3]) -> np.ndarray:
    """(M, 4, 4) float64 camera-to-world matrices of SE3 world-to-camera poses (each of shape ()
    or (K,)), converted in one batch."""
    if not world_to_camera:
        return np.zeros((0, 4, 4))
    stacked = torch.cat([pose.data.reshape(-1, pose.data.shape[-1]) for pose in world_to_camera])
    return np.linalg.inv(SE3(stacked.detach()).matrix().double().cpu().numpy())


def _rgb8(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float RGB in [0, 1] -> uint8 in [0, 255]."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def segment_starts(keyframes: list[Keyframe]) -> list[int]:
    """The ids of the keyframes (in id order) that begin a map segment: the first keyframe and
    each cold start after a loss (no anchor)."""
    return [kf.id for kf in keyframes if kf.anchor_id is None]


def segment_roots(keyframes: list[Keyframe]) -> dict[int, int]:
    """Each keyframe's id (``keyframes`` in id order) to the id of the cold start its pose was
    computed from, following the anchors: keyframes with the same root share a world frame and
    a scale (a relocalized keyframe joins the segment it was relocalized in, whatever its id)."""
    roots: dict[int, int] = {}
    for kf in keyframes:
        roots[kf.id] = kf.id if kf.anchor_id is None else roots.get(kf.anchor_id, kf.anchor_id)
    return roots


def first_of_segment(keyframes: list[Keyframe], keyframe_id: int) -> int:
    """The id of the first keyframe of the map segment that keyframe ``keyframe_id`` belongs to,
    among ``keyframes`` (in id order); ``keyframe_id`` itself when none begins at or before it."""
    starts = [start for start in segment_starts(keyframes) if start <= keyframe_id]
    return starts[-1] if starts else keyframe_id
