"""Writers for the geometry a run exports: the fused point cloud and the mesh as binary PLY
(little-endian; readable by Open3D, MeshLab and CloudCompare), and keyframe depth maps as numpy
arrays (map units) or 16-bit PNG (TUM convention, value / scale = metres); and a reader of the
vertex positions of such a PLY (to measure or draw an exported map without Open3D).

The PLY writer is our own (a header and numpy records): Open3D refuses to write an empty cloud
or mesh, and a run that tracked nothing must still leave valid files. An empty cloud or mesh is
written as a PLY with no elements, with a logged warning. Parent folders are created; a file
that cannot be written raises :class:`~slam.errors.ExportError` naming it. Files are written
atomically (see :mod:`slam.io.atomic`): a PLY is whole or absent, never truncated.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slam.errors import ExportError
from slam.io.atomic import atomic_file
from slam.mapping.point_cloud import PointCloud

if TYPE_CHECKING:
    import open3d

log = logging.getLogger(__name__)


_PLY_TYPES = {"f4": "float", "u1": "uchar", "i4": "int"}


def _vertex_records(points: np.ndarray, colours: np.ndarray, normals: np.ndarray | None) -> np.ndarray:
    """(N,) little-endian records x y z [nx ny nz] red green blue."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    records = np.empty(len(points), dtype=fields)
    for k, axis in enumerate("xyz"):
        records[axis] = points[:, k]
        if normals is not None:
            records["n" + axis] = normals[:, k]
    for k, channel in enumerate(("red", "green", "blue")):
        records[channel] = colours[:, k]
    return records


def _write_ply(path: str | Path, vertices: np.ndarray, triangles: np.ndarray | None) -> None:
    """Binary PLY of ``vertices`` (records from :func:`_vertex_records`) and, when given,
    ``triangles`` (F, 3) vertex indices as a ``face`` element."""
    path = Path(path)
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment written by deepv2d-slam",
        f"element vertex {len(vertices)}",
    ]
    assert vertices.dtype.names is not None  # a structured array of named fields
    header += [f"property {_PLY_TYPES[vertices.dtype[name].str[1:]]} {name}" for name in vertices.dtype.names]
    body = [vertices.tobytes()]
    if triangles is not None:
        faces = np.empty(len(triangles), dtype=[("count", "u1"), ("indices", "<i4", (3,))])
        faces["count"] = 3
        faces["indices"] = triangles
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        body.append(faces.tobytes())
    header.append("end_header")
    with atomic_file(path, binary=True) as file:
        file.write(("\n".join(header) + "\n").encode("ascii"))
        for chunk in body:
            file.write(chunk)


def write_point_cloud_ply(path: str | Path, cloud: PointCloud) -> None:
    """Write ``cloud`` (world-frame points, RGB colours, normals when it has them) as a binary
    PLY. An empty cloud gives a valid PLY with no vertices and a logged warning."""
    if len(cloud) == 0:
        log.warning("%s: the point cloud is empty (nothing was fused); writing a PLY with no points", path)
    _write_ply(path, _vertex_records(cloud.points, cloud.colours, cloud.normals), None)


def write_mesh_ply(path: str | Path, mesh: open3d.geometry.TriangleMesh) -> None:
    """Write an Open3D triangle mesh as a binary PLY: vertices, vertex colours (grey when the
    mesh has none; Open3D's [0, 1] colours become 0-255), vertex normals when present, and
    triangles. An empty mesh gives a valid PLY with no vertices or faces and a logged warning."""
    points = np.asarray(mesh.vertices, dtype=np.float32).reshape(-1, 3)
    if mesh.has_vertex_colors():
        colours = np.round(np.clip(np.asarray(mesh.vertex_colors), 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        colours = np.full((len(points), 3), 128, np.uint8)
    normals = np.asarray(mesh.vertex_normals, dtype=np.float32) if mesh.has_vertex_normals() else None
    triangles = np.asarray(mesh.triangles, dtype=np.int32).reshape(-1, 3)
    if len(points) == 0 or len(triangles) == 0:
        log.warning("%s: the mesh is empty (nothing was fused); writing a PLY with no faces", path)
    _write_ply(path, _vertex_records(points, colours, normals), triangles)


def read_ply_vertices(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The vertices of a binary little-endian PLY whose vertex properties are scalars (as this
    module writes them): (N, 3) float64 positions and (N, 3) uint8 RGB colours (None when the
    vertices have none). Raises ExportError naming the file when it cannot be read or is not
    such a PLY."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ExportError(f"cannot read {path}: {err.strerror}") from None
    end = data.find(b"end_header\n")
    lines = data[: max(end, 0)].decode("ascii", errors="replace").splitlines()
    if end < 0 or not lines or lines[0] != "ply" or "format binary_little_endian 1.0" not in lines:
        raise ExportError(f"{path} is not a binary little-endian PLY")
    types = {name: code for code, name in _PLY_TYPES.items()} | {"float32": "f4", "uint8": "u1", "int32": "i4"}
    fields: list[tuple[str, str]] = []
    count, in_vertex = 0, False
    for line in lines:
        words = line.split()
        if words[:1] == ["element"]:
            in_vertex = words[1] == "vertex"
            count = int(words[2]) if in_vertex else count
        elif words[:1] == ["property"] and in_vertex:
            if words[1] not in types:
                raise ExportError(f"{path}: vertex property {line!r} is not a scalar this reader knows")
            fields.append((words[2], "<" + types[words[1]]))
    if not {"x", "y", "z"} <= {name for name, _ in fields}:
        raise ExportError(f"{path}: the vertices have no x, y and z")
    try:
        records = np.frombuffer(data, dtype=np.dtype(fields), count=count, offset=end + len("end_header\n"))
    except ValueError:
        raise ExportError(f"{path} holds fewer vertices than its header promises ({count})") from None
    positions = np.stack([records[axis].astype(np.float64) for axis in "xyz"], axis=1)
    if not {"red", "green", "blue"} <= set(records.dtype.names or ()):
        return positions, None
    return positions, np.stack([records[channel].astype(np.uint8) for channel in ("red", "green", "blue")], axis=1)
