"""`v2d download` against a local HTTP server (the real sites are not reachable from CI) that
serves archives the test builds: a TUM sequence is fetched, unpacked and opens as TUM; a
download cut short resumes with a range request; KITTI's archive gives only the sequence asked
for; corrupt archives, a wrong SHA-256 and unknown names are one-line errors; the catalog names
the official addresses."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from apps.cli import main
from slam.errors import SourceError
from slam.io.datasets import sequence
from slam.io.sources.detect import detect_kind, open_source
from tests.io.test_sources import make_tum


class _Server:
    """Serves ``files`` (path -> bytes) on 127.0.0.1 with range requests; a path in ``cut`` is
    sent once with its full Content-Length but only its first half. Records each request's
    (path, Range header)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append((self.path, self.headers.get("Range")))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if self.path in server.cut:
                    server.cut.discard(self.path)
                    body = body[: len(body) // 2]
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    served = _Server()
    yield served
    served.close()


def _tum_archive(tmp_path: Path) -> bytes:
    """A .tgz holding a small TUM sequence in its folder rgbd_dataset_freiburg1_xyz/."""
    make_tum(tmp_path / "build" / "rgbd_dataset_freiburg1_xyz", count=4, width=640, height=480)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(tmp_path / "build" / "rgbd_dataset_freiburg1_xyz", arcname="rgbd_dataset_freiburg1_xyz")
    return buffer.getvalue()


def test_a_tum_sequence_is_fetched_unpacked_and_runs_and_a_cut_download_resumes(tmp_path, server, capsys):
    data = _tum_archive(tmp_path)
    server.files["/rgbd_dataset_freiburg1_xyz.tgz"] = data
    server.cut.add("/rgbd_dataset_freiburg1_xyz.tgz")
    cache = tmp_path / "cache"
    args = ["download", "tum", "fr1_xyz", "--url", f"{server.url}/rgbd_dataset_freiburg1_xyz.tgz"]
    assert main([*args, "--cache", str(cache)]) == 2  # cut short: kept for a resume
    assert "run again to resume" in capsys.readouterr().err
    partial = cache / "tum" / "archives" / "rgbd_dataset_freiburg1_xyz.tgz.part"
    assert partial.stat().st_size == len(data) // 2
    digest = hashlib.sha256(data).hexdigest()
    assert main([*args, "--cache", str(cache), "--sha256", digest]) == 0
    assert server.requests[-1] == ("/rgbd_dataset_freiburg1_xyz.tgz", f"bytes={len(data) // 2}-")
    folder = cache / "tum" / "rgbd_dataset_freiburg1_xyz"
    printed = capsys.readouterr().out
    assert f"v2d run {folder}" in printed
    assert (cache / "tum" / "archives" / "rgbd_dataset_freiburg1_xyz.tgz").read_bytes() == data
    assert digest in (cache / "tum" / "archives" / "rgbd_dataset_freiburg1_xyz.tgz.sha256").read_text()
    assert detect_kind(str(folder)) == "tum" and len(list(open_source(folder))) == 4
    requests = len(server.requests)
    assert main([*args, "--cache", str(cache)]) == 0 and len(server.requests) == requests  # already there


def test_kitti_gives_only_the_sequence_asked_for(tmp_path, server, capsys):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for number in ("07", "08"):
            archive.writestr(f"dataset/sequences/{number}/times.txt", "0.0\n")
            archive.writestr(f"dataset/sequences/{number}/image_0/000000.png", b"png")
            archive.writestr(f"dataset/poses/{number}.txt", "1 0 0 0 0 1 0 0 0 0 1 0\n")
    server.files["/data_odometry.zip"] = buffer.getvalue()
    assert main(["download", "kitti", "7", "--url", f"{server.url}/data_odometry.zip", "--cache", str(tmp_path)]) == 0
    root = tmp_path / "kitti" / "odometry_07" / "dataset"
    assert f"v2d run {root}" in capsys.readouterr().out
    assert sorted(p.name for p in (root / "sequences").iterdir()) == ["07"]
    assert sorted(p.name for p in (root / "poses").iterdir()) == ["07.txt"]


def test_bad_archives_checksums_and_names_are_one_line_errors(tmp_path, server, capsys):
    server.files["/broken.tgz"] = b"\x1f\x8b" + bytes(200)
    url = f"{server.url}/broken.tgz"
    assert main(["download", "tum", "fr2_desk", "--url", url, "--cache", str(tmp_path)]) == 2
    assert "broken.tgz is corrupt or cannot be unpacked" in capsys.readouterr().err
    assert not (tmp_path / "tum" / "rgbd_dataset_freiburg2_desk").exists()
    server.files["/good.tgz"] = _tum_archive(tmp_path)
    url = f"{server.url}/good.tgz"
    assert main(["download", "tum", "fr1_xyz", "--url", url, "--cache", str(tmp_path), "--sha256", "ab" * 32]) == 2
    assert "expected abab" in capsys.readouterr().err
    assert main(["download", "tum", "fr1_xyz", "--url", f"{server.url}/absent.tgz", "--cache", str(tmp_path)]) == 2
    assert "HTTP 404" in capsys.readouterr().err
    for dataset, name, expected in (("tum", "kitchen", "freiburg1_rpy"), ("kitti", "22", "00 to 21")):
        assert main(["download", dataset, name, "--cache", str(tmp_path)]) == 2
        assert expected in capsys.readouterr().err


def test_the_catalog_names_the_official_archives():
    assert sequence("tum", "freiburg1_rpy").urls == (
        "https://cvg.cit.tum.de/rgbd/dataset/freiburg1/rgbd_dataset_freiburg1_rpy.tgz",
    )
    assert sequence("tum", "rgbd_dataset_freiburg3_long_office_household").folder == (
        "rgbd_dataset_freiburg3_long_office_household"
    )
    kitti = sequence("kitti", "07")
    assert [url.rsplit("/", 1)[1] for url in kitti.urls] == [
        "data_odometry_gray.zip",
        "data_odometry_calib.zip",
        "data_odometry_poses.zip",
    ]
    assert kitti.members is not None and kitti.members("dataset/sequences/07/calib.txt")
    assert not kitti.members("dataset/sequences/17/calib.txt") and not kitti.members("dataset/poses/08.txt")
    assert sequence("euroc", "V1_02_medium").urls[0].endswith("/vicon_room1/V1_02_medium/V1_02_medium.zip")
    with pytest.raises(SourceError, match="MH_01_easy"):
        sequence("euroc", "MH_09_hard")
