"""Place recognition over the keyframe graph: a small appearance descriptor per image, and the
keyframes a lost frame may be relocalized against, by appearance and by pose proximity, each
with a rotation to start from.

The descriptor is a thumbnail: the grey image shrunk to :data:`THUMBNAIL_SIZE` (an area filter,
which also blurs away small misalignments), its mean removed and its norm made one, so that the
dot product of two aligned thumbnails is their normalized cross-correlation, in [-1, 1]. A frame
is compared with a keyframe over every shift of one thumbnail against the other up to a quarter
of its size (the shifted product over the overlap, so that a smaller overlap scores less); the
best shift scores the pair and, read as a pan and a tilt of the camera, gives the rotation the
verification starts from (PTAM's small-blurry-image relocalization, Klein and Murray 2008).
Candidates are verified geometrically (:mod:`slam.system.relocalizer`), so a look-alike is not
accepted on appearance alone.

Poses are world-to-camera SE3 (``G``); ``frame_from_keyframe = G_frame G_keyframe^-1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F

from slam.geometry.lie import SE3
from slam.system.map import Keyframe

#: (h, w) of the thumbnail the descriptor is made of
THUMBNAIL_SIZE = (24, 32)

#: the largest shift searched, thumbnail pixels (rows, columns): a quarter of its size
MAX_SHIFT = (THUMBNAIL_SIZE[0] // 4, THUMBNAIL_SIZE[1] // 4)

#: standard deviation of the thumbnail's grey levels (in [0, 1]) below which an image is blank:
#: black, saturated or without texture; nothing can be matched in it
BLANK_CONTRAST = 0.01


@dataclass(frozen=True)
class Appearance:
    """An image's descriptor, the flattened thumbnail (D,) float32 with unit norm (zeros for a
    blank image), and its contrast (the standard deviation of the thumbnail's grey levels)."""

    descriptor: torch.Tensor
    contrast: float

    @property
    def blank(self) -> bool:
        return self.contrast < BLANK_CONTRAST


def appearance(image: torch.Tensor) -> Appearance:
    """The :class:`Appearance` of a (3, H, W) RGB image in [0, 1] (see the module docstring)."""
    grey = image.float().mean(dim=0, keepdim=True)[None]
    small = F.interpolate(grey, size=THUMBNAIL_SIZE, mode="area").flatten()
    centred = small - small.mean()
    contrast = float(centred.square().mean().sqrt())
    if contrast < BLANK_CONTRAST:
        return Appearance(torch.zeros_like(centred), contrast)
    return Appearance(centred / centred.norm(), contrast)


def shifted_scores(descriptor: torch.Tensor, keyframe_descriptors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The best score of a frame's ``descriptor`` (D,) against each of K keyframe descriptors
    (K, D) over the thumbnail shifts up to :data:`MAX_SHIFT`, and that shift: (K,) scores and
    (K, 2) shifts (rows, columns) such that the frame's thumbnail pixel x matches the keyframe's
    pixel x + shift."""
    height, width = THUMBNAIL_SIZE
    rows, cols = MAX_SHIFT
    keyframes = keyframe_descriptors.view(-1, 1, height, width)
    padded = F.pad(keyframes, (cols, cols, rows, rows))
    # out[k, 0, r, c] = sum_x padded_k[x + (r, c)] frame[x]: the shift is (r - rows, c - cols)
    maps = F.conv2d(padded, descriptor.view(1, 1, height, width))[:, 0]
    best, where = maps.flatten(1).max(dim=1)
    span = 2 * cols + 1
    shifts = torch.stack([where // span - rows, where % span - cols], dim=1)
    return best, shifts


def rotation_from_shift(shift: torch.Tensor, intrinsics: torch.Tensor, image_size: tuple[int, int]) -> SE3:
    """``frame_from_keyframe`` (SE3 ()) of a camera that turned so that the keyframe's thumbnail
    pixel x + ``shift`` (rows, columns; (2,)) appears at the frame's pixel x: a pan and a tilt,
    no translation. ``intrinsics`` (4,) at the processing size ``image_size`` (H, W)."""
    fx, fy = float(intrinsics[0]), float(intrinsics[1])
    rows = float(shift[0]) * image_size[0] / THUMBNAIL_SIZE[0]  # processing pixels
    cols = float(shift[1]) * image_size[1] / THUMBNAIL_SIZE[1]
    # image content moves by -shift: a turn about y by t moves it by fx * t in u, about x by p by -fy * p in v
    tangent = torch.tensor([0.0, 0.0, 0.0, rows / fy, -cols / fx, 0.0], device=intrinsics.device)
    return SE3.exp(tangent.to(intrinsics.dtype))


@dataclass(frozen=True)
class Candidate:
    """A keyframe to try a lost frame against, where the frame is assumed to start
    (``frame_from_keyframe``, SE3 (): the turn the thumbnails' best shift says), and why it was
    chosen: "appearance" or "proximity"."""

    keyframe: Keyframe
    start: SE3
    why: str


def candidates(
    keyframes: list[Keyframe],
    descriptor: torch.Tensor,
    last_w2c: SE3 | None,
    by_appearance: int,
    by_proximity: int,
    intrinsics: torch.Tensor,
    image_size: tuple[int, int],
    min_score: float = 0.0,
) -> list[Candidate]:
    """Up to ``by_appearance`` keyframes whose thumbnail correlates best (and by more than
    ``min_score``) with the frame's ``descriptor`` (D,), then up to ``by_proximity`` more whose camera centre is nearest
    that of ``last_w2c`` (the last tracked pose; None: no proximity candidates), among the
    ``keyframes`` that can be matched against (:meth:`Keyframe.matching`); each keyframe once,
    best first. A blank frame (zero descriptor) gets neither. ``intrinsics`` (4,) at the
    processing size ``image_size`` (H, W) turn shifts into start rotations."""
    usable = [kf for kf in keyframes if kf.descriptor is not None and kf.matchable]
    if not usable or not bool(descriptor.any()):
        return []
    scores, shifts = shifted_scores(descriptor, torch.stack([cast(torch.Tensor, kf.descriptor) for kf in usable]))
    chosen: list[Candidate] = []
    for k in torch.argsort(scores, descending=True)[:by_appearance].tolist():
        if float(scores[k]) > min_score:
            chosen.append(Candidate(usable[k], rotation_from_shift(shifts[k], intrinsics, image_size), "appearance"))
    if last_w2c is not None and by_proximity > 0:
        taken = {c.keyframe.id for c in chosen}
        distances = (camera_centres([kf.pose_w2c for kf in usable]) - camera_centre(last_w2c)).norm(dim=-1)
        near = [k for k in torch.argsort(distances).tolist() if usable[k].id not in taken][:by_proximity]
        chosen += [
            Candidate(usable[k], rotation_from_shift(shifts[k], intrinsics, image_size), "proximity") for k in near
        ]
    return chosen


def camera_centre(pose_w2c: SE3) -> torch.Tensor:
    """(3,) world position of the camera centre of a world-to-camera pose (SE3 ())."""
    return pose_w2c.inv().data[:3]


def camera_centres(poses_w2c: list[SE3]) -> torch.Tensor:
    """(K, 3) world positions of the camera centres of K world-to-camera poses (SE3 () each), in
    one batch."""
    return SE3.stack(poses_w2c).inv().data[:, :3]
