"""Public sequences fetched from their official sites into a cache folder (`v2d download`).

A download goes to ``NAME.part`` beside its final name and resumes from there (an HTTP range
request) when it was cut short; it is complete when it holds the size the server announced, and
only then renamed. The archive's own checksums (gzip's and zip's CRC-32 of every member) are
verified while it is unpacked, and a SHA-256 the user gives is checked before; the SHA-256 of
every archive fetched is written beside it (``NAME.sha256``). Unpacking goes into a temporary
folder that is renamed when it is complete, members that would land outside it are refused.

Catalog (the sites' file layout as of 2026):

- ``tum NAME`` (``freiburg1_rpy``, ``fr1_rpy`` or ``rgbd_dataset_freiburg1_rpy``): the TUM RGB-D
  benchmark's ``.tgz`` of the sequence.
- ``kitti SEQ`` (``00``-``21``): KITTI odometry publishes the grey images of every sequence in one
  archive (about 22 GB), with the calibration and the poses in two small ones; all three are
  fetched and sequence SEQ is unpacked (``sequences/SEQ``, ``poses/SEQ.txt``).
- ``euroc NAME`` (``MH_01_easy``, ``V1_02_medium``, ...): the EuRoC MAV dataset's ASL ``.zip``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slam.errors import SourceError

log = logging.getLogger(__name__)

TUM_URL = "https://cvg.cit.tum.de/rgbd/dataset/freiburg{number}/rgbd_dataset_freiburg{number}_{name}.tgz"
KITTI_URLS = (
    "https://s3.eu-central-1.amazonaws.com/avg-kitti/data_odometry_gray.zip",
    "https://s3.eu-central-1.amazonaws.com/avg-kitti/data_odometry_calib.zip",
    "https://s3.eu-central-1.amazonaws.com/avg-kitti/data_odometry_poses.zip",
)
EUROC_URL = "http://robotics.ethz.ch/~asl-datasets/ijrr_euroc_mav_dataset/{room}/{name}/{name}.zip"
EUROC_ROOMS = {"MH": "machine_hall", "V1": "vicon_room1", "V2": "vicon_room2"}
DATASETS = ("tum", "kitti", "euroc")

#: bytes read from the network at a time
CHUNK = 1 << 20
#: seconds a connection may stay silent
TIMEOUT = 60


@dataclass(frozen=True)
class Sequence:
    """What to fetch for one sequence: the archives' URLs, the folder (under the dataset's cache
    folder) that holds the sequence once unpacked, and which members of each archive to unpack
    (None: all)."""

    dataset: str
    urls: tuple[str, ...]
    folder: str
    members: Callable[[str], bool] | None = None


def sequence(dataset: str, name: str) -> Sequence:
    """The catalog entry of ``dataset``'s sequence ``name`` (see the module docstring), or
    SourceError saying what names look like."""
    if dataset == "tum":
        match = re.fullmatch(r"(?:rgbd_dataset_)?(?:freiburg|fr)([123])_(\w+)", name)
        if match is None:
            raise SourceError(f"TUM sequence {name!r}: expected a name such as freiburg1_rpy or fr1_rpy")
        number, rest = match.groups()
        return Sequence("tum", (TUM_URL.format(number=number, name=rest),), f"rgbd_dataset_freiburg{number}_{rest}")
    if dataset == "kitti":
        if not re.fullmatch(r"\d{1,2}", name) or int(name) > 21:
            raise SourceError(f"KITTI odometry sequence {name!r}: expected 00 to 21")
        number = f"{int(name):02d}"

        def members(member: str) -> bool:
            return f"sequences/{number}/" in member or member.endswith(f"poses/{number}.txt")

        return Sequence("kitti", KITTI_URLS, f"odometry_{number}", members)
    if dataset == "euroc":
        room = EUROC_ROOMS.get(name[:2])
        if room is None or not re.fullmatch(r"(MH_0[1-5]|V[12]_0[1-3])_\w+", name):
            raise SourceError(f"EuRoC sequence {name!r}: expected a name such as MH_01_easy or V1_02_medium")
        return Sequence("euroc", (EUROC_URL.format(room=room, name=name),), name)
    raise SourceError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")


def fetch(url: str, target: Path, report: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` to ``target`` through ``target.part``, resuming a partial file (see the
    module docstring); ``report(done, total)`` is called as bytes arrive. Returns ``target``.
    SourceError (with the partial file kept for a later resume) when the server fails or the
    download ends short."""
    if target.is_file():
        return target
    partial = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    done = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as err:
        if err.code == 416 and done:  # the range starts at the end: the partial file is whole
            partial.replace(target)
            return target
        raise SourceError(f"cannot download {url}: HTTP {err.code} {err.reason} (the site may have moved)") from None
    except (urllib.error.URLError, OSError) as err:
        raise SourceError(f"cannot download {url}: {getattr(err, 'reason', err)}") from None
    with response:
        resumed = response.status == 206
        if done and not resumed:
            log.info("%s: the server does not resume; starting again", url)
            done = 0
        total = _total_size(response, done if resumed else 0)
        try:
            with open(partial, "ab" if resumed else "wb") as handle:
                while chunk := response.read(CHUNK):
                    handle.write(chunk)
                    done += len(chunk)
                    if report is not None:
                        report(done, total)
        except (OSError, urllib.error.URLError) as err:
            raise SourceError(f"download of {url} cut short at {done} bytes ({err}); run again to resume") from None
    if total is not None and done != total:
        raise SourceError(f"download of {url} ended at {done} of {total} bytes; run again to resume")
    partial.replace(target)
    return target


