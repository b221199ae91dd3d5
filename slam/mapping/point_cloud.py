"""Coloured point clouds and their reduction: the :class:`PointCloud` type, voxel averaging (in
mergeable per-voxel sums, so that parts reduced apart combine into exactly the whole's average)
and capped subsets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass

#: Bits per axis of a packed voxel key: cells -2^20 .. 2^20 - 1 along each axis.
_KEY_BITS = 21


@dataclass(eq=False)
class PointCloud:
    """A coloured point cloud in the world frame: ``points`` (M, 3) float32 metres, ``colours``
    (M, 3) uint8 RGB, ``normals`` (M, 3) float32 unit vectors or None."""

    points: np.ndarray
    colours: np.ndarray
    normals: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 3)
        self.colours = np.asarray(self.colours, dtype=np.uint8).reshape(-1, 3)
        if len(self.colours) != len(self.points):
            raise ValueError(
                f"a point cloud needs one colour per point: {len(self.points)} points, {len(self.colours)} colours"
            )
        if self.normals is not None:
            self.normals = np.asarray(self.normals, dtype=np.float32).reshape(-1, 3)
            if len(self.normals) != len(self.points):
                raise ValueError(
                    f"a point cloud needs one normal per point: {len(self.points)} points, {len(self.normals)} normals"
                )

    def __len__(self) -> int:
        return len(self.points)

    @classmethod
    def empty(cls, with_normals: bool = False) -> PointCloud:
        """A cloud with no points."""
        return cls(
            np.zeros((0, 3), np.float32),
            np.zeros((0, 3), np.uint8),
            np.zeros((0, 3), np.float32) if with_normals else None,
        )

    @classmethod
    def concatenate(cls, clouds: Sequence[PointCloud]) -> PointCloud:
        """All the points of ``clouds`` in order (normals only when every cloud has them)."""
        if not clouds:
            return cls.empty()
        with_normals = all(c.normals is not None for c in clouds)
        return cls(
            np.concatenate([c.points for c in clouds]),
            np.concatenate([c.colours for c in clouds]),
            np.concatenate([c.normals for c in clouds]) if with_normals else None,
        )


@dataclass(eq=False)
class VoxelSums:
    """Per-voxel sums of a cloud on the grid of cubes of side ``voxel_size`` anchored at the
    origin: ``keys`` (V,) int64 packed cell indices, ascending and unique; ``counts`` (V,) int32
    points per voxel; ``offsets`` (V, 3) float32 sums of the points' offsets from their voxel's
    corner (precise whatever the distance to the origin); ``colours`` and ``normals`` (V, 3)
    float32 sums (colour sums are exact up to 65793 points per voxel; ``normals`` None when the
    cloud had none). 36 bytes per voxel, 48 with normals.

    Numpy only (single-threaded): fusion runs beside tracking, and torch's or Open3D's thread
    pools slow down several times when the tracker keeps the cores busy (Open3D's
    voxel_down_sample is also ten times slower here)."""

    voxel_size: float
    keys: np.ndarray
    counts: np.ndarray
    offsets: np.ndarray
    colours: np.ndarray
    normals: np.ndarray | None

    @classmethod
    def of(cls, cloud: PointCloud, voxel_size: float) -> VoxelSums:
        """The sums of ``cloud``'s points, voxel by voxel. Raises ValueError when ``voxel_size``
        is not positive or the cloud reaches more than 2^20 voxels from the origin."""
        if voxel_size <= 0:
            raise ValueError(f"voxel_size must be > 0, got {voxel_size}")
        cells = np.floor(cloud.points / np.float32(voxel_size)).astype(np.int64)
        if cells.size and np.abs(cells + 0.5).max() >= 1 << (_KEY_BITS - 1):
            raise ValueError(
                f"voxel_size {voxel_size} is too small for a cloud reaching "
                f"{np.abs(cloud.points).max():.3g} from the origin"
            )
        offsets = (cloud.points - cells * voxel_size).astype(np.float32)
        return cls._grouped(
            voxel_size, pack_cells(cells), np.ones(len(cells), np.int32), offsets, cloud.colours, cloud.normals
        )

    def coarsened(self, factor: int) -> VoxelSums:
        """The sums of the same points on the grid ``factor`` times coarser (exactly what
        :meth:`of` gives at ``factor * voxel_size``, up to float32 rounding)."""
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        cells = _unpack(self.keys)
        coarse = np.floor_divide(cells, factor)
        shift = (cells - coarse * factor) * self.voxel_size  # each fine corner from its coarse corner
        offsets = (self.offsets + self.counts[:, None] * shift).astype(np.float32)
        return VoxelSums._grouped(
            self.voxel_size * factor, pack_cells(coarse), self.counts, offsets, self.colours, self.normals
        )

    @classmethod
    def merge(cls, parts: Sequence[VoxelSums]) -> VoxelSums:
        """The sums of the union of the clouds ``parts`` were made from (one voxel size)."""
        if len({part.voxel_size for part in parts}) != 1:
            raise ValueError("voxel sums can only be merged on one grid")
        with_normals = all(part.normals is not None for part in parts)
        return cls._grouped(
            parts[0].voxel_size,
            np.concatenate([p.keys for p in parts]),
            np.concatenate([p.counts for p in parts]),
            np.concatenate([p.offsets for p in parts]),
            np.concatenate([p.colours for p in parts]),
            np.concatenate([p.normals for p in parts]) if with_normals else None,
        )

    def plus(self, other: VoxelSums) -> VoxelSums:
        """The sums of the union of the two clouds (one voxel size), as :meth:`merge` gives them,
        at the cost of copying this one's arrays once: ``other``'s voxels are added to or
        inserted among this one's sorted keys (the way to add a small part to a large cloud).
        Neither is changed."""
        if other.voxel_size != self.voxel_size:
            raise ValueError("voxel sums can only be merged on one grid")
        if (self.normals is None) != (other.normals is None):
            return VoxelSums.merge([self, other])
        position = np.searchsorted(self.keys, other.keys)
        found = position < len(self.keys)
        found[found] = self.keys[position[found]] == other.keys[found]
        new = ~found
        # where other's new voxels land among the result's rows; then where the found ones do
        keys = np.insert(self.keys, position[new], other.keys[new])
        shifted = position[found] + np.searchsorted(position[new], position[found], side="right")

        def combined(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
            result = np.insert(mine, position[new], theirs[new], axis=0)
            result[shifted] += theirs[found]
            return result

        counts = combined(self.counts, other.counts)
        offsets = combined(self.offsets, other.offsets)
        colours = combined(self.colours, other.colours)
        normals = None
        if self.normals is not None:
            assert other.normals is not None  # both have normals or neither (checked above)
            normals = combined(self.normals, other.normals)
        return VoxelSums(self.voxel_size, keys, counts, offsets, colours, normals)

    @classmethod
    def _grouped(
        cls,
        voxel_size: float,
        keys: np.ndarray,
        counts: np.ndarray,
        offsets: np.ndarray,
        colours: np.ndarray,
        normals: np.ndarray | None,
    ) -> VoxelSums:
        """Rows with equal keys summed into one (bincount sums in float64, stored as float32)."""
        unique, inverse = np.unique(keys, return_inverse=True)

        def summed(values: np.ndarray, dtype: type = np.float32) -> np.ndarray:
            values = values.reshape(len(keys), 1 if values.ndim == 1 else values.shape[1])
            return np.stack(
                [np.bincount(inverse, weights=values[:, k], minlength=len(unique)) for k in range(values.shape[1])],
                axis=1,
            ).astype(dtype)

        return cls(
            voxel_size,
            unique,
            summed(counts, np.int32)[:, 0],
            summed(offsets),
            summed(colours),
            None if normals is None else summed(normals),
        )

    def means(self) -> PointCloud:
        """One point per voxel, ordered by key: the mean position, the rounded mean colour and
        the renormalised mean normal (zero when they cancel) of the points inside."""
        counts = self.counts[:, None].astype(np.float64)
        points = _unpack(self.keys) * self.voxel_size + self.offsets / counts
        normals = None
        if self.normals is not None:
            length = np.linalg.norm(self.normals, axis=1, keepdims=True)
            normals = np.divide(self.normals, length, out=np.zeros_like(self.normals), where=length > 0)
        return PointCloud(points, np.round(self.colours / counts), normals)


def pack_cells(cells: np.ndarray) -> np.ndarray:
    """(V,) int64 keys of (V, 3) int64 voxel cells (each axis within +-2^20)."""
    cells = cells + (1 << (_KEY_BITS - 1))
    return (cells[:, 0] << (2 * _KEY_BITS)) | (cells[:, 1] << _KEY_BITS) | cells[:, 2]


def _unpack(keys: np.ndarray) -> np.ndarray:
    """(V, 3) int64 voxel cells of (V,) keys (the inverse of :func:`pack_cells`)."""
    mask = (1 << _KEY_BITS) - 1
    return np.stack([keys >> (2 * _KEY_BITS), (keys >> _KEY_BITS) & mask, keys & mask], 1) - (1 << (_KEY_BITS - 1))


def voxel_downsample(cloud: PointCloud, voxel_size: float) -> PointCloud:
    """One point per occupied cube of side ``voxel_size`` (metres, grid anchored at the origin):
    see :meth:`VoxelSums.means`."""
    return VoxelSums.of(cloud, voxel_size).means()


def subsample(cloud: PointCloud, max_points: int) -> PointCloud:
    """At most ``max_points`` points of ``cloud``: a fixed pseudo-random subset (same input, same
    output), in the original order."""
    if len(cloud) <= max_points:
        return cloud
    keep = np.sort(np.random.default_rng(0).choice(len(cloud), max_points, replace=False))
    return PointCloud(cloud.points[keep], cloud.colours[keep], None if cloud.normals is None else cloud.normals[keep])
