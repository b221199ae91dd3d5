"""Camera sources: real sequences (TUM, KITTI, HoloLens in TUM layout) and small folders built here
(EuRoC, image folders, videos, KITTI/TUM variants), options, detection and bad input."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slam.errors import CalibrationError, SourceError
from slam.geometry.camera import Camera
from slam.io.sources.base import SourceOptions
from slam.io.sources.detect import SOURCE_KINDS, detect_kind, open_source
from slam.io.sources.synthetic import SyntheticSource
from slam.io.sources.tum import associate
from slam.io.sources.video import VideoSource
from slam.io.trajectory import read_kitti, read_tum


def write_frames(folder: Path, names: list[str], width: int = 64, height: int = 48) -> list[np.ndarray]:
    """Write textured RGB images (value of frame i around 10 * i) and return them as RGB."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = []
    for i, name in enumerate(names):
        image = np.clip(10 * i + rng.integers(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
        assert cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append(image)
    return images


def read_table(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


# ---------------------------------------------------------------------------------------- TUM


def test_tum_fr1_rpy_frames_and_ground_truth(shared_data):
    folder = shared_data / "tum_fr1_rpy"
    source = open_source(folder, options=SourceOptions(stride=30))
    assert source.kind == "tum" and source.has_ground_truth
    assert source.num_raw == 120 and len(source) == 4
    # fr1 images are distorted: delivered frames are undistorted, pinhole with the same focal length
    assert source.camera.distortion == () and source.camera.size == (640, 480) and source.camera.fx == 517.3
    rgb = read_table(folder / "rgb.txt")
    gt = read_tum(folder / "groundtruth.txt")
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    for frame, raw_index in zip(frames, range(0, 120, 30)):
        assert frame.image.shape == (480, 640, 3) and frame.image.dtype == np.uint8
        assert frame.timestamp == float(rgb[raw_index][0])
        nearest = np.argmin(np.abs(gt.timestamps - frame.timestamp))
        assert np.linalg.norm(frame.pose_gt[:3, 3] - gt.poses[nearest, :3, 3]) < 0.01
        angle = Rotation.from_matrix(frame.pose_gt[:3, :3].T @ gt.poses[nearest, :3, :3]).magnitude()
        assert np.degrees(angle) < 3.0


def test_tum_depth_is_undistorted_with_the_image(shared_data):
    """A valid depth pixel of the undistorted map comes from where the distortion model maps it in
    the raw depth png (up to the nearest-neighbour rounding)."""
    folder = shared_data / "tum_fr1_rpy"
    source = open_source(folder, options=SourceOptions(max_frames=1))
    frame = next(iter(source))
    assert frame.depth_gt.shape == (480, 640) and frame.depth_gt.dtype == np.float32
    raw = cv2.imread(str(source.depth_files[0]), cv2.IMREAD_UNCHANGED).astype(np.float32) / 5000.0
    distorted = Camera.from_file(folder / "calib.txt")
    v, u = np.mgrid[20:460:20, 20:620:20]
    keep = frame.depth_gt[v, u] > 0
    u, v = u[keep], v[keep]
    rays = np.stack([(u - distorted.cx) / distorted.fx, (v - distorted.cy) / distorted.fy, np.ones_like(u, float)], 1)
    pixels, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), distorted.K, np.array(distorted.distortion))
    pixels = np.rint(pixels.reshape(-1, 2)).astype(int)
    matches = [
        frame.depth_gt[y, x] in raw[max(py - 1, 0) : py + 2, max(px - 1, 0) : px + 2]
        for x, y, (px, py) in zip(u, v, pixels)
    ]
    assert len(matches) > 200 and np.mean(matches) > 0.97
    # the black border that undistortion adds to the image is invalid depth too
    assert (frame.depth_gt[frame.image.sum(axis=2) == 0] == 0).all()


def test_tum_depth_association_is_one_to_one(shared_data):
    source = open_source(shared_data / "tum_fr1_rpy")
    with_depth = [p for p in source.depth_files if p is not None]
    # 101 depth maps for 120 images: each depth map goes to one image at most, closest first
    assert len(with_depth) == len(set(with_depth)) == 101
    assert source.depth_files[0].name == "1305031244.212401.png" and source.depth_files[1] is None
    frames = list(open_source(shared_data / "tum_fr1_rpy", options=SourceOptions(max_frames=2)))
    assert frames[0].depth_gt is not None and frames[1].depth_gt is None
    # v2d run asks for no depth maps (it does not use them): none is read
    unread = next(iter(open_source(shared_data / "tum_fr1_rpy", options=SourceOptions(max_frames=1, depth=False))))
    assert unread.depth_gt is None and np.array_equal(unread.image, frames[0].image)


def test_associate_takes_closest_pairs_first():
    images = np.array([0.0, 0.033, 0.066, 0.1])
    depths = np.array([0.02, 0.05, 0.2])
    # 0.02 is 0.013 from 0.033 and 0.02 from 0.0 (not < 0.02); 0.05 is 0.016 from both 0.033 and 0.066
    assert associate(images, depths).tolist() == [-1, 0, 1, -1]
    assert associate(images, np.array([])).tolist() == [-1, -1, -1, -1]


def test_hololens_scene_in_tum_layout(shared_data):
    source = open_source(shared_data / "hololens_000", options=SourceOptions(stride=50))
    assert source.kind == "tum" and source.num_raw == 150 and source.has_ground_truth
    assert source.camera.size == (540, 360)
    gt = read_tum(shared_data / "hololens_000" / "groundtruth.txt")
    for frame in source:
        assert frame.image.shape == (360, 540, 3)
        assert frame.depth_gt.shape == (360, 540) and (frame.depth_gt > 0).mean() > 0.5
        exact = np.flatnonzero(np.isclose(gt.timestamps, frame.timestamp))
        np.testing.assert_allclose(frame.pose_gt, gt.poses[exact[0]], atol=1e-9)


def test_tum_resize_scales_intrinsics_and_depth(shared_data):
    source = open_source(shared_data / "tum_fr1_rpy", options=SourceOptions(max_frames=1, resize=(320, 240)))
    frame = next(iter(source))
    assert frame.image.shape == (240, 320, 3) and frame.depth_gt.shape == (240, 320)
    assert frame.camera.size == (320, 240)
    assert frame.camera.fx == pytest.approx(517.3 / 2) and frame.camera.fy == pytest.approx(516.5 / 2)
    assert frame.camera.cx == pytest.approx(0.5 * (318.6 + 0.5) - 0.5)
    assert frame.camera.cy == pytest.approx(0.5 * (255.3 + 0.5) - 0.5)


def make_tum(folder: Path, count: int = 3, width: int = 64, height: int = 48, groundtruth: bool = True) -> None:
    stamps = [100.0 + 0.1 * i for i in range(count)]
    write_frames(folder / "rgb", [f"{t:.6f}.png" for t in stamps], width, height)
    (folder / "rgb.txt").write_text("# timestamp filename\n" + "".join(f"{t:.6f} rgb/{t:.6f}.png\n" for t in stamps))
    (folder / "depth").mkdir()
    for t in stamps:
        cv2.imwrite(str(folder / "depth" / f"{t:.6f}.png"), np.full((height, width), 5000, np.uint16))
    (folder / "depth.txt").write_text("".join(f"{t + 0.005:.6f} depth/{t:.6f}.png\n" for t in stamps))
    if groundtruth:
        # ground truth covers the first two frames only: x = t - 100 metres
        (folder / "groundtruth.txt").write_text(
            "".join(f"{t:.4f} {t - 100:.4f} 0 0 0 0 0 1\n" for t in (100.0, 100.05, 100.1))
        )


def test_tum_frames_outside_ground_truth_have_none(tmp_path):
    make_tum(tmp_path / "seq")
    frames = list(open_source(tmp_path / "seq", calib=None))
    assert frames[0].pose_gt[0, 3] == pytest.approx(0.0) and frames[1].pose_gt[0, 3] == pytest.approx(0.1)
    assert frames[2].pose_gt is None
    assert all(f.depth_gt is not None and np.allclose(f.depth_gt, 1.0) for f in frames)


def test_tum_uses_shipped_calibration_for_freiburg_folder(tmp_path):
    folder = tmp_path / "rgbd_dataset_freiburg1_xyz"
    make_tum(folder, count=1, width=640, height=480, groundtruth=False)
    source = open_source(folder)
    assert source.calib_file.name == "tum_fr1.txt"
    assert (source.camera.fx, source.camera.cy, source.camera.distortion) == (517.3, 255.3, ())


# ---------------------------------------------------------------------------------------- KITTI


def test_kitti_07(shared_data):
    root = shared_data / "kitti_07"
    source = open_source(root, options=SourceOptions(max_frames=2))
    assert source.kind == "kitti" and source.sequence == "07" and source.has_ground_truth
    assert source.num_raw == 100 and source.camera.size == (1226, 370)
    assert source.camera.fx == pytest.approx(707.0912) and source.camera.cx == pytest.approx(601.8873)
    frames = list(source)
    assert len(frames) == 2 and frames[0].image.shape == (370, 1226, 3)
    # image_0 is grey, replicated to three channels
    assert (frames[0].image[..., 0] == frames[0].image[..., 2]).all()
    first_pose = np.array([float(v) for v in (root / "poses" / "07.txt").read_text().split("\n")[0].split()])
    np.testing.assert_array_equal(frames[0].pose_gt[:3, :], first_pose.reshape(3, 4))
    times = [float(v) for v in (root / "sequences" / "07" / "times.txt").read_text().split()]
    assert [f.timestamp for f in frames] == times[:2]


def test_kitti_options_select_frames(shared_data):
    root = shared_data / "kitti_07"
    source = open_source(root / "sequences" / "07", options=SourceOptions(start=10, stride=7, max_frames=3))
    assert len(source) == 3
    times = [float(v) for v in (root / "sequences" / "07" / "times.txt").read_text().split()]
    poses = read_kitti(root / "poses" / "07.txt").poses
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2]
    for frame, raw_index in zip(frames, (10, 17, 24)):
        assert frame.timestamp == times[raw_index]
        np.testing.assert_array_equal(frame.pose_gt, poses[raw_index])