def _total_size(response, offset: int) -> int | None:
    """The whole file's size from a response starting at byte ``offset`` (None: not said)."""
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def unpack(archive: Path, into: Path, members: Callable[[str], bool] | None = None) -> None:
    """Unpack the ``.tgz``/``.tar*`` or ``.zip`` ``archive`` (the ``members`` whose names it
    accepts; None: all) into the folder ``into``, verifying the archive's CRCs; SourceError
    naming the archive when it is corrupt or a member would land outside ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    root = into.resolve()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as handle:
                for info in handle.infolist():
                    if members is not None and not members(info.filename):
                        continue
                    destination = (into / info.filename).resolve()
                    if not destination.is_relative_to(root):
                        raise SourceError(f"{archive}: member {info.filename} would land outside {into}")
                    handle.extract(info, into)  # checks the member's CRC-32
        else:
            with tarfile.open(archive) as handle:
                chosen = [m for m in handle.getmembers() if members is None or members(m.name)]
                handle.extractall(into, members=chosen, filter="data")  # refuses paths outside
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise SourceError(f"{archive} is corrupt or cannot be unpacked: {err}") from None


def download(
    dataset: str,
    name: str,
    cache: Path,
    url: str | None = None,
    expected_sha256: str | None = None,
    report: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Fetch and unpack ``dataset``'s sequence ``name`` into ``cache/dataset/`` (see the module
    docstring); ``url`` replaces the catalog's (a mirror; one archive), ``expected_sha256`` is
    checked against it. Returns the folder `v2d run` takes; a sequence already there is not
    fetched again."""
    entry = sequence(dataset, name)
    urls = (url,) if url is not None else entry.urls
    base = cache / dataset
    folder = base / entry.folder
    if folder.is_dir():
        log.info("%s is already there", folder)
        return _sequence_folder(folder)
    if expected_sha256 is not None and len(urls) != 1:
        raise SourceError("--sha256 checks one archive; this sequence has several")
    archives = []
    for address in urls:
        archive = fetch(address, base / "archives" / address.rsplit("/", 1)[-1].split("?")[0], report)
        digest = sha256(archive)
        if expected_sha256 is not None and digest != expected_sha256.lower():
            raise SourceError(f"{archive}: SHA-256 {digest}, expected {expected_sha256}; delete it to fetch it again")
        (archive.parent / (archive.name + ".sha256")).write_text(f"{digest}  {archive.name}\n")
        archives.append(archive)
    scratch = base / f".unpacking-{entry.folder}"
    shutil.rmtree(scratch, ignore_errors=True)  # what an interrupted unpacking left
    for archive in archives:
        unpack(archive, scratch, entry.members)
    inside = list(scratch.iterdir())
    if dataset == "tum" and len(inside) == 1 and inside[0].is_dir():
        inside[0].rename(folder)  # the archive's own sequence folder
        scratch.rmdir()
    else:
        scratch.rename(folder)
    return _sequence_folder(folder)


def _sequence_folder(folder: Path) -> Path:
    """The folder `v2d run` takes: KITTI's unpacked ``dataset/`` (``sequences/``, ``poses/``)
    where the archive put one, else ``folder``."""
    inner = folder / "dataset"
    return inner if inner.is_dir() else folder
