"""Closed rooms: walls, floor and ceiling, a door, windows, framed pictures (photographs), and
furniture-like solids (cabinets, bookcases, a sideboard with a screen, a table with chairs,
cardboard boxes, a rug, skirting boards, a ceiling lamp), lit by the lamp.

World frame: metres, z up; the floor is the rectangle [0, Lx] x [0, Ly] at z = 0 and the ceiling
is at z = height. Everything tall stands against the walls, within :data:`WALL_BAND` metres of
them; the middle of the room holds only low furniture (at most :data:`LOW_FURNITURE_HEIGHT`), so
that a hand-held camera moving within :attr:`RoomLayout.free_min`..``free_max`` at heights
:attr:`RoomLayout.camera_heights` never meets a surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slam.synthetic.scene import Lighting, Scene, SceneBuilder
from slam.synthetic.textures import PICTURES, get_texture

#: Depth of the band along the walls where tall furniture stands (metres).
WALL_BAND = 0.6
#: Clearance between the camera's region and the wall band (metres).
CLEARANCE = 0.45
#: Height of the tallest furniture in the middle of the room (metres).
LOW_FURNITURE_HEIGHT = 1.0
#: How far the walls, floor and ceiling reach past the room's corners, so that the shell has no
#: cracks (the overhangs are outside the room, hidden behind the neighbouring surfaces).
_OVERHANG = 0.05


@dataclass(frozen=True)
class RoomLayout:
    """What a camera path needs to know about a room (world frame, metres, z up)."""

    size: tuple[float, float, float]  # Lx, Ly, height
    free_min: tuple[float, float]  # corner of the camera's allowed rectangle (x, y)
    free_max: tuple[float, float]
    camera_heights: tuple[float, float]  # allowed camera z range
    landmarks: tuple[tuple[float, float, float], ...]  # points worth looking at: furniture, pictures ...

    @property
    def centre(self) -> np.ndarray:
        lx, ly, h = self.size
        return np.array([lx / 2, ly / 2, h / 2])

    def wall_planes(self) -> list[tuple[np.ndarray, float]]:
        """The four walls as planes ``(unit normal (3,), offset)``, the points x with
        ``normal . x = offset``: x = 0, x = Lx, y = 0, y = Ly."""
        lx, ly, _ = self.size
        across, along = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
        return [(across, 0.0), (across, lx), (along, 0.0), (along, ly)]

    def floor_and_ceiling_planes(self) -> list[tuple[np.ndarray, float]]:
        """The floor (z = 0) and the ceiling (z = height) as planes, as :meth:`wall_planes`."""
        up = np.array([0.0, 0.0, 1.0])
        return [(up, 0.0), (up, self.size[2])]


@dataclass(frozen=True)
class _Wall:
    """A wall seen from inside: ``start`` (x, y) on the viewer's left, running along ``direction``
    (unit, to the viewer's right) for ``length`` metres; ``inward`` is its unit normal."""

    start: np.ndarray
    direction: np.ndarray
    length: float

    @property
    def inward(self) -> np.ndarray:
        return np.array([self.direction[1], -self.direction[0]])

    @property
    def yaw(self) -> float:
        """Yaw of a box standing against the wall: its x axis runs along the wall, its y axis
        points out of the room (its -y face faces into the room)."""
        return float(np.arctan2(self.direction[1], self.direction[0]))

    def point(self, along: float, away: float) -> np.ndarray:
        """(x, y) at ``along`` metres from the start and ``away`` metres into the room."""
        return self.start + along * self.direction + away * self.inward

    def rectangle(self, along0: float, along1: float, z0: float, z1: float, away: float) -> np.ndarray:
        """Corners (4, 3) of an upright rectangle facing into the room (p0 top-left ...)."""
        a, b = self.point(along0, away), self.point(along1, away)
        return np.array([[*a, z1], [*b, z1], [*b, z0], [*a, z0]])


class _WallSpace:
    """Free intervals along a wall, in two layers: 'floor' (furniture, doors) and 'upper'
    (pictures, windows); doors take both. Keeps a landmark (a point worth looking at) per item."""

    def __init__(self, wall: _Wall):
        self.wall = wall
        self.taken: dict[str, list[tuple[float, float]]] = {"floor": [], "upper": []}
        self.landmarks: list[tuple[float, float, float]] = []

    def place(
        self, rng: np.random.Generator, width: float, layers: tuple[str, ...], margin: float, look_height: float
    ) -> float | None:
        """Start of a free interval of ``width`` at least ``margin`` from the wall's ends and
        0.1 m from other items of the ``layers``, or None when none is found. The item's
        landmark is in front of the interval's middle at ``look_height``."""
        for _ in range(20):
            if self.wall.length - 2 * margin < width:
                return None
            start = rng.uniform(margin, self.wall.length - margin - width)
            if all(start + width + 0.1 <= a or start >= b + 0.1 for layer in layers for a, b in self.taken[layer]):
                for layer in layers:
                    self.taken[layer].append((start, start + width))
                self.landmarks.append((*self.wall.point(start + width / 2, 0.2), look_height))
                return start
        return None


def _pastel(rng: np.random.Generator, strength: float = 0.25) -> np.ndarray:
    """A light colour: white tinted toward a random hue."""
    hue = rng.dirichlet(np.ones(3))
    return 1.0 - strength * (1.0 - hue / hue.max())


def _wood_tint(rng: np.random.Generator) -> np.ndarray:
    """Tint of the (already brown) "wood" texture: lighter or darker, slightly warmer or cooler."""
    return np.array([1.0, 0.95, 0.9]) * rng.uniform(0.6, 1.1)


#: Colour of wood for grey textures ("door").
_WOOD_COLOUR = np.array([1.0, 0.74, 0.5])


def _door_leaves(
    builder: SceneBuilder,
    wall: _Wall,
    along0: float,
    along1: float,
    z0: float,
    z1: float,
    away: float,
    tint: np.ndarray,
) -> None:
    """Two door leaves side by side on a cupboard front, 1 cm apart."""
    leaf = (along1 - along0 - 0.01) / 2
    for k in range(2):
        a = along0 + k * (leaf + 0.01)
        builder.add_rectangle(wall.rectangle(a, a + leaf, z0, z1, away), "door", tint=tint)


def build_room(seed: int) -> tuple[Scene, RoomLayout]:
    """A furnished room, the same for the same ``seed``."""
    rng = np.random.default_rng([seed, 101])
    lx, ly, height = rng.uniform(4.6, 7.0), rng.uniform(4.6, 8.0), rng.uniform(2.5, 3.1)
    builder = SceneBuilder(f"room-{seed}")
    walls = _shell(builder, rng, lx, ly, height)
    spaces = [_WallSpace(w) for w in walls]

    def on_some_wall(place) -> None:
        """Try the walls in random order until ``place(space)`` succeeds (the item functions
        below add one item against a wall and return whether it fitted there)."""
        for k in rng.permutation(4):
            if place(spaces[k]):
                return

    on_some_wall(lambda space: _door(builder, rng, space))
    for _ in range(int(rng.integers(1, 3))):
        on_some_wall(lambda space: _window(builder, rng, space, height))
    pictures = [str(name) for name in rng.permutation(PICTURES)]
    for _ in range(int(rng.integers(3, 7))):
        photo = pictures.pop()
        on_some_wall(lambda space, photo=photo: _picture(builder, rng, space, photo))
    furniture = [_bookcase, _cabinet, _sideboard, _boxes, _bookcase, _cabinet, _boxes]
    for make in furniture[: int(rng.integers(4, 8))]:
        on_some_wall(lambda space, make=make: make(builder, rng, space, height))

    free_min = (WALL_BAND + CLEARANCE, WALL_BAND + CLEARANCE)
    free_max = (lx - WALL_BAND - CLEARANCE, ly - WALL_BAND - CLEARANCE)
    table = _table_and_chairs(builder, rng, free_min, free_max)
    _rug(builder, rng, free_min, free_max)
    landmarks = tuple(point for space in spaces for point in space.landmarks) + (table,)

    lamp = (lx / 2, ly / 2, height - 0.3)
    builder.add_box(
        (lx / 2, ly / 2, height - 0.08), (0.5, 0.5, 0.08), 0.0, "paint", 0.5, tint=(1.6, 1.55, 1.4), skip_bottom=False
    )
    lighting = Lighting(
        ambient=rng.uniform(0.35, 0.5),
        diffuse=rng.uniform(0.7, 1.0),
        lamp=lamp,
        lamp_reach=rng.uniform(3.0, 5.0),
        exposure=rng.uniform(0.9, 1.15),
        colour_cast=tuple(rng.uniform(0.93, 1.07, 3)),
    )
    camera_heights = (LOW_FURNITURE_HEIGHT + 0.15, min(1.75, height - 0.6))
    layout = RoomLayout((lx, ly, height), free_min, free_max, camera_heights, landmarks)
    return builder.build(lighting), layout


def _shell(builder: SceneBuilder, rng: np.random.Generator, lx: float, ly: float, height: float) -> list[_Wall]:
    """Floor, ceiling, four walls (one may be an accent wall) and skirting boards."""
    e = _OVERHANG
    floor_texture, floor_scale = [("wood", 0.8), ("tiles", 1.2), ("carpet", 1.0), ("checker", 1.2), ("concrete", 2.0)][
        int(rng.integers(5))
    ]
    floor_tint = _wood_tint(rng) if floor_texture == "wood" else _pastel(rng, 0.4) * rng.uniform(0.7, 1.0)
    builder.add_rectangle(
        [[-e, ly + e, 0], [lx + e, ly + e, 0], [lx + e, -e, 0], [-e, -e, 0]],
        floor_texture,
        floor_scale,
        tuple(rng.uniform(0, 512, 2)),
        floor_tint,
    )
    builder.add_rectangle(
        [[-e, -e, height], [lx + e, -e, height], [lx + e, ly + e, height], [-e, ly + e, height]],
        "paint",
        2.0,
        tint=_pastel(rng, 0.08),
    )

    walls = [
        _Wall(np.array([-e, ly]), np.array([1.0, 0.0]), lx + 2 * e),
        _Wall(np.array([lx, ly + e]), np.array([0.0, -1.0]), ly + 2 * e),
        _Wall(np.array([lx + e, 0.0]), np.array([-1.0, 0.0]), lx + 2 * e),
        _Wall(np.array([0.0, -e]), np.array([0.0, 1.0]), ly + 2 * e),
    ]
    wall_materials = [
        ("paint", 2.0),
        ("wallpaper", 1.0),
        ("bricks", 0.6),
        ("brick", 2.0),
        ("tiles", 1.2),
        ("concrete", 2.0),
    ]
    texture, scale = wall_materials[int(rng.integers(len(wall_materials)))]
    tint = _pastel(rng, 0.3)
    accent = int(rng.integers(4)) if rng.random() < 0.6 else -1
    for i, wall in enumerate(walls):
        if i == accent:
            a_texture, a_scale = wall_materials[int(rng.integers(len(wall_materials)))]
            builder.add_rectangle(
                wall.rectangle(0, wall.length, -e, height + e, 0.0),
                a_texture,
                a_scale,
                tuple(rng.uniform(0, 512, 2)),
                _pastel(rng, 0.45),
            )
        else:
            builder.add_rectangle(
                wall.rectangle(0, wall.length, -e, height + e, 0.0), texture, scale, tuple(rng.uniform(0, 512, 2)), tint
            )
        # skirting board: a thin box along the wall
        centre = wall.point(wall.length / 2, 0.01)
        builder.add_box((*centre, 0.0), (wall.length - 2 * e, 0.02, 0.09), wall.yaw, "paint", 1.0, tint=(0.95,) * 3)
    return walls


def _door(builder: SceneBuilder, rng: np.random.Generator, space: _WallSpace) -> bool:
    """A wooden door in a white frame."""
    width = 0.9
    start = space.place(rng, width + 0.2, ("floor", "upper"), WALL_BAND + 0.1, 1.1)
    if start is None:
        return False
    wall = space.wall
    builder.add_rectangle(
        wall.rectangle(start, start + width + 0.2, 0.0, 2.15, 0.008), "paint", 1.0, tint=(0.92, 0.92, 0.9)
    )
    builder.add_rectangle(
        wall.rectangle(start + 0.1, start + 0.1 + width, 0.0, 2.05, 0.016), "door", tint=_WOOD_COLOUR * _wood_tint(rng)
    )
    return True


def _window(builder: SceneBuilder, rng: np.random.Generator, space: _WallSpace, height: float) -> bool:
    """A window showing the sky, its sill at about 1 m."""
    width = rng.uniform(1.0, 1.6)
    bottom = rng.uniform(0.95, 1.1)
    top = min(bottom + rng.uniform(1.1, 1.4), height - 0.25)
    start = space.place(rng, width, ("upper",), 0.3, (bottom + top) / 2)
    if start is None:
        return False
    builder.add_rectangle(
        space.wall.rectangle(start, start + width, bottom, top, 0.01), "window", tint=(1.15, 1.15, 1.15)
    )
    return True


def _picture(builder: SceneBuilder, rng: np.random.Generator, space: _WallSpace, photo: str) -> bool:
    """A framed photograph hung at eye height, its aspect ratio kept."""
    aspect = get_texture(photo).aspect
    picture_height = rng.uniform(0.4, 0.8)
    width = picture_height * aspect
    frame = 0.04
    bottom = rng.uniform(1.2, 1.45)
    start = space.place(rng, width + 2 * frame, ("upper",), 0.2, bottom + picture_height / 2)
    if start is None:
        return False
    wall = space.wall
    builder.add_rectangle(
        wall.rectangle(start, start + width + 2 * frame, bottom - frame, bottom + picture_height + frame, 0.01),
        "wood",
        0.8,
        tint=(0.35, 0.3, 0.28) if rng.random() < 0.5 else (1.2, 1.15, 1.1),
    )
    builder.add_rectangle(
        wall.rectangle(start + frame, start + frame + width, bottom, bottom + picture_height, 0.02),
        photo,
        tint=(1.05, 1.05, 1.05),
    )
    return True


def _against_wall(
    space: _WallSpace, rng: np.random.Generator, width: float, height: float, layers: tuple[str, ...] = ("floor",)
) -> tuple[float, _Wall] | None:
    """Place an item of ``width`` and ``height`` standing on the floor against a wall: (start
    along the wall, wall), or None when it does not fit."""
    start = space.place(rng, width, layers, WALL_BAND + 0.05, min(height * 0.6, 1.6))
    return None if start is None else (start, space.wall)


def _bookcase(builder: SceneBuilder, rng: np.random.Generator, space: _WallSpace, room_height: float) -> bool:
    """An open bookcase: two sides, top, back, shelves, and a row of books on each shelf."""
    width, depth = rng.uniform(0.7, 1.2), rng.uniform(0.3, WALL_BAND - 0.05)
    height = min(rng.uniform(1.6, 2.1), room_height - 0.3)
    placed = _against_wall(space, rng, width, height, ("floor", "upper"))
    if placed is None:
        return False
    start, wall = placed
    tint, board = _wood_tint(rng), 0.025
    yaw = wall.yaw

    def at(along: float, away: float) -> tuple[float, float]:
        return tuple(wall.point(start + along, away))

    builder.add_box((*at(width / 2, 0.01), 0.0), (width, 0.02, height), yaw, "wood", 0.8, tint, rng)  # back
    for side in (board / 2, width - board / 2):
        builder.add_box((*at(side, depth / 2), 0.0), (board, depth, height), yaw, "wood", 0.8, tint, rng)
    shelves = int(height // 0.38)
    for k in range(shelves + 1):
        z = k * height / (shelves + 0.3) if k < shelves else height - board
        builder.add_box(
            (*at(width / 2, depth / 2), z), (width - 2 * board, depth - 0.02, board), yaw, "wood", 0.8, tint, rng
        )
        if k < shelves:
            books_h = rng.uniform(0.2, 0.3)
            books_w = (width - 2 * board) * rng.uniform(0.6, 0.98)
            along = board + books_w / 2 + rng.uniform(0, width - 2 * board - books_w)
            builder.add_box(
                (*at(along, 0.04 + (depth - 0.06) / 2), z + board),
                (books_w, depth - 0.08, books_h),
                yaw,
                ["paint", "paint", "paint", "books", "paint"],
                (1.0, books_h * 1.02),
                (1.0, 1.0, 1.0),
                rng,
            )
    return True


def _cabinet(builder: SceneBuilder, rng: np.random.Generator, space: _WallSpace, room_height: float) -> bool:
    """A tall cupboard, painted or wooden."""
    width, depth = rng.uniform(0.6, 1.2), rng.uniform(0.4, WALL_BAND - 0.03)  # doors stand 13 mm out
    height = min(rng.uniform(1.5, 2.1), room_height - 0.2)
    placed = _against_wall(space, rng, width, height, ("floor", "upper"))
    if placed is None:
        return False
    start, wall = placed
    if rng.random() < 0.5:
        texture, tint = "wood", _wood_tint(rng)
        front_tint = _WOOD_COLOUR * tint
    else:
        texture, tint = "paint", _pastel(rng, 0.5) * rng.uniform(0.7, 1.0)
        front_tint = tint
    centre = wall.point(start + width / 2, depth / 2 + 0.01)
    builder.add_box((*centre, 0.0), (width, depth, height), wall.yaw, texture, 0.8, tint, rng)
    _door_leaves(builder, wall, start + 0.01, start + width - 0.01, 0.08, height - 0.05, depth + 0.013, front_tint)
    return True


def _sideboard(builder: SceneBuilder, rng: np.random.Generator, space: _WallSpace, room_height: float) -> bool:
    """A low cabinet with a flat screen on top showing a photograph."""
    width, depth, height = rng.uniform(1.2, 1.8), rng.uniform(0.4, 0.5), rng.uniform(0.55, 0.8)
    placed = _against_wall(space, rng, width, height + 0.5)
    if placed is None:
        return False
    start, wall = placed
    centre = wall.point(start + width / 2, depth / 2 + 0.01)
    tint = _wood_tint(rng)
    builder.add_box((*centre, 0.0), (width, depth, height), wall.yaw, "wood", 0.8, tint, rng)
    _door_leaves(
        builder, wall, start + 0.02, start + width - 0.02, 0.06, height - 0.04, depth + 0.013, _WOOD_COLOUR * tint * 0.9
    )
    screen_w = min(width - 0.2, rng.uniform(0.9, 1.2))
    screen_h = screen_w * 9 / 16
    screen_centre = wall.point(start + width / 2, 0.2)
    builder.add_box((*screen_centre, height), (0.3, 0.08, 0.04), wall.yaw, "metal", 0.5, (0.3, 0.3, 0.3))
    builder.add_box((*screen_centre, height + 0.04), (screen_w, 0.05, screen_h), wall.yaw, "rubber", 0.5)
    a = start + (width - screen_w) / 2 + 0.02
    photo = ["astronaut", "rocket", "hubble_deep_field", "coffee", "chelsea"][int(rng.integers(5))]
    builder.add_rectangle(
        wall.rectangle(a, a + screen_w - 0.04, height + 0.06, height + 0.02 + screen_h, 0.228),
        photo,
        tint=(0.95, 0.95, 1.0),
    )
    return True


def _boxes(builder: SceneBuilder, rng: np.random.Generator, space: _WallSpace, room_height: float) -> bool:
    """A stack of one to three cardboard boxes, each turned a little (within the wall band)."""
    width = rng.uniform(0.35, 0.5)
    placed = _against_wall(space, rng, width + 0.1, 0.6)
    if placed is None:
        return False
    start, wall = placed
    z = 0.0
    for _ in range(int(rng.integers(1, 4))):
        size = (width * rng.uniform(0.75, 1.0), width * rng.uniform(0.7, 1.0), rng.uniform(0.25, 0.4))
        centre = wall.point(start + 0.05 + width / 2, WALL_BAND / 2)
        builder.add_box(
            (*centre, z),
            size,
            wall.yaw + rng.uniform(-0.15, 0.15),
            "cardboard",
            0.6,
            rng.uniform(0.85, 1.1) * np.ones(3),
            rng,
        )
        z += size[2]
        width = size[0]
    return True


def _table_and_chairs(
    builder: SceneBuilder, rng: np.random.Generator, free_min: tuple[float, float], free_max: tuple[float, float]
) -> tuple[float, float, float]:
    """A table near the middle of the room with two chairs, all below LOW_FURNITURE_HEIGHT;
    returns the middle of the table top."""
    lo, hi = np.array(free_min), np.array(free_max)
    centre = lo + (hi - lo) * rng.uniform(0.3, 0.7, 2)
    yaw = rng.uniform(0, np.pi)
    length, width, top = rng.uniform(1.0, 1.6), rng.uniform(0.7, 0.9), rng.uniform(0.72, 0.76)
    tint = _wood_tint(rng)
    axis, side = np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])
    builder.add_box((*centre, top - 0.04), (length, width, 0.04), yaw, "wood", 0.8, tint, rng)
    for sx in (-1, 1):
        for sy in (-1, 1):
            leg = centre + sx * (length / 2 - 0.06) * axis + sy * (width / 2 - 0.06) * side
            builder.add_box((*leg, 0.0), (0.05, 0.05, top - 0.04), yaw, "wood", 0.8, tint * 0.8)
    chair_tint = _wood_tint(rng) if rng.random() < 0.5 else _pastel(rng, 0.6) * 0.8
    for sy in (-1, 1):
        seat = centre + sy * (width / 2 + 0.15) * side + rng.uniform(-0.3, 0.3) * axis
        chair_yaw = yaw + (np.pi if sy > 0 else 0.0)
        builder.add_box((*seat, 0.0), (0.42, 0.42, 0.45), chair_yaw, "paint", 0.8, chair_tint * 0.9, rng)
        back = seat + sy * 0.19 * side
        builder.add_box((*back, 0.45), (0.42, 0.04, 0.45), chair_yaw, "paint", 0.8, chair_tint, rng)
    return float(centre[0]), float(centre[1]), float(top)


def _rug(
    builder: SceneBuilder, rng: np.random.Generator, free_min: tuple[float, float], free_max: tuple[float, float]
) -> None:
    lo, hi = np.array(free_min), np.array(free_max)
    size = np.minimum((hi - lo) * rng.uniform(0.6, 0.9, 2), 3.0)
    a = lo + (hi - lo - size) * rng.uniform(0, 1, 2)
    b = a + size
    texture, scale = [("carpet", 1.0), ("ihc", None), ("checker", 0.8)][int(rng.integers(3))]
    builder.add_rectangle(
        [[a[0], b[1], 0.005], [b[0], b[1], 0.005], [b[0], a[1], 0.005], [a[0], a[1], 0.005]],
        texture,
        scale,
        tint=_pastel(rng, 0.6) * 0.9,
    )
