"""Place recognition: the appearance descriptor and the keyframes a lost frame is tried against."""

from __future__ import annotations

import numpy as np
import torch

from slam.geometry.lie import SE3
from slam.io.sources.synthetic import SyntheticSource
from slam.system.frontend import image_tensor
from slam.system.map import Keyframe, MapState
from slam.system.places import appearance, candidates, rotation_from_shift, shifted_scores

INTRINSICS = torch.tensor([100.0, 100.0, 63.5, 47.5])
SIZE = (96, 128)


def _textured(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 12, 16, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(96, 128), mode="bilinear", align_corners=False)[0]


def _keyframe(state: MapState, image: torch.Tensor, centre_x: float) -> Keyframe:
    pose_c2w = SE3.exp(torch.tensor([centre_x, 0.0, 0.0, 0.0, 0.0, 0.0]))
    keyframe = Keyframe(
        state.new_keyframe_id(),
        0,
        0.0,
        image,
        pose_c2w.inv(),
        torch.full((96, 128), 2.0),
        torch.ones(96, 128),
        motion_features=torch.rand(1, 48, 64),
        descriptor=appearance(image).descriptor,
    )
    state.add_keyframe(keyframe)
    return keyframe


def test_the_descriptor_finds_the_same_view_under_a_change_of_light_and_ignores_blank_images():
    image = _textured(0)
    same = appearance(image * 0.7 + 0.1)  # darker, less contrast
    other = appearance(_textured(1))
    reference = appearance(image)
    assert abs(float(reference.descriptor.norm()) - 1) < 1e-5
    assert float(reference.descriptor @ same.descriptor) > 0.99
    assert float(reference.descriptor @ other.descriptor) < 0.5
    black = appearance(torch.zeros(3, 96, 128))
    flat = appearance(torch.full((3, 96, 128), 0.5) + 0.001 * torch.rand(3, 96, 128))
    assert black.blank and flat.blank and not reference.blank
    assert not bool(black.descriptor.any())


def test_candidates_come_by_appearance_then_by_nearness_to_the_last_pose_each_once():
    state = MapState()
    images = [_textured(seed) for seed in range(5)]
    keyframes = [_keyframe(state, image, float(k)) for k, image in enumerate(images)]
    last_w2c = SE3.exp(torch.tensor([3.9, 0.0, 0.0, 0.0, 0.0, 0.0])).inv()  # near keyframe 4
    found = candidates(state.keyframe_list(), appearance(images[1]).descriptor, last_w2c, 1, 2, INTRINSICS, SIZE)
    assert [(c.keyframe.id, c.why) for c in found] == [
        (keyframes[1].id, "appearance"),
        (keyframes[4].id, "proximity"),
        (keyframes[3].id, "proximity"),
    ]
    assert torch.allclose(found[0].start.data, SE3.identity().data, atol=1e-6)  # the same image: no turn
    # a blank frame has no candidates, and without a last pose there are no proximity ones
    assert candidates(state.keyframe_list(), torch.zeros(24 * 32), last_w2c, 3, 2, INTRINSICS, SIZE) == []
    by_appearance = candidates(state.keyframe_list(), appearance(images[2]).descriptor, None, 3, 2, INTRINSICS, SIZE)
    assert [c.why for c in by_appearance] == ["appearance"] * len(by_appearance) and by_appearance


def test_the_thumbnails_best_shift_gives_the_turn_of_the_camera():
    """Two frames of the synthetic room 15 frames apart (the camera turned about 20 degrees):
    the rotation read from the thumbnails' best shift is nearer the true one than no turn is,
    and the shifted score is above the unshifted one."""
    frames = list(SyntheticSource("room", 0, 46))
    keyframe, frame = frames[30], frames[45]
    device = torch.device("cpu")
    frame_look, keyframe_look = (appearance(image_tensor(f, device)) for f in (frame, keyframe))
    score, shift = shifted_scores(frame_look.descriptor, keyframe_look.descriptor[None])
    assert float(score[0]) > float(frame_look.descriptor @ keyframe_look.descriptor) + 0.2
    intrinsics = torch.tensor(frame.camera.intrinsics, dtype=torch.float32)
    start = rotation_from_shift(shift[0], intrinsics, (frame.height, frame.width))
    true = torch.from_numpy(np.linalg.inv(frame.pose_gt) @ keyframe.pose_gt).float()  # frame from keyframe
    true_rotation = SE3.from_matrix(true).log()[3:]
    assert float((start.log()[3:] - true_rotation).norm()) < 0.5 * float(true_rotation.norm())
