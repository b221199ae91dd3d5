"""Output files are whole or absent (written to a temporary name and renamed), and a run's output
folder is checked before any work: new, empty, or a previous run replaced only on request."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from slam.errors import ExportError
from slam.io.atomic import atomic_file, partial_path, write_text_atomic
from slam.io.run_folder import check_output_folder, prepare_output_folder
from slam.io.trajectory import Trajectory, read_tum, write_tum
from slam.mapping.export import write_point_cloud_ply
from slam.mapping.point_cloud import PointCloud


def test_an_interrupted_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "trajectory.txt"
    path.write_text("previous\n")
    with pytest.raises(KeyboardInterrupt), atomic_file(path) as handle:
        handle.write("half of the new")
        raise KeyboardInterrupt
    assert path.read_text() == "previous\n"
    assert not partial_path(path).exists() and sorted(os.listdir(tmp_path)) == ["trajectory.txt"]


def test_a_file_becomes_visible_only_when_whole(tmp_path):
    path = tmp_path / "sub" / "stats.json"
    with atomic_file(path) as handle:
        handle.write("{}")
        assert not path.exists() and partial_path(path).exists()
    assert path.read_text() == "{}" and not partial_path(path).exists()


def test_an_output_that_cannot_be_written_is_one_error_naming_it(tmp_path):
    (tmp_path / "trajectory.txt").mkdir()  # the name is taken by a folder
    trajectory = Trajectory(np.array([0.0]), np.eye(4)[None])
    with pytest.raises(ExportError, match="trajectory.txt"):
        write_tum(tmp_path / "trajectory.txt", trajectory)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="points.ply"):
        write_point_cloud_ply(tmp_path / "file" / "points.ply", PointCloud.empty())  # under a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "trajectory.txt"]  # no temporary left


def test_write_then_read_back(tmp_path):
    poses = np.tile(np.eye(4), (3, 1, 1))
    poses[:, 0, 3] = [0.0, 1.0, 2.0]
    write_tum(tmp_path / "t.txt", Trajectory(np.array([0.0, 0.1, 0.2]), poses))
    assert np.allclose(read_tum(tmp_path / "t.txt").poses, poses)
    write_text_atomic(tmp_path / "t.txt", "# empty\n")
    assert (tmp_path / "t.txt").read_text() == "# empty\n"


def _previous_run(folder: Path) -> None:
    """A KITTI run's folder, as an earlier run left it."""
    (folder / "depth").mkdir(parents=True)
    (folder / "depth" / "000000.npy").write_bytes(b"x")
    for name in ("stats.json", "trajectory_kitti.txt", "keyframes.txt", "trajectory.txt"):
        (folder / name).write_text("old\n")


def test_output_folder_new_empty_or_replaced_only_on_request(tmp_path):
    check_output_folder(tmp_path / "new" / "run")  # creatable: fine, and nothing is created
    assert not (tmp_path / "new").exists()
    check_output_folder(tmp_path)  # empty
    run = tmp_path / "run"
    _previous_run(run)
    with pytest.raises(ExportError, match="holds a previous run; add --overwrite"):
        check_output_folder(run)
    prepare_output_folder(run, overwrite=True)
    assert run.is_dir() and list(run.iterdir()) == []  # old files removed first, none left beside the new


def test_a_folder_of_other_files_is_never_used_even_with_overwrite(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious\n")
    for overwrite in (False, True):
        with pytest.raises(ExportError, match="not a v2d run"):
            prepare_output_folder(tmp_path, overwrite=overwrite)
    assert (tmp_path / "thesis.tex").read_text() == "precious\n"


def test_a_run_killed_while_writing_its_first_file_is_still_a_run(tmp_path):
    partial_path(tmp_path / "stats.json").write_text("{")
    with pytest.raises(ExportError, match="previous run"):
        check_output_folder(tmp_path)


@pytest.mark.parametrize("where", ["file", "/dev/null", "/proc/v2d/out", "under_a_file"])
def test_an_unusable_output_folder_is_refused(tmp_path, where):
    file = tmp_path / "file"
    file.write_text("x")
    folder = {"file": file, "under_a_file": file / "out"}.get(where, Path(where))
    with pytest.raises(ExportError, match=f"--out {folder}"):
        check_output_folder(folder)
