"""Rasteriser of :class:`~slam.synthetic.scene.Scene` objects: RGB image and exact depth of a
pinhole camera at any pose.

How it works (everything per face is one OpenCV call on the face's bounding rectangle, never a
Python loop over pixels):

- faces are culled when seen from behind, behind the camera or outside the view frustum;
- the rest are drawn front to back (nearest first); faces that reach behind the near plane, and
  faces whose depth range is large (floors, walls, roads), are clipped to the view frustum in the
  camera frame and cut into slabs of limited depth ratio, so that each piece can pick its own
  texture mipmap level;
- a piece's pixels are those whose centres its projected polygon covers (``cv2.fillConvexPoly``
  at 1/16 pixel precision, which also takes pixels within half a pixel of its edges);
- inverse depth on a plane is affine in the pixel coordinates, ``1/z = q . (u, v, 1)``, so the
  z-buffer (of inverse depth) is exact and cheap; a piece draws where it is nearer than the
  z-buffer;
- the texture is sampled with ``cv2.warpPerspective`` of the chosen mipmap level through the
  homography image -> face plane -> texture, then multiplied by the face's baked lighting gain.

Depth is the z coordinate in the camera frame (metres), exact up to float32 rounding for the face
drawn at each pixel; pixels where no face is seen get depth 0 and the scene's sky, or black.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from slam.geometry.camera import Camera
from slam.synthetic.scene import Scene

#: Coordinates given to cv2.fillConvexPoly carry this many fractional bits.
_SUBPIXEL_BITS = 4
#: Most corners of a drawn piece: a quadrilateral clipped by the near plane, four frustum planes
#: and the two planes of a depth slab (each clip adds at most one corner).
_MAX_CORNERS = 11


@dataclass
class RenderResult:
    """One rendered view: ``image`` H x W x 3 uint8 RGB; ``depth`` H x W float32 metres along the
    camera's z axis, 0 where no face is seen (sky); ``face_id`` H x W int32 index of the scene
    face seen at each pixel, -1 where none (only when asked for, else None)."""

    image: np.ndarray
    depth: np.ndarray
    face_id: np.ndarray | None = None


@dataclass
class _Pieces:
    """Drawing parameters of m pieces: ``boxes`` [x0, y0, x1, y1] image rectangles (x0 == x1:
    skip), ``levels`` mipmap levels, ``warps`` (m, 3, 3) rectangle pixel -> texel homographies,
    ``corners`` (m, corners, 2) int32 polygon corners in the rectangle, fixed point; ``nearest``
    inverse depth of the nearest corner."""

    boxes: list[list[int]]
    levels: list[int]
    warps: np.ndarray
    corners: np.ndarray
    nearest: list[float]


class Renderer:
    """Renders scenes for one camera (pinhole, no distortion, known image size).

    ``near``: near clipping distance (metres; surfaces closer than this are not drawn).
    ``slab_ratio``: largest ratio of far to near depth within one drawn piece of a face (each
    piece picks one mipmap level). ``mip_bias``: added to the log2 of the texture minification
    before choosing the level (positive: blurrier, negative: sharper but aliased).
    """

    def __init__(self, camera: Camera, near: float = 0.05, slab_ratio: float = 2.0, mip_bias: float = 0.0):
        if camera.size is None:
            raise ValueError("the renderer needs a camera with an image size")
        if camera.is_distorted:
            raise ValueError("the renderer draws pinhole images: use a camera without distortion")
        if near <= 0 or slab_ratio <= 1:
            raise ValueError("near must be positive and slab_ratio above 1")
        self.camera = camera
        self.near = float(near)
        self.slab_ratio = float(slab_ratio)
        self.mip_bias = float(mip_bias)
        self.width, self.height = camera.size
        self._K = camera.K
        self._K_inv = np.linalg.inv(self._K)
        self._focal = float(np.sqrt(camera.fx * camera.fy))
        self._cols = np.arange(self.width, dtype=np.float32)
        self._rows = np.arange(self.height, dtype=np.float32)
        w, h = self.width, self.height
        # half-spaces a . X >= 0 (camera frame) whose intersection is the cone of rays through the
        # image rectangle [-0.5, w - 0.5] x [-0.5, h - 0.5], widened by one pixel
        self._frustum = np.array(
            [
                [camera.fx, 0.0, camera.cx + 1.5],
                [-camera.fx, 0.0, w + 0.5 - camera.cx],
                [0.0, camera.fy, camera.cy + 1.5],
                [0.0, -camera.fy, h + 0.5 - camera.cy],
            ]
        )
        self._frustum_planes = [tuple(plane) for plane in self._frustum.tolist()]

    # ------------------------------------------------------------------ public
    def render(self, scene: Scene, pose_c2w: np.ndarray, face_ids: bool = False) -> RenderResult:
        """Render ``scene`` seen from ``pose_c2w`` (4 x 4 camera-to-world, OpenCV camera frame:
        x right, y down, z forward)."""
        pose = np.asarray(pose_c2w, np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"pose must be 4 x 4 camera-to-world, got shape {pose.shape}")
        rot_wc, centre = pose[:3, :3], pose[:3, 3]
        rot_cw = rot_wc.T
        trans_cw = -rot_cw @ centre

        image = np.zeros((self.height, self.width, 3), np.uint8)
        inv_depth = np.zeros((self.height, self.width), np.float32)
        ids = np.full((self.height, self.width), -1, np.int32) if face_ids else None

        faces, cam_vertices = self._visible_faces(scene, centre, rot_cw, trans_cw)
        if len(faces):
            self._draw_faces(scene, faces, cam_vertices, rot_cw, trans_cw, centre, image, inv_depth, ids)

        depth = np.zeros_like(inv_depth)
        np.divide(1.0, inv_depth, out=depth, where=inv_depth > 0)
        if scene.sky is not None:
            empty = cv2.compare(inv_depth, 0.0, cv2.CMP_LE)  # type: ignore[call-overload]  # stubs lack a scalar src2
            cv2.copyTo(self._sky(scene, rot_wc), empty, image)
        return RenderResult(image, depth, ids)

    # ------------------------------------------------------------------ culling
    def _visible_faces(
        self, scene: Scene, centre: np.ndarray, rot_cw: np.ndarray, trans_cw: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Faces that may be seen, nearest first, and their corners in the camera frame (n, 4, 3)."""
        facing = np.nonzero(scene.normals @ centre - scene.offsets > 1e-9)[0]
        cam = scene.vertices[facing] @ rot_cw.T + trans_cw
        in_front = cam[:, :, 2].max(axis=1) > self.near
        side = cam @ self._frustum.T  # (n, 4 corners, 4 planes)
        outside = (side < 0).all(axis=1).any(axis=1)
        keep = in_front & ~outside
        faces, cam = facing[keep], cam[keep]
        nearest = np.maximum(cam[:, :, 2].min(axis=1), self.near)
        order = np.lexsort((faces, nearest))
        return faces[order], cam[order]

    # ------------------------------------------------------------------ drawing
    def _draw_faces(
        self,
        scene: Scene,
        faces: np.ndarray,
        cam_vertices: np.ndarray,
        rot_cw: np.ndarray,
        trans_cw: np.ndarray,
        centre: np.ndarray,
        image: np.ndarray,
        inv_depth: np.ndarray,
        ids: np.ndarray | None,
    ) -> None:
        # per face: homography plane (s, t, 1) -> image pixel, K [R u | R v | R o + t], and its
        # composition image -> level-0 texel
        plane_to_image = np.empty((len(faces), 3, 3))
        plane_to_image[:, :, 0] = scene.plane_u[faces] @ rot_cw.T
        plane_to_image[:, :, 1] = scene.plane_v[faces] @ rot_cw.T
        plane_to_image[:, :, 2] = scene.plane_origins[faces] @ rot_cw.T + trans_cw
        image_to_texel = scene.plane_to_texture[faces] @ np.linalg.inv(self._K @ plane_to_image)
        # per face: inverse depth 1/z = q . (u, v, 1) on its plane n_c . X = d_c (camera frame)
        normals_cam = scene.normals[faces] @ rot_cw.T
        plane_d = scene.offsets[faces] - scene.normals[faces] @ centre
        q = (normals_cam @ self._K_inv) / plane_d[:, None]

        owner, polygons = self._pieces(cam_vertices)
        if not len(owner):
            return
        p = self._piece_parameters(scene, faces[owner], polygons, normals_cam[owner], image_to_texel[owner])
        q_rows = q[owner].astype(np.float32)
        gains = np.zeros((len(owner), 3, 3), np.float32)
        gains[:, [0, 1, 2], [0, 1, 2]] = scene.gains[faces[owner]]
        for i, (face, (x0, y0, x1, y1), level) in enumerate(zip(faces[owner].tolist(), p.boxes, p.levels)):
            if x0 >= x1:
                continue
            z_rect = inv_depth[y0:y1, x0:x1]
            if cv2.minMaxLoc(z_rect)[0] >= p.nearest[i]:
                continue  # everything in its rectangle is nearer than the piece's nearest corner
            h, w = y1 - y0, x1 - x0
            covered = np.zeros((h, w), np.uint8)
            cv2.fillConvexPoly(covered, p.corners[i], 255, cv2.LINE_8, _SUBPIXEL_BITS)
            a, b, c = q_rows[i]
            rect_inv_depth = np.add.outer(b * self._rows[y0:y1] + c, a * self._cols[x0:x1])
            drawn = cv2.compare(rect_inv_depth, z_rect, cv2.CMP_GT)
            cv2.bitwise_and(drawn, covered, dst=drawn)
            if cv2.countNonZero(drawn) == 0:
                continue
            cv2.copyTo(rect_inv_depth, drawn, z_rect)
            texture = scene.textures[scene.texture_index[face]]
            texels = cv2.warpPerspective(
                texture.levels[level],
                p.warps[i],
                (w, h),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_WRAP if texture.wrap else cv2.BORDER_REPLICATE,
            )
            cv2.copyTo(cv2.transform(texels, gains[i]), drawn, image[y0:y1, x0:x1])
            if ids is not None:
                ids[y0:y1, x0:x1][drawn > 0] = face

    def _pieces(self, cam_vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The convex pieces to draw, in drawing order: (owner (m,) index into the faces, polygons
        (m, _MAX_CORNERS, 3) camera frame, padded by repeating their last corner). Faces that
        reach behind the near plane or span more than ``slab_ratio`` in depth are clipped to the
        view frustum and cut into slabs; the others are drawn whole."""
        z = cam_vertices[:, :, 2]
        z_min = z.min(axis=1)
        simple = (z_min >= self.near) & (z.max(axis=1) <= self.slab_ratio * z_min)
        polygons = np.concatenate([cam_vertices, np.repeat(cam_vertices[:, -1:], _MAX_CORNERS - 4, axis=1)], axis=1)
        if simple.all():
            return np.arange(len(cam_vertices)), polygons
        owner, pieces = [], []
        for k in range(len(cam_vertices)):
            if simple[k]:
                owner.append(k)
                pieces.append(polygons[k])
                continue
            for piece in self._slabs(cam_vertices[k]):
                owner.append(k)
                pieces.append(np.concatenate([piece, np.repeat(piece[-1:], _MAX_CORNERS - len(piece), axis=0)]))
        if not owner:
            return np.zeros(0, int), np.zeros((0, _MAX_CORNERS, 3))
        return np.array(owner), np.stack(pieces)

    def _slabs(self, polygon: np.ndarray) -> list[np.ndarray]:
        """Clip a camera-frame polygon to the near plane and the view frustum, then cut it into
        slabs whose far depth is at most ``slab_ratio`` times their near depth."""
        corners = _clip([tuple(c) for c in polygon.tolist()], (0.0, 0.0, 1.0), self.near)
        for plane in self._frustum_planes:
            if len(corners) < 3:
                return []
            corners = _clip(corners, plane, 0.0)
        if len(corners) < 3:
            return []
        depths = [c[2] for c in corners]
        z_near, z_far = min(depths), max(depths)
        pieces = []
        lower = z_near
        while lower < z_far:
            upper = lower * self.slab_ratio
            piece = corners
            if lower > z_near:
                piece = _clip(piece, (0.0, 0.0, 1.0), lower)
            if upper < z_far and len(piece) >= 3:
                piece = _clip(piece, (0.0, 0.0, -1.0), -upper)
            if len(piece) >= 3:
                pieces.append(np.array(piece))
            lower = upper
        return pieces

    def _piece_parameters(
        self, scene: Scene, faces: np.ndarray, polygons: np.ndarray, normals_cam: np.ndarray, image_to_texel: np.ndarray
    ) -> _Pieces:
        """Everything about the pieces that does not depend on the z-buffer, for all at once."""
        cam = self.camera
        x, y, z = polygons[..., 0], polygons[..., 1], polygons[..., 2]
        u = cam.fx * x / z + cam.cx
        v = cam.fy * y / z + cam.cy
        u_min, u_max, v_min, v_max = u.min(axis=1), u.max(axis=1), v.min(axis=1), v.max(axis=1)
        x0 = np.clip(np.floor(u_min), 0, self.width).astype(int)
        x1 = np.clip(np.ceil(u_max) + 1, 0, self.width).astype(int)
        y0 = np.clip(np.floor(v_min), 0, self.height).astype(int)
        y1 = np.clip(np.ceil(v_max) + 1, 0, self.height).astype(int)
        # a piece whose bounding box holds no pixel centre of the image covers no pixel: skipped
        covers = (np.ceil(np.maximum(u_min, 0)) <= np.floor(np.minimum(u_max, self.width - 1))) & (
            np.ceil(np.maximum(v_min, 0)) <= np.floor(np.minimum(v_max, self.height - 1))
        )
        x1 = np.where(covers & (y0 < y1), x1, x0)  # x0 == x1 marks a piece to skip

        # mipmap level from the texels per pixel at the piece's middle depth and slant
        centroid = polygons.mean(axis=1)
        cosine = np.abs(np.einsum("ij,ij->i", normals_cam, centroid)) / np.linalg.norm(centroid, axis=1)
        z_mid = np.sqrt(z.min(axis=1) * z.max(axis=1))
        minification = scene.texels_per_metre[faces] * z_mid / (self._focal * np.sqrt(np.maximum(cosine, 0.05)))
        texture = scene.texture_index[faces]
        level_count = np.array([len(t.levels) for t in scene.textures])[texture]
        levels = np.clip(np.floor(np.log2(np.maximum(minification, 1e-6)) + self.mip_bias), 0, level_count - 1)
        levels = levels.astype(int)

        # warp: rectangle pixel -> texel of the chosen level, shifted by whole texture periods so
        # that the piece's texels start inside the texture (OpenCV's fast in-range path)
        sizes = np.array([[lv.shape[1], lv.shape[0]] for t in scene.textures for lv in t.levels], np.float64)
        first = np.cumsum([0] + [len(t.levels) for t in scene.textures])[:-1]
        level_size = sizes[first[texture] + levels]
        base_size = sizes[first[texture]]
        scale = level_size / base_size
        to_level = np.zeros((len(faces), 3, 3))
        to_level[:, 0, 0], to_level[:, 1, 1], to_level[:, 2, 2] = scale[:, 0], scale[:, 1], 1.0
        to_level[:, :2, 2] = 0.5 * scale - 0.5
        to_rect = np.tile(np.eye(3), (len(faces), 1, 1))
        to_rect[:, 0, 2], to_rect[:, 1, 2] = x0, y0
        warps = to_level @ image_to_texel @ to_rect
        local = np.stack([u - x0[:, None], v - y0[:, None], np.ones_like(u)], axis=1)  # (m, 3, corners)
        texel = warps @ local
        start = (texel[:, :2] / texel[:, 2:]).min(axis=2)
        wraps = np.array([t.wrap for t in scene.textures])[texture]
        shift = np.where(wraps[:, None], -level_size * np.floor(start / level_size), 0.0)
        warps[:, :2, :] += shift[:, :, None] * warps[:, 2:, :]

        corners = np.rint(np.stack([local[:, 0], local[:, 1]], axis=2) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        boxes = np.stack([x0, y0, x1, y1], axis=1).tolist()
        return _Pieces(boxes, levels.tolist(), warps, corners, (1.0 / z.min(axis=1)).tolist())

    # ------------------------------------------------------------------ sky
    def _sky(self, scene: Scene, rot_wc: np.ndarray) -> np.ndarray:
        """Sky gradient by elevation of each pixel's viewing ray (world z up), evaluated on a grid
        8 times coarser than the image and interpolated."""
        assert scene.sky is not None  # only called for scenes with a sky
        step = 8
        cols = np.arange(step / 2 - 0.5, self.width + step, step)
        rows = np.arange(step / 2 - 0.5, self.height + step, step)
        pixels = np.stack([*np.meshgrid(cols, rows), np.ones((len(rows), len(cols)))], axis=-1)
        rays = pixels @ (rot_wc @ self._K_inv).T
        elevation = rays[..., 2] / np.linalg.norm(rays, axis=-1)
        t = np.clip(elevation, 0.0, 1.0)[..., None] ** 0.6
        colour = (1 - t) * np.asarray(scene.sky.horizon) + t * np.asarray(scene.sky.zenith)
        coarse = np.clip(colour * 255 + 0.5, 0, 255).astype(np.uint8)
        full = cv2.resize(coarse, (len(cols) * step, len(rows) * step), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(full[: self.height, : self.width])


def _clip(
    polygon: list[tuple[float, float, float]], normal: tuple[float, float, float], offset: float
) -> list[tuple[float, float, float]]:
    """The part of a convex polygon (list of (x, y, z)) where ``normal . X >= offset``
    (Sutherland-Hodgman; plain Python, faster than numpy for a handful of corners)."""
    nx, ny, nz = normal
    side = [nx * x + ny * y + nz * z - offset for x, y, z in polygon]
    if min(side) >= 0:
        return polygon
    if max(side) < 0:
        return []
    out = []
    count = len(polygon)
    for i in range(count):
        j = i + 1 if i + 1 < count else 0
        si, sj = side[i], side[j]
        if si >= 0:
            out.append(polygon[i])
        if (si >= 0) != (sj >= 0):
            t = si / (si - sj)
            (x0, y0, z0), (x1, y1, z1) = polygon[i], polygon[j]
            out.append((x0 + t * (x1 - x0), y0 + t * (y1 - y0), z0 + t * (z1 - z0)))
    return out


@lru_cache(maxsize=8)
def renderer_for(camera: Camera) -> Renderer:
    """A :class:`Renderer` with default settings for ``camera``, kept for reuse."""
    return Renderer(camera)


def render(scene: Scene, pose_c2w: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Render ``scene`` from ``pose_c2w`` (4 x 4 camera-to-world, OpenCV camera frame) with
    ``camera`` (pinhole, with image size): returns (image H x W x 3 uint8 RGB, depth H x W
    float32 metres, 0 where no face is seen)."""
    result = renderer_for(camera).render(scene, pose_c2w)
    return result.image, result.depth