def make_kitti(
    root: Path, sequence: str, camera: str, p_matrix: np.ndarray | None, width: int = 64, height: int = 48
) -> np.ndarray:
    """Two frames of a KITTI layout; returns the camera-0 poses written to poses/NN.txt."""
    folder = root / "sequences" / sequence
    write_frames(folder / camera, ["000000.png", "000001.png"], width, height)
    (folder / "times.txt").write_text("0.0\n0.1\n")
    if p_matrix is not None:
        lines = [
            f"P{n}: " + " ".join(str(v) for v in (p_matrix if f"image_{n}" == camera else np.eye(3, 4)).ravel())
            for n in range(4)
        ]
        (folder / "calib.txt").write_text("\n".join(lines) + "\n")
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[:, :3, :3] = Rotation.from_euler("y", [[0.0], [0.3]]).as_matrix()
    poses[1, :3, 3] = [0.2, 0.0, 1.0]
    (root / "poses").mkdir(parents=True, exist_ok=True)
    (root / "poses" / f"{sequence}.txt").write_text("".join(" ".join(map(str, p[:3].ravel())) + "\n" for p in poses))
    return poses


def test_kitti_colour_camera_ground_truth_follows_the_baseline(tmp_path):
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    baseline = np.array([0.06, 0.001, 0.002])  # camera 0's centre in camera 2's frame
    poses = make_kitti(tmp_path, "03", "image_2", K @ np.hstack([np.eye(3), baseline[:, None]]))
    source = open_source(tmp_path, options=SourceOptions())
    assert source.image_dir.name == "image_2" and source.camera.fx == 50.0
    for frame, pose0 in zip(source, poses):
        # the colour camera's centre in world coordinates is camera 0's pose applied to -baseline
        np.testing.assert_allclose(frame.pose_gt[:3, 3], pose0[:3, :3] @ -baseline + pose0[:3, 3], atol=1e-12)
        np.testing.assert_allclose(frame.pose_gt[:3, :3], pose0[:3, :3], atol=1e-12)


