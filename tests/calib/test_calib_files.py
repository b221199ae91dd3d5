"""The calibration files shipped in calib/: they parse, and match the datasets' own calibrations."""

from __future__ import annotations

import numpy as np
import pytest

import calib
from slam.errors import CalibrationError
from slam.geometry.camera import Camera

#: name -> (image width, height) each shipped file is documented for.
SHIPPED = {
    "tum_fr1": (640, 480),
    "tum_fr2": (640, 480),
    "tum_fr3": (640, 480),
    "kitti_00-02": (1241, 376),
    "kitti_03": (1242, 375),
    "kitti_04-12": (1226, 370),
    "euroc_cam0": (752, 480),
}


def test_available_lists_the_shipped_files():
    assert calib.available() == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_file_parses_and_fits_its_image_size(name):
    path = calib.path_for(name)
    camera = Camera.from_file(path)
    camera.with_size(*SHIPPED[name])  # raises if the principal point does not fit the image
    assert f"{SHIPPED[name][0]}x{SHIPPED[name][1]}" in path.read_text()  # the comment names the size


def test_path_for_accepts_the_file_name():
    assert calib.path_for("tum_fr1.txt") == calib.path_for("tum_fr1")


@pytest.mark.parametrize("name", ["tum_fr4", "../pyproject", ""])
def test_unknown_name_lists_the_available_ones(name):
    with pytest.raises(CalibrationError, match="available: .*kitti_04-12.*tum_fr1"):
        calib.path_for(name)


def test_distortion_is_shipped_where_the_images_are_distorted():
    assert Camera.from_file(calib.path_for("tum_fr1")).distortion == (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)
    assert len(Camera.from_file(calib.path_for("euroc_cam0")).distortion) == 4
    for rectified in ("tum_fr3", "kitti_00-02", "kitti_03", "kitti_04-12"):
        assert not Camera.from_file(calib.path_for(rectified)).is_distorted


def test_kitti_04_12_matches_p0_of_sequence_07(shared_data):
    line = next(
        ln for ln in (shared_data / "kitti_07/sequences/07/calib.txt").read_text().splitlines() if ln.startswith("P0:")
    )
    P0 = np.array([float(v) for v in line.split()[1:]]).reshape(3, 4)
    camera = Camera.from_file(calib.path_for("kitti_04-12"))
    np.testing.assert_allclose(camera.K, P0[:, :3], rtol=0, atol=1e-6)


def test_tum_fr1_matches_the_sequence_calibration(shared_data):
    shipped = Camera.from_file(calib.path_for("tum_fr1"))
    sequence = Camera.from_file(shared_data / "tum_fr1_rpy/calib.txt")
    assert shipped == sequence
