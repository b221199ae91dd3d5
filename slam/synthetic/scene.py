"""Scenes made of planar textured quadrilaterals, and the builder that assembles and lights them.

World frame of every synthetic scene: right-handed, metres, z up (gravity along -z), the ground
or floor is the plane z = 0.

A face is a convex planar quadrilateral with corners ``p0 p1 p2 p3`` listed as seen from its
visible side: top-left, top-right, bottom-right, bottom-left (clockwise on screen). Its outward
normal is ``n = (p3 - p0) x (p1 - p0)`` normalised (pointing toward the viewer); the face is only
seen from the side the normal points to (back faces are culled). The texture is mapped by a plane
homography that sends the four corners to four texel positions (texel (0, 0) is the centre of
the top-left texel), so that rectangles may tile a texture and trapezoids may follow a curved
road without seams.

Lighting is baked per face when the scene is built: a Lambertian term from one light (a point
lamp indoors, the sun outdoors) plus ambient light, times the face's tint, the scene's exposure
and colour cast, stored as one RGB gain per face that multiplies the texture's values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from slam.synthetic.textures import Texture, get_texture


@dataclass(frozen=True)
class Lighting:
    """Light of a scene. Exactly one of ``lamp`` (a point light's world position, metres) and
    ``sun`` (a unit world vector pointing toward a directional light) is set."""

    ambient: float
    diffuse: float
    lamp: tuple[float, float, float] | None = None
    sun: tuple[float, float, float] | None = None
    #: distance (metres) at which a lamp's light has fallen to half (inverse-square-like falloff)
    lamp_reach: float = 4.0
    exposure: float = 1.0
    colour_cast: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if (self.lamp is None) == (self.sun is None):
            raise ValueError("Lighting needs exactly one of lamp (position) and sun (direction)")

    def irradiance(self, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """Relative light received by surfaces at world ``points`` (N, 3) with unit ``normals``
        (N, 3): ambient + diffuse * cos(incidence) * falloff, shape (N,)."""
        if self.sun is not None:
            to_light = np.broadcast_to(np.asarray(self.sun, np.float64), points.shape)
            falloff = np.ones(len(points))
        else:
            offset = np.asarray(self.lamp, np.float64) - points
            distance = np.linalg.norm(offset, axis=1)
            to_light = offset / np.maximum(distance, 1e-9)[:, None]
            falloff = 1.0 / (1.0 + (distance / self.lamp_reach) ** 2)
        cosine = np.clip(np.einsum("ij,ij->i", normals, to_light), 0.0, None)
        return self.ambient + self.diffuse * cosine * falloff


@dataclass(frozen=True)
class Sky:
    """A sky gradient drawn where no face is seen (RGB colours in [0, 1]): ``horizon`` at zero
    elevation, ``zenith`` straight up. Sky pixels have no depth (0 = invalid)."""

    zenith: tuple[float, float, float]
    horizon: tuple[float, float, float]


@dataclass(frozen=True)
class Scene:
    """A scene of F textured quadrilaterals in the world frame (z up, metres).

    Arrays (float64 unless said): ``vertices`` (F, 4, 3) corners p0..p3; ``normals`` (F, 3) unit
    outward normals; ``offsets`` (F,) with ``normals[f] . X = offsets[f]`` on face f's plane;
    ``plane_origins``, ``plane_u``, ``plane_v`` (F, 3): a point and orthonormal axes of each plane,
    plane coordinates (s, t) meaning ``origin + s * u + t * v``; ``plane_to_texture`` (F, 3, 3)
    homography from (s, t, 1) to level-0 texel coordinates; ``texels_per_metre`` (F,) the mean
    texture density, for mipmap selection; ``texture_index`` (F,) int into ``textures``;
    ``gains`` (F, 3) float32 baked lighting and tint: RGB factors applied to texture values.
    ``sky`` is None for closed scenes (every view ray hits a face).
    """

    name: str
    vertices: np.ndarray
    normals: np.ndarray
    offsets: np.ndarray
    plane_origins: np.ndarray
    plane_u: np.ndarray
    plane_v: np.ndarray
    plane_to_texture: np.ndarray
    texels_per_metre: np.ndarray
    texture_index: np.ndarray
    gains: np.ndarray
    textures: tuple[Texture, ...]
    sky: Sky | None = None

    @property
    def num_faces(self) -> int:
        return int(len(self.vertices))

    def plane_distance(self, face: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Signed distance (metres) of world ``points`` (N, 3) to the planes of faces ``face`` (N,)."""
        return np.einsum("ij,ij->i", self.normals[face], points) - self.offsets[face]


@dataclass
class SceneBuilder:
    """Collects faces (:meth:`add_quad`, :meth:`add_box`) and bakes them into a :class:`Scene`."""

    name: str
    _corners: list[np.ndarray] = field(default_factory=list)
    _texel_corners: list[np.ndarray] = field(default_factory=list)
    _textures: list[str] = field(default_factory=list)
    _tints: list[np.ndarray] = field(default_factory=list)

    def add_quad(
        self,
        corners: npt.ArrayLike,
        texture: str,
        texel_corners: npt.ArrayLike,
        tint: Sequence[float] | np.ndarray = (1.0, 1.0, 1.0),
    ) -> None:
        """Add a convex planar quadrilateral: ``corners`` (4, 3) world p0..p3 (top-left, top-right,
        bottom-right, bottom-left seen from the visible side), mapped to ``texel_corners`` (4, 2)
        of ``texture`` (texels; beyond the texture it wraps for tiling textures); ``tint`` scales
        the texture's RGB."""
        corners = np.asarray(corners, np.float64).reshape(4, 3)
        normal = np.cross(corners[3] - corners[0], corners[1] - corners[0])
        if np.linalg.norm(normal) < 1e-12:
            raise ValueError("degenerate quad")
        normal /= np.linalg.norm(normal)
        if np.abs((corners - corners[0]) @ normal).max() > 1e-6:
            raise ValueError("quad corners are not coplanar")
        self._corners.append(corners)
        self._texel_corners.append(np.asarray(texel_corners, np.float64).reshape(4, 2))
        self._textures.append(texture)
        self._tints.append(np.asarray(tint, np.float64))

    def add_rectangle(
        self,
        corners: npt.ArrayLike,
        texture: str,
        metres_per_texture: float | tuple[float, float] | None = None,
        texel_offset: tuple[float, float] = (0.0, 0.0),
        tint: Sequence[float] | np.ndarray = (1.0, 1.0, 1.0),
    ) -> None:
        """Add a quad whose texture is either stretched to fit exactly (``metres_per_texture``
        None: pictures, doors) or tiled with one texture repeat covering ``metres_per_texture``
        metres (a number, or (along p0->p1, along p0->p3)), shifted by ``texel_offset``."""
        corners = np.asarray(corners, np.float64).reshape(4, 3)
        tex = get_texture(texture)
        width_m = np.linalg.norm(corners[1] - corners[0])
        height_m = np.linalg.norm(corners[3] - corners[0])
        if metres_per_texture is None:
            span = np.array([tex.width, tex.height], np.float64)
        else:
            if np.isscalar(metres_per_texture):
                mx = my = cast(float, metres_per_texture)
            else:
                mx, my = cast("tuple[float, float]", metres_per_texture)
            span = np.array([width_m * tex.width / mx, height_m * tex.height / my])
        start = np.asarray(texel_offset, np.float64) - 0.5
        texel_corners = start + np.array([[0, 0], [span[0], 0], span, [0, span[1]]])
        self.add_quad(corners, texture, texel_corners, tint)

    def add_box(
        self,
        centre: Sequence[float] | np.ndarray,
        size: Sequence[float] | np.ndarray,
        yaw: float,
        texture: str | Sequence[str],
        metres_per_texture: float | tuple[float, float] | None = 1.0,
        tint: Sequence[float] | np.ndarray = (1.0, 1.0, 1.0),
        rng: np.random.Generator | None = None,
        skip_bottom: bool = True,
    ) -> None:
        """Add the faces of a box: ``centre`` (3,) of its bottom face, ``size`` (length along its
        x axis, width along its y axis, height), rotated by ``yaw`` radians about world z.
        ``texture`` is one name, or one per face: +x, -x, +y, -y, top and optionally bottom (the
        top's when not given). Side textures run upright; ``rng`` randomises the texture offset
        per face. The bottom face is left out when ``skip_bottom`` (boxes standing on the floor)."""
        names = [texture] * 6 if isinstance(texture, str) else list(texture)
        if len(names) not in (5, 6):
            raise ValueError(f"a box takes one texture or 5 or 6 (one per face), got {len(names)}")
        names = names + names[4:5] if len(names) == 5 else names
        length, width, height = size
        c, s = np.cos(yaw), np.sin(yaw)
        ax, ay, up = np.array([c, s, 0.0]), np.array([-s, c, 0.0]), np.array([0.0, 0.0, 1.0])
        base = np.asarray(centre, np.float64)
        hx, hy = ax * length / 2, ay * width / 2
        top, bottom = base + up * height, base

        def side(outward: np.ndarray, along: np.ndarray) -> np.ndarray:
            # seen from outside, "along" points to the viewer's right
            return np.array(
                [top + outward - along, top + outward + along, bottom + outward + along, bottom + outward - along]
            )

        faces = [
            side(hx, hy),
            side(-hx, -hy),
            side(hy, -hx),
            side(-hy, hx),
            np.array([top - hx + hy, top + hx + hy, top + hx - hy, top - hx - hy]),
        ]
        if not skip_bottom:
            faces.append(np.array([bottom - hx - hy, bottom + hx - hy, bottom + hx + hy, bottom - hx + hy]))
        for corners, name in zip(faces, names):
            offset = (0.0, 0.0) if rng is None else tuple(rng.uniform(0, 512, 2))
            self.add_rectangle(corners, name, metres_per_texture, offset, tint)

    def build(self, lighting: Lighting, sky: Sky | None = None) -> Scene:
        """Bake the faces and their lighting into a :class:`Scene`."""
        if not self._corners:
            raise ValueError("a scene needs at least one face")
        vertices = np.stack(self._corners)
        u = vertices[:, 1] - vertices[:, 0]
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        normals = np.cross(vertices[:, 3] - vertices[:, 0], vertices[:, 1] - vertices[:, 0])
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        v = np.cross(u, normals)
        origins = vertices[:, 0]
        offsets = np.einsum("ij,ij->i", normals, origins)

        names = sorted(set(self._textures))
        textures = tuple(get_texture(n) for n in names)
        index = np.array([names.index(n) for n in self._textures], np.int32)

        plane_to_texture = np.empty((len(vertices), 3, 3))
        density = np.empty(len(vertices))
        for f, (corners, texels) in enumerate(zip(vertices, self._texel_corners)):
            rel = corners - origins[f]
            plane = np.stack([rel @ u[f], rel @ v[f]], axis=1).astype(np.float32)
            plane_to_texture[f] = cv2.getPerspectiveTransform(plane, texels.astype(np.float32))
            area_plane = _polygon_area(plane)
            density[f] = np.sqrt(_polygon_area(texels) / max(area_plane, 1e-12))

        irradiance = lighting.irradiance(vertices.mean(axis=1), normals)
        gain = (
            np.stack(self._tints)
            * lighting.exposure
            * np.asarray(lighting.colour_cast)
            * irradiance[:, None] ** (1 / 2.2)
        )  # light acts on linear intensities (gamma 2.2)
        return Scene(
            self.name,
            vertices,
            normals,
            offsets,
            origins,
            u,
            v,
            plane_to_texture,
            density,
            index,
            gain.astype(np.float32),
            textures,
            sky,
        )


def _polygon_area(points: np.ndarray) -> float:
    x, y = np.asarray(points, np.float64).T
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