def test_kitti_without_calib_uses_shipped_file_for_the_sequence(tmp_path):
    make_kitti(tmp_path, "05", "image_0", None, width=1226, height=370)
    source = open_source(tmp_path, options=SourceOptions(max_frames=1))
    assert source.calib_file.name == "kitti_04-12.txt" and source.camera.fx == pytest.approx(707.0912)


def test_kitti_sequence_choice(tmp_path):
    P0 = np.array([[50.0, 0.0, -10.0, 0.0], [0.0, 50.0, -10.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    make_kitti(tmp_path, "03", "image_0", P0)
    from slam.io.sources.kitti import KittiSource

    with pytest.raises(SourceError, match="sequence 04 not found .*available: 03"):
        KittiSource(tmp_path, sequence=4)
    with pytest.raises(CalibrationError, match="principal point"):
        KittiSource(tmp_path, sequence="3")  # the P0 written above has its principal point outside the image


# ---------------------------------------------------------------------------------------- EuRoC

T_BS = np.array([[0.0, -1.0, 0.0, 0.05], [1.0, 0.0, 0.0, -0.02], [0.0, 0.0, 1.0, 0.01], [0.0, 0.0, 0.0, 1.0]])
T0_NS = 1403636579763555584


def body_pose(seconds: float) -> np.ndarray:
    """Body-to-world pose of the test EuRoC sequence ``seconds`` after its start."""
    pose = np.eye(4)
    tilt = Rotation.from_euler("x", 0.5).as_matrix()
    pose[:3, :3] = Rotation.from_rotvec([0.0, 0.0, 0.2 * seconds]).as_matrix() @ tilt
    pose[:3, 3] = [seconds, 2.0, 0.5 * seconds]
    return pose


def make_euroc(folder: Path, distortion=(-0.28, 0.07, 0.0002, 0.00002)) -> list[int]:
    cam = folder / "mav0" / "cam0"
    stamps = [T0_NS + i * 50_000_000 for i in range(4)]  # 20 Hz
    write_frames(cam / "data", [f"{t}.png" for t in stamps], 64, 48)
    (cam / "data.csv").write_text("#timestamp [ns],filename\n" + "".join(f"{t},{t}.png\n" for t in stamps))
    (cam / "sensor.yaml").write_text(
        "%YAML:1.0\n# General sensor definitions.\nsensor_type: camera\n"
        f"T_BS:\n  cols: 4\n  rows: 4\n  data: [{', '.join(str(v) for v in T_BS.ravel())}]\n"
        "rate_hz: 20\nresolution: [64, 48]\ncamera_model: pinhole\n"
        "intrinsics: [45.0, 44.0, 31.0, 24.0] #fu, fv, cu, cv\n"
        f"distortion_model: radial-tangential\ndistortion_coefficients: [{', '.join(map(str, distortion))}]\n"
    )
    # ground truth at 40 Hz from the first frame to just before the last one
    rows = []
    for k in range(6):
        t = T0_NS + k * 25_000_000
        pose = body_pose(k * 0.025)
        x, y, z, w = Rotation.from_matrix(pose[:3, :3]).as_quat()
        rows.append(f"{t},{pose[0, 3]},{pose[1, 3]},{pose[2, 3]},{w},{x},{y},{z},0,0,0,0,0,0,0,0,0\n")
    gt = folder / "mav0" / "state_groundtruth_estimate0"
    gt.mkdir(parents=True)
    (gt / "data.csv").write_text(
        "#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], "
        "q_RS_y [], q_RS_z [], v..., b_w..., b_a...\n" + "".join(rows)
    )
    return stamps


def test_euroc_frames_calibration_and_ground_truth(tmp_path):
    stamps = make_euroc(tmp_path / "MH_01")
    source = open_source(tmp_path / "MH_01")
    assert source.kind == "euroc" and source.has_ground_truth and len(source) == 4
    assert (source.camera.fx, source.camera.fy, source.camera.cx, source.camera.cy) == (45.0, 44.0, 31.0, 24.0)
    assert source.camera.distortion == ()  # undistorted
    frames = list(source)
    assert [f.timestamp for f in frames] == pytest.approx([t * 1e-9 for t in stamps], abs=1e-6)
    assert frames[1].timestamp - frames[0].timestamp == pytest.approx(0.05, abs=1e-6)
    for i in range(3):  # frames at 0, 0.05, 0.1 s lie on ground-truth samples
        np.testing.assert_allclose(frames[i].pose_gt, body_pose(0.05 * i) @ T_BS, atol=1e-6)
    assert frames[3].pose_gt is None  # after the end of the ground truth
    # the images were undistorted: not the stored pixels
    stored = cv2.cvtColor(cv2.imread(str(source.image_files[0])), cv2.COLOR_BGR2RGB)
    assert frames[0].image.shape == stored.shape and not np.array_equal(frames[0].image, stored)


def test_euroc_accepts_mav0_and_explicit_calibration(tmp_path):
    make_euroc(tmp_path / "V1", distortion=(0.0, 0.0, 0.0, 0.0))
    calib = tmp_path / "cam.txt"
    calib.write_text("40 40 32 24\n")
    source = open_source(tmp_path / "V1" / "mav0", calib=calib)
    assert source.kind == "euroc" and source.camera.fx == 40.0
    frame = next(iter(source))
    stored = cv2.cvtColor(cv2.imread(str(source.image_files[0])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(frame.image, stored)


# ---------------------------------------------------------------------------------------- image folders


def test_image_folder_natural_order_and_frame_rate_timestamps(tmp_path, caplog):
    names = [f"frame{i}.png" for i in (1, 2, 10, 11, 3)]
    images = write_frames(tmp_path / "imgs", names)
    with caplog.at_level(logging.WARNING):
        source = open_source(tmp_path / "imgs")
    assert source.kind == "image_folder"
    assert [p.name for p in source.image_files] == [
        "frame1.png",
        "frame2.png",
        "frame3.png",
        "frame10.png",
        "frame11.png",
    ]
    assert sum("no calibration" in r.getMessage() for r in caplog.records) == 1
    assert source.camera == Camera(51.2, 51.2, 31.5, 23.5, width=64, height=48)
    frames = list(source)
    assert [f.timestamp for f in frames] == pytest.approx([0, 1 / 30, 2 / 30, 3 / 30, 4 / 30])
    np.testing.assert_array_equal(frames[2].image, images[4])  # frame3.png


def test_image_folder_timestamps_and_calibration_files(tmp_path):
    write_frames(tmp_path / "a", ["0.png", "1.png", "2.png"])
    (tmp_path / "a" / "times.txt").write_text("5.0\n5.5\n6.25\n")
    (tmp_path / "a" / "intrinsics.txt").write_text("50\n51\n32\n23\n")
    source = open_source(tmp_path / "a")
    assert [f.timestamp for f in source] == [5.0, 5.5, 6.25]
    assert (source.camera.fx, source.camera.fy, source.camera.cx, source.camera.cy) == (50, 51, 32, 23)
    (tmp_path / "a" / "calib.txt").write_text("60 60 31.5 23.5\n")  # calib.txt comes before intrinsics.txt
    assert open_source(tmp_path / "a").camera.fx == 60
    stamps = tmp_path / "stamps.txt"
    stamps.write_text("1\n2\n3\n")
    from slam.io.sources.image_folder import ImageFolderSource

    source = ImageFolderSource(tmp_path / "a", timestamps=stamps)
    assert [f.timestamp for f in source] == [1, 2, 3]
    stamps.write_text("1\n2\n")
    with pytest.raises(SourceError, match=f"{stamps}: 2 timestamps for 3 images"):
        ImageFolderSource(tmp_path / "a", timestamps=stamps)


def test_options_start_stride_max_frames_resize(tmp_path):
    images = write_frames(tmp_path / "imgs", [f"{i:03d}.png" for i in range(10)])
    calib = tmp_path / "calib.cfg"
    calib.write_text("50 50 31.5 23.5\n")
    options = SourceOptions(start=1, stride=3, max_frames=2, resize=(32, 24))
    source = open_source(tmp_path / "imgs", calib=calib, options=options)
    frames = list(source)
    assert len(source) == 2 and [f.index for f in frames] == [0, 1]
    assert [f.timestamp for f in frames] == pytest.approx([1 / 30, 4 / 30])
    assert frames[1].image.shape == (24, 32, 3)
    assert abs(int(frames[1].image.mean()) - int(images[4].mean())) <= 1
    assert (frames[0].camera.fx, frames[0].camera.cx, frames[0].camera.cy) == (25.0, 15.5, 11.5)


# ---------------------------------------------------------------------------------------- videos


def write_video(path: Path, count: int, fourcc: str = "MJPG", fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (64, 48))
    assert writer.isOpened()
    for i in range(count):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()


def brightness(frame) -> int:
    """The frame number written by :func:`write_video` (grey level 20 * i)."""
    return int(round(frame.image.mean() / 20))


@pytest.mark.parametrize(("name", "fourcc"), [("clip.avi", "MJPG"), ("clip.mp4", "mp4v")])
def test_video_frames_and_timestamps(tmp_path, name, fourcc):
    write_video(tmp_path / name, 10, fourcc)
    source = open_source(tmp_path / name)
    assert source.kind == "video" and not source.has_ground_truth
    frames = list(source)
    assert [brightness(f) for f in frames] == list(range(10))
    assert [f.timestamp for f in frames] == pytest.approx([i / 10 for i in range(10)])
    strided = list(open_source(tmp_path / name, options=SourceOptions(start=2, stride=3, max_frames=2)))
    assert [brightness(f) for f in strided] == [2, 5]
    assert [f.timestamp for f in strided] == pytest.approx([0.2, 0.5])


def test_video_pyav_backend(tmp_path):
    write_video(tmp_path / "clip.avi", 6)
    source = VideoSource(tmp_path / "clip.avi", backend="pyav", options=SourceOptions(stride=2))
    frames = list(source)
    assert source.backend == "pyav" and [brightness(f) for f in frames] == [0, 2, 4]
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.2, 0.4])


@pytest.mark.parametrize("backend", ["opencv", "pyav"])
def test_video_corrupt_frame_is_skipped(tmp_path, caplog, backend):
    path = tmp_path / "clip.avi"
    write_video(path, 8)
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # JPEG starts
    assert len(starts) == 8
    data[starts[4] : starts[4] + 200] = bytes(200)
    path.write_bytes(bytes(data))
    source = VideoSource(path, backend=backend)
    with caplog.at_level(logging.WARNING):
        frames = list(source)
    assert [brightness(f) for f in frames] == [0, 1, 2, 3, 5, 6, 7]
    assert frames[4].timestamp == pytest.approx(0.5)
    assert source.skipped_frames == 1 and source.describe()["skipped_frames"] == 1
    assert any("skipped frame 4" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_video_real_clip_guesses_calibration(shared_data):
    source = open_source(shared_data / "clips" / "golf.mov", options=SourceOptions(start=30, stride=5))
    assert source.camera.size == (1920, 1080) and source.camera.fx == pytest.approx(0.8 * 1920)
    frames = list(source)
    assert len(frames) == 2 and frames[0].image.shape == (1080, 1920, 3)
    assert [f.timestamp for f in frames] == pytest.approx([1.0, 35 / 30])


def test_video_errors_name_the_file(tmp_path):
    write_video(tmp_path / "empty.avi", 0)
    with pytest.raises(SourceError, match=f"no decodable frame in video {tmp_path / 'empty.avi'}"):
        open_source(tmp_path / "empty.avi")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(1).bytes(4000))
    with pytest.raises(SourceError, match=f"cannot open video {tmp_path / 'noise.mp4'}"):
        open_source(tmp_path / "noise.mp4")


# ---------------------------------------------------------------------------------------- detection and bad input


def test_detection_of_each_kind(tmp_path, shared_data):
    make_tum(tmp_path / "tum")
    make_euroc(tmp_path / "euroc")
    make_kitti(tmp_path / "kitti", "00", "image_0", None)
    write_frames(tmp_path / "images", ["a.jpg", "b.jpg"])
    write_video(tmp_path / "clip.avi", 2)
    (tmp_path / "clip.avi").rename(tmp_path / "clip.unknownext")  # a video found by opening it
    (tmp_path / "recording.bag").write_bytes(b"#ROSBAG V2.0\n")  # ROS 1: by the name
    (tmp_path / "ros2").mkdir()
    (tmp_path / "ros2" / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")  # ROS 2: the folder
    expected = {
        "recording.bag": "rosbag",
        "ros2": "rosbag",
        "tum": "tum",
        "euroc": "euroc",
        "kitti": "kitti",
        "kitti/sequences/00": "kitti",
        "images": "image_folder",
        "clip.unknownext": "video",
    }
    for name, kind in expected.items():
        assert detect_kind(str(tmp_path / name)) == kind, name
    assert detect_kind(str(shared_data / "kitti_07")) == "kitti"
    assert detect_kind("webcam:1") == "webcam" and detect_kind("synthetic:room:seed=3") == "synthetic"
    assert set(expected.values()) | {"webcam", "synthetic"} == set(SOURCE_KINDS)
    assert open_source(tmp_path / "clip.unknownext").kind == "video"


def test_kind_overrides_detection(tmp_path):
    make_tum(tmp_path / "tum")
    # a TUM folder read as a plain folder of images: there are none directly in it
    with pytest.raises(SourceError, match="no images"):
        open_source(tmp_path / "tum", kind="image_folder")
    assert open_source(tmp_path / "tum" / "rgb", kind="image_folder").num_raw == 3
    with pytest.raises(SourceError, match="unknown source kind 'bogus'"):
        open_source(tmp_path / "tum", kind="bogus")


def test_synthetic_spec_opens_the_synthetic_scene():
    pytest.importorskip("slam.io.sources.synthetic")
    source = open_source("synthetic", options=SourceOptions(max_frames=2))
    assert source.kind == "synthetic" and len(list(source)) == 2


def test_missing_and_unrecognised_paths(tmp_path):
    with pytest.raises(SourceError, match=f"source not found: {tmp_path / 'nope'}"):
        open_source(tmp_path / "nope")
    with pytest.raises(SourceError, match=f"source not found: {tmp_path / 'nope'}"):
        open_source(tmp_path / "nope", kind="tum")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no camera input recognised; expected a TUM RGB-D sequence"):
        open_source(tmp_path / "empty")
    write_frames(tmp_path / "one", ["x.png"])
    with pytest.raises(SourceError, match="single image"):
        open_source(tmp_path / "one" / "x.png")


def test_tum_like_folder_without_index_file(tmp_path):
    make_tum(tmp_path / "seq")
    (tmp_path / "seq" / "rgb.txt").unlink()
    with pytest.raises(SourceError, match=f"index file {tmp_path / 'seq' / 'rgb.txt'} is missing"):
        open_source(tmp_path / "seq")
    with pytest.raises(SourceError, match="has no index file rgb.txt"):
        open_source(tmp_path / "seq", kind="tum")


def test_kitti_like_folder_without_times(tmp_path):
    make_kitti(tmp_path, "00", "image_0", None)
    (tmp_path / "sequences" / "00" / "times.txt").unlink()
    with pytest.raises(SourceError, match="times.txt is missing"):
        open_source(tmp_path / "sequences" / "00")
    with pytest.raises(SourceError, match="has no times.txt"):
        open_source(tmp_path)


def test_corrupt_image_raises_naming_the_file(tmp_path):
    write_frames(tmp_path / "imgs", ["0.png", "1.png", "2.png"])
    (tmp_path / "imgs" / "1.png").write_bytes(b"not a png at all" * 10)
    source = open_source(tmp_path / "imgs", options=SourceOptions())
    with pytest.raises(SourceError, match=f"cannot read image {tmp_path / 'imgs' / '1.png'}"):
        list(source)
    (tmp_path / "imgs" / "0.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(SourceError, match=f"cannot read image {tmp_path / 'imgs' / '0.png'}"):
        open_source(tmp_path / "imgs")


def test_image_of_another_size_raises_naming_the_file(tmp_path):
    write_frames(tmp_path / "imgs", ["0.png", "1.png"])
    write_frames(tmp_path / "imgs", ["2.png"], width=32, height=32)
    with pytest.raises(SourceError, match=f"{tmp_path / 'imgs' / '2.png'}: image is 32x32"):
        list(open_source(tmp_path / "imgs"))


def test_corrupt_depth_map_raises_naming_the_file(tmp_path):
    make_tum(tmp_path / "seq")
    bad = sorted((tmp_path / "seq" / "depth").iterdir())[0]
    bad.write_bytes(b"garbage")
    with pytest.raises(SourceError, match=f"cannot read depth map {bad}"):
        list(open_source(tmp_path / "seq"))


@pytest.mark.parametrize("kind", ["image_folder", "video", "tum", "euroc", "kitti"])
def test_calibration_for_another_image_size(tmp_path, kind):
    calib = tmp_path / "calib_1280.txt"
    calib.write_text("1000 1000 639.5 359.5\n")  # for 1280x720 images; ours are 64x48
    if kind == "image_folder":
        write_frames(tmp_path / "data", ["0.png"])
    elif kind == "video":
        write_video(tmp_path / "data.avi", 2)
        (tmp_path / "data.avi").rename(tmp_path / "data")
    elif kind == "tum":
        make_tum(tmp_path / "data")
    elif kind == "euroc":
        make_euroc(tmp_path / "data")
    else:
        make_kitti(tmp_path / "data", "00", "image_0", None)
    with pytest.raises(CalibrationError, match=f"{calib}: principal point .* outside the 64x48 image"):
        open_source(tmp_path / "data", calib=calib)


def test_there_and_back_plays_the_selected_frames_forward_then_backward_at_the_forward_rate(tmp_path):
    from slam.io.sources.synthetic import SyntheticSource

    selection = SourceOptions(start=2, stride=3, max_frames=4)
    forward = list(SyntheticSource("room", 0, 20, 48, 64, selection))
    played = list(SyntheticSource("room", 0, 20, 48, 64, dataclasses.replace(selection, there_and_back=True)))
    assert [f.index for f in played] == list(range(7))
    order = [0, 1, 2, 3, 2, 1, 0]
    for frame, k in zip(played, order):
        assert np.array_equal(frame.image, forward[k].image) and np.allclose(frame.pose_gt, forward[k].pose_gt)
    times = np.array([f.timestamp for f in played])
    assert np.allclose(np.diff(times), times[1] - times[0])  # on at the forward rate, never backward in time
    assert len(SyntheticSource("room", 0, 20, 48, 64, SourceOptions(max_frames=4, there_and_back=True))) == 7


def test_a_video_cannot_be_played_there_and_back(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for image in write_frames(tmp_path / "frames", ["a.png", "b.png"]):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    with pytest.raises(SourceError, match="there and back"):
        open_source(path, options=SourceOptions(there_and_back=True))


def test_a_synthetic_room_can_lap_a_closed_path_and_a_bad_path_is_one_line():
    """``path=loop`` and ``path=figure8`` walk laps: one lap later the camera is back where it
    was; a path a scene kind does not have is refused naming the choices."""
    source = SyntheticSource.from_spec("synthetic:room:path=loop:frames=2")
    lap = source.sequence.path.lap_length / source.sequence.path.speed  # seconds per lap
    poses = source.sequence.path.poses(np.array([1.0, 1.0 + lap]))
    assert np.allclose(poses[0][:3, 3], poses[1][:3, 3], atol=0.02) and source.describe()["path"] == "loop"
    assert SyntheticSource.from_spec("synthetic:room:path=figure8:frames=2").path == "figure8"
    with pytest.raises(SourceError, match="has no path 'loop': use one of drive"):
        SyntheticSource.from_spec("synthetic:road:path=loop")


def test_laps_of_a_closed_path_end_where_they_start_and_other_laps_are_one_line():
    """``laps=2`` walks two whole laps: the last frame's camera is back at the first one's, and
    it went somewhere between; laps of an open path, with frames, or fewer than one are refused."""
    source = SyntheticSource.from_spec("synthetic:room:path=figure8:laps=2")
    path = source.sequence.path
    assert source.num_raw == round(2 * path.lap_length / path.speed * 30.0) + 1
    poses = source.sequence.poses
    assert np.linalg.norm(poses[-1][:3, 3] - poses[0][:3, 3]) < 0.02
    assert np.linalg.norm(poses[:, :3, 3] - poses[0][:3, 3], axis=1).max() > 1.0  # it went somewhere
    refused = ("synthetic:room:laps=2", "synthetic:room:path=loop:laps=0", "synthetic:room:path=loop:laps=2:frames=9")
    for spec in refused:
        with pytest.raises(SourceError, match="a whole number of laps"):
            SyntheticSource.from_spec(spec)
