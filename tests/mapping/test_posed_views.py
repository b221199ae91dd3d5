"""Posed views (--save-views): the COLMAP text model reads back in COLMAP's own reader with the
poses, camera and points written; nerfstudio's transforms.json holds the same cameras in its
axes; end to end, the map's points seen through the exported cameras land on pixels of their
own colour in the exported images."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from apps.cli import main
from slam.geometry.camera import Camera
from slam.mapping.point_cloud import PointCloud
from slam.mapping.posed_views import MAX_POINTS, write_posed_views, write_view_image

pycolmap = pytest.importorskip("pycolmap", reason="pycolmap (requirements.txt) reads the COLMAP model back")


def _pose_c2w(rotvec: list[float], centre: list[float]) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    pose[:3, 3] = centre
    return pose


def test_the_colmap_model_and_transforms_hold_the_cameras_and_points_written(tmp_path):
    camera = Camera(250.0, 251.0, 160.5, 119.5, width=320, height=240)
    poses = {3: _pose_c2w([0.1, -0.2, 0.3], [1.0, 2.0, -0.5]), 9: _pose_c2w([0.0, 0.4, 0.0], [1.5, 2.0, -0.4])}
    for index in poses:
        write_view_image(tmp_path, index, np.full((240, 320, 3), 20 * index, dtype=np.uint8))
    rng = np.random.default_rng(1)
    cloud = PointCloud(rng.normal(size=(MAX_POINTS + 10, 3)), rng.integers(0, 256, size=(MAX_POINTS + 10, 3)))
    views = [*poses.items(), (12, np.eye(4))]  # frame 12 has no image: left out
    assert write_posed_views(tmp_path, camera, views, cloud) == [3, 9]

    model = pycolmap.Reconstruction(str(tmp_path / "sparse" / "0"))
    (colmap_camera,) = model.cameras.values()
    assert colmap_camera.width == 320 and colmap_camera.height == 240
    assert np.allclose(colmap_camera.params, [250.0, 251.0, 160.5, 119.5])
    images = {image.name: image for image in model.images.values()}
    assert sorted(images) == ["000003.jpg", "000009.jpg"]
    for index, pose_c2w in poses.items():
        world_to_camera = images[f"{index:06d}.jpg"].cam_from_world().matrix()
        assert np.allclose(world_to_camera, np.linalg.inv(pose_c2w)[:3], atol=1e-9)
    assert model.num_points3D() == MAX_POINTS
    written = np.stack([point.xyz for point in model.points3D.values()])
    distances, _ = cKDTree(cloud.points).query(written)
    assert distances.max() < 1e-4  # each one of the cloud's points, in 6 significant digits

    transforms = json.loads((tmp_path / "transforms.json").read_text())
    assert (transforms["w"], transforms["h"], transforms["fl_x"], transforms["cy"]) == (320, 240, 250.0, 119.5)
    for frame, (index, pose_c2w) in zip(transforms["frames"], poses.items()):
        image = cv2.imread(str(tmp_path / frame["file_path"]))
        assert image is not None and image.shape == (240, 320, 3) and abs(int(image[0, 0, 0]) - 20 * index) <= 2
        # nerfstudio's camera looks along -z with y up: the same camera, its y and z axes flipped
        assert np.allclose(np.array(frame["transform_matrix"]) @ np.diag([1, -1, -1, 1]), pose_c2w)
    assert (tmp_path / transforms["ply_file_path"]).stat().st_size > 0


@pytest.mark.slow
def test_a_run_with_save_views_exports_cameras_that_see_the_map_where_its_images_show_it(tmp_path):
    """The map's points projected through each exported camera land, where they fall inside the
    image, on pixels of the point's own colour: the poses, the intrinsics and the images belong
    together (a pose inverted, or the axes of the other convention, put them on unrelated
    pixels). Measured: a median colour difference of 3 of 255 against 64 for unrelated pixels."""
    out = tmp_path / "run"
    args = ["run", "synthetic", "--max-frames", "30", "--out", str(out), "--save-views", "--viewer", "none"]
    assert main([*args, "--quiet", "--set", "backend.mode=inline", "--set", "fusion.mesh=false"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["posed_views"] == stats["keyframes"] >= 4
    model = pycolmap.Reconstruction(str(out / "views" / "sparse" / "0"))
    assert len(model.images) == stats["keyframes"] and model.num_points3D() > 1000
    (camera,) = model.cameras.values()
    fx, fy, cx, cy = camera.params
    points = np.stack([p.xyz for p in model.points3D.values()])
    colours = np.stack([p.color for p in model.points3D.values()]).astype(float)
    differences, shuffled = [], []
    for image in model.images.values():
        pixels = cv2.cvtColor(cv2.imread(str(out / "views" / "images" / image.name)), cv2.COLOR_BGR2RGB).astype(float)
        in_camera = points @ image.cam_from_world().matrix()[:, :3].T + image.cam_from_world().matrix()[:, 3]
        ahead = in_camera[:, 2] > 1e-3
        u = np.round(fx * in_camera[ahead, 0] / in_camera[ahead, 2] + cx).astype(int)
        v = np.round(fy * in_camera[ahead, 1] / in_camera[ahead, 2] + cy).astype(int)
        inside = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
        seen = pixels[v[inside], u[inside]]
        differences.append(np.abs(seen - colours[ahead][inside]).mean(axis=1))
        shuffled.append(np.abs(seen[::-1] - colours[ahead][inside]).mean(axis=1))
    assert sum(len(d) for d in differences) > 1000
    median, unrelated = float(np.median(np.concatenate(differences))), float(np.median(np.concatenate(shuffled)))
    assert median < 12 and unrelated > 2 * median, (median, unrelated)
    transforms = json.loads((out / "views" / "transforms.json").read_text())
    assert len(transforms["frames"]) == stats["keyframes"]
