"""Posed views: the keyframes' images with their poses and the camera, written so that the tools
a run feeds next take the folder as it is: Gaussian splatting (the reference 3DGS code reads
``images/`` and ``sparse/0/``), nerfstudio (``ns-train splatfacto --data FOLDER`` reads
``transforms.json``) and COLMAP itself (a text model).

Layout of the folder:

- ``images/NNNNNN.jpg``: each keyframe's image at the processing resolution, undistorted (the
  camera below holds for it), NNNNNN its frame index.
- ``sparse/0/cameras.txt``: one PINHOLE camera; ``images.txt``: each image's world-to-camera pose
  (COLMAP's convention: quaternion ``qw qx qy qz`` and translation, camera axes x right, y down,
  z forward), with no 2D points; ``points3D.txt``: points of the fused cloud with their colours
  and no tracks (what splatting starts its Gaussians from).
- ``transforms.json``: nerfstudio's format: the intrinsics, each frame's camera-to-world matrix
  with nerfstudio's camera axes (x right, y up, z backward), and ``ply_file_path`` naming
  ``points3D.ply``, the same points.

Poses and points are in the map's frame and units (monocular: an arbitrary scale).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from slam.errors import ExportError
from slam.geometry.camera import Camera
from slam.io.atomic import write_bytes_atomic, write_text_atomic
from slam.mapping.export import write_point_cloud_ply
from slam.mapping.point_cloud import PointCloud, subsample

#: folder of the images, file names of the models, relative to the posed views' folder
IMAGES = "images"
COLMAP_MODEL = Path("sparse") / "0"
TRANSFORMS = "transforms.json"
POINTS_PLY = "points3D.ply"

#: the most points of the fused cloud written (a seeded random subset of a larger cloud):
#: enough to start splatting from, small enough to read quickly
MAX_POINTS = 100_000

#: JPEG quality of the images
JPEG_QUALITY = 95

#: OpenCV camera axes (x right, y down, z forward) to nerfstudio's (x right, y up, z backward)
_OPENCV_TO_NERFSTUDIO = np.diag([1.0, -1.0, -1.0, 1.0])


def image_file(frame_index: int) -> str:
    """The file name of the keyframe image of frame ``frame_index`` in ``images/``."""
    return f"{frame_index:06d}.jpg"


def write_view_image(folder: str | Path, frame_index: int, image: np.ndarray) -> Path:
    """Write a keyframe's (H, W, 3) uint8 RGB ``image`` as ``folder/images/NNNNNN.jpg``
    (atomically); returns the path."""
    path = Path(folder) / IMAGES / image_file(frame_index)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    encoded, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not encoded:
        raise ExportError(f"cannot write {path}: JPEG encoding failed")
    write_bytes_atomic(path, data.tobytes())
    return path


def write_posed_views(
    folder: str | Path, camera: Camera, views: list[tuple[int, np.ndarray]], cloud: PointCloud
) -> list[int]:
    """Write the COLMAP text model, ``transforms.json`` and ``points3D.ply`` (see the module
    docstring) for the ``views``: (frame index, (4, 4) camera-to-world pose) of keyframes whose
    image ``write_view_image`` wrote into ``folder``; a view without its image file is left out.
    ``camera``: the images' pinhole intrinsics and size; ``cloud``: the fused map, of which at
    most :data:`MAX_POINTS` points are written. Returns the frame indices written."""
    folder = Path(folder)
    if camera.width is None or camera.height is None:
        raise ValueError("the posed views need the camera's image size")
    present = [(index, pose) for index, pose in views if (folder / IMAGES / image_file(index)).is_file()]
    points = subsample(cloud, MAX_POINTS)
    model = folder / COLMAP_MODEL
    write_text_atomic(
        model / "cameras.txt",
        "# CAMERA_ID MODEL WIDTH HEIGHT PARAMS[fx fy cx cy]\n"
        f"1 PINHOLE {camera.width} {camera.height} {_numbers(camera.fx, camera.fy, camera.cx, camera.cy)}\n",
    )
    lines = ["# IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, then its 2D points (none)"]
    for image_id, (index, pose_c2w) in enumerate(present, start=1):
        pose_w2c = np.linalg.inv(pose_c2w)
        qx, qy, qz, qw = Rotation.from_matrix(pose_w2c[:3, :3]).as_quat()
        lines += [f"{image_id} {_numbers(qw, qx, qy, qz, *pose_w2c[:3, 3])} 1 {image_file(index)}", ""]
    write_text_atomic(model / "images.txt", "\n".join(lines) + "\n")
    write_text_atomic(
        model / "points3D.txt",
        "# POINT3D_ID X Y Z R G B ERROR TRACK[] (no tracks: points of the fused depth maps)\n"
        + "".join(
            f"{k} {x:.6g} {y:.6g} {z:.6g} {r} {g} {b} 0\n"
            for k, ((x, y, z), (r, g, b)) in enumerate(zip(points.points.tolist(), points.colours.tolist()), start=1)
        ),
    )
    write_point_cloud_ply(folder / POINTS_PLY, PointCloud(points.points, points.colours))
    transforms = {
        "camera_model": "OPENCV",
        "fl_x": float(camera.fx),
        "fl_y": float(camera.fy),
        "cx": float(camera.cx),
        "cy": float(camera.cy),
        "w": camera.width,
        "h": camera.height,
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "ply_file_path": POINTS_PLY,
        "frames": [
            {
                "file_path": f"{IMAGES}/{image_file(index)}",
                "transform_matrix": (np.asarray(pose_c2w, dtype=np.float64) @ _OPENCV_TO_NERFSTUDIO).tolist(),
                "colmap_im_id": image_id,
            }
            for image_id, (index, pose_c2w) in enumerate(present, start=1)
        ],
    }
    write_text_atomic(folder / TRANSFORMS, json.dumps(transforms, indent=2) + "\n")
    return [index for index, _ in present]


def _numbers(*values: float) -> str:
    """``values`` as text, each exactly (the shortest text that reads back as the same double)."""
    return " ".join(repr(float(value)) for value in values)
