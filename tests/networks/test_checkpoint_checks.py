"""Checkpoints that cannot work are refused at load with one line: non-finite weights, tensors
of another shape than the stored config's network, tensors missing."""

from __future__ import annotations

import pytest
import torch

import weights
from networks.factory import WeightsError, build_depth_module, build_motion_module, load_checkpoint


def _shipped() -> dict:
    return torch.load(weights.LITE, map_location="cpu", weights_only=True)


def test_all_nan_weights_are_refused_naming_the_file_and_tensor(tmp_path):
    checkpoint = _shipped()
    for role in ("depth", "motion"):
        checkpoint[role]["state_dict"] = {
            name: torch.full_like(tensor, float("nan")) for name, tensor in checkpoint[role]["state_dict"].items()
        }
    path = tmp_path / "nan.pt"
    torch.save(checkpoint, path)
    first = next(iter(checkpoint["depth"]["state_dict"]))
    with pytest.raises(WeightsError, match=rf"nan\.pt: depth\.{first} holds NaN or infinite values") as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value)


def test_one_infinite_value_is_refused(tmp_path):
    checkpoint = _shipped()
    name, tensor = list(checkpoint["motion"]["state_dict"].items())[-1]
    tensor.view(-1)[0] = float("inf")
    path = tmp_path / "inf.pt"
    torch.save(checkpoint, path)
    with pytest.raises(WeightsError, match=rf"motion\.{name} holds NaN or infinite values"):
        load_checkpoint(path)


def test_a_tensor_of_another_shape_is_named_with_both_shapes(tmp_path):
    checkpoint = _shipped()
    state = checkpoint["depth"]["state_dict"]
    name = next(iter(state))
    expected = tuple(state[name].shape)
    state[name] = torch.zeros((2 * expected[0], *expected[1:]))
    path = tmp_path / "wide.pt"
    torch.save(checkpoint, path)
    loaded = load_checkpoint(path)
    with pytest.raises(WeightsError) as caught:
        build_depth_module("lite", (192, 256), (0.2, 10.0), loaded)
    message = str(caught.value)
    assert message.startswith(f"{path}: depth.{name} has shape {(2 * expected[0], *expected[1:])}")
    assert f"expects {expected}" in message and "\n" not in message


def test_a_missing_tensor_is_named(tmp_path):
    checkpoint = _shipped()
    name = list(checkpoint["motion"]["state_dict"])[-1]
    del checkpoint["motion"]["state_dict"][name]
    path = tmp_path / "short.pt"
    torch.save(checkpoint, path)
    with pytest.raises(WeightsError, match=rf"short\.pt: the motion weights lack motion\.{name}"):
        build_motion_module("lite", (192, 256), load_checkpoint(path))


def test_the_shipped_weights_load():
    checkpoint = load_checkpoint(weights.LITE)
    assert checkpoint["file"] == str(weights.LITE)
    build_depth_module("lite", (192, 256), (0.2, 10.0), checkpoint)
    build_motion_module("lite", (192, 256), checkpoint)


def test_lite_weights_asked_to_run_as_the_paper_size_are_refused():
    checkpoint = load_checkpoint(weights.LITE)
    with pytest.raises(WeightsError, match=r"lite\.pt holds the lite depth network, not the paper one: set modules"):
        build_depth_module("paper", (192, 256), (0.2, 10.0), checkpoint)
    with pytest.raises(WeightsError, match="holds the lite motion network, not the paper one"):
        build_motion_module("paper", (192, 256), checkpoint)
