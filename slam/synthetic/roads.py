"""Streets: a curved two-lane road with markings and parking lanes, kerbs and sidewalks, building
facades on both sides, parked cars, street lamps, grass or gravel beyond, a sky, lit by the sun.

World frame: metres, z up, the ground is the plane z = 0; the road's centre line starts at the
origin heading along +x and is made of straights and circular arcs (:class:`RoadCurve`). Traffic
drives on the right: the right lane's centre is :data:`LANE_CENTRE` metres to the right of the
centre line. Surfaces: road at z = 0.02, sidewalks at z = 0.15, the open ground at z = 0.

The road is generated piece by piece from the seed: a longer road has the same beginning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slam.synthetic.scene import Lighting, Scene, SceneBuilder, Sky
from slam.synthetic.textures import (
    ROAD_HALF_WIDTH,
    ROAD_LANE_WIDTH,
    ROAD_PARKING_WIDTH,
    ROAD_TEXTURE_PERIOD,
    get_texture,
)

#: Lateral position of the right lane's centre, metres to the right of the centre line.
LANE_CENTRE = ROAD_LANE_WIDTH / 2
ROAD_HEIGHT = 0.02
SIDEWALK_HEIGHT = 0.15
#: Largest change of heading along one road section (radians): arcs are drawn as polygons.
_MAX_SECTION_TURN = np.radians(6.0)
_MAX_SECTION_LENGTH = 40.0
#: Road generated beyond the end of the camera path, so that the view ahead is never empty.
LOOKAHEAD = 100.0


@dataclass(frozen=True)
class RoadCurve:
    """A road's centre line on the ground plane: pieces of constant curvature (straights and
    circular arcs) parametrised by arc length s (metres). Piece k starts at arc length
    ``starts[k]`` at point ``origins[k]`` (x, y) with heading ``headings[k]`` (radians,
    counter-clockwise from +x) and turns at ``curvatures[k]`` (1/metres, positive = left)."""

    starts: np.ndarray
    lengths: np.ndarray
    curvatures: np.ndarray
    origins: np.ndarray
    headings: np.ndarray

    @property
    def length(self) -> float:
        return float(self.starts[-1] + self.lengths[-1])

    def piece_at(self, s: np.ndarray) -> np.ndarray:
        """Index of the piece holding arc length(s) ``s`` (clamped to the road)."""
        return np.clip(np.searchsorted(self.starts, s, side="right") - 1, 0, len(self.starts) - 1)

    def evaluate(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Points (..., 2) and headings (...) of the centre line at arc length(s) ``s``."""
        s = np.asarray(s, np.float64)
        k = self.piece_at(s)
        ds = s - self.starts[k]
        kappa, theta0 = self.curvatures[k], self.headings[k]
        turn = kappa * ds
        # chord of an arc: length ds * sinc(turn / 2), direction theta0 + turn / 2 (also for kappa = 0)
        chord = ds * np.sinc(turn / (2 * np.pi))
        direction = theta0 + turn / 2
        points = self.origins[k] + np.stack([chord * np.cos(direction), chord * np.sin(direction)], axis=-1)
        return points, theta0 + turn


@dataclass(frozen=True)
class RoadLayout:
    """What a camera path needs to know about a street (world frame, metres, z up)."""

    curve: RoadCurve
    #: arc length where the drivable road ends (a building closes the street beyond it)
    end: float


def _make_curve(rng: np.random.Generator, length: float) -> RoadCurve:
    """Straights and arcs, starting with a straight, until ``length`` metres; the heading stays
    within 85 degrees of +x (the road always advances along x, so it never crosses itself)."""
    starts, lengths, curvatures, origins, headings = [], [], [], [], []
    s, point, heading = 0.0, np.zeros(2), 0.0
    piece = 0
    while s < length:
        if piece % 2 == 0:
            piece_length, kappa = rng.uniform(40.0, 90.0) if piece == 0 else rng.uniform(15.0, 70.0), 0.0
        else:
            radius, turn = rng.uniform(45.0, 160.0), rng.uniform(np.radians(15), np.radians(75))
            sign = rng.choice([-1.0, 1.0]) if abs(heading) < np.radians(30) else -np.sign(heading)
            turn = min(turn, np.radians(85) - sign * heading)
            piece_length, kappa = radius * turn, sign / radius
        starts.append(s)
        lengths.append(piece_length)
        curvatures.append(kappa)
        origins.append(point.copy())
        headings.append(heading)
        curve = RoadCurve(*(np.array(v, np.float64) for v in (starts, lengths, curvatures, origins, headings)))
        end_point, end_heading = curve.evaluate(s + piece_length)
        point, heading, s = end_point, float(end_heading), s + piece_length
        piece += 1
    return curve


def _section_starts(curve: RoadCurve) -> np.ndarray:
    """Arc lengths of the road's cross-sections: each piece cut into straight-enough sections."""
    cuts = []
    for start, length, kappa in zip(curve.starts, curve.lengths, curve.curvatures):
        step = min(_MAX_SECTION_LENGTH, _MAX_SECTION_TURN / abs(kappa)) if kappa else _MAX_SECTION_LENGTH
        count = max(1, int(np.ceil(length / step)))
        cuts.append(start + np.arange(count) * length / count)
    return np.append(np.concatenate(cuts), curve.length)


def build_road(seed: int, length: float) -> tuple[Scene, RoadLayout]:
    """A street whose drivable part is at least ``length`` metres long (the same beginning for
    the same ``seed`` whatever the length)."""
    rng = np.random.default_rng([seed, 201])
    curve = _make_curve(rng, length + LOOKAHEAD)
    end = curve.length - 5.0
    builder = SceneBuilder(f"road-{seed}")
    look = np.random.default_rng([seed, 202])

    ground = ["grass", "gravel"][int(look.integers(2))]
    ground_tint = (0.75, 0.95, 0.5) if ground == "grass" else (0.95, 0.88, 0.78)
    _ground(builder, curve, ground, ground_tint)
    sections = _section_starts(curve)
    sidewalk_width = look.uniform(2.5, 3.5)
    _street_surface(
        builder,
        curve,
        sections[sections <= end + 1e-9],
        sidewalk_width,
        kerb_tint=look.uniform(0.85, 1.05) * np.ones(3),
    )
    for side in (-1.0, 1.0):
        _buildings(builder, np.random.default_rng([seed, 203, int(side > 0)]), curve, end, side, sidewalk_width)
        _parked_cars(builder, np.random.default_rng([seed, 204, int(side > 0)]), curve, end, side)
        _street_lamps(builder, np.random.default_rng([seed, 205, int(side > 0)]), curve, end, side)
    _closing_building(builder, curve, end, look)

    elevation, azimuth = look.uniform(np.radians(25), np.radians(60)), look.uniform(0, 2 * np.pi)
    sun = (np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation))
    overcast = look.random() < 0.3
    lighting = Lighting(
        ambient=look.uniform(0.6, 0.75) if overcast else look.uniform(0.4, 0.55),
        diffuse=look.uniform(0.2, 0.35) if overcast else look.uniform(0.6, 0.8),
        sun=sun,
        exposure=look.uniform(0.9, 1.1),
        colour_cast=tuple(look.uniform(0.94, 1.06, 3)),
    )
    sky = (
        Sky(zenith=(0.62, 0.66, 0.72), horizon=(0.86, 0.87, 0.88))
        if overcast
        else Sky(
            zenith=tuple(np.array([0.25, 0.45, 0.85]) + look.uniform(-0.05, 0.05, 3)),
            horizon=tuple(np.array([0.78, 0.85, 0.92]) + look.uniform(-0.04, 0.04, 3)),
        )
    )
    return builder.build(lighting, sky), RoadLayout(curve, end)


def _frame(curve: RoadCurve, s: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point (x, y), forward unit vector and right unit vector of the centre line at ``s``."""
    point, heading = curve.evaluate(s)
    forward = np.stack([np.cos(heading), np.sin(heading)], axis=-1)
    right = np.stack([np.sin(heading), -np.cos(heading)], axis=-1)
    return point, forward, right


def _ground(builder: SceneBuilder, curve: RoadCurve, texture: str, tint: tuple[float, float, float]) -> None:
    """One large quad at z = 0 under the whole street, reaching 400 m around it."""
    points, _ = curve.evaluate(np.linspace(0, curve.length, 200))
    lo, hi = points.min(axis=0) - 400.0, points.max(axis=0) + 400.0
    builder.add_rectangle(
        [[lo[0], hi[1], 0], [hi[0], hi[1], 0], [hi[0], lo[1], 0], [lo[0], lo[1], 0]], texture, 4.0, tint=tint
    )


def _street_surface(
    builder: SceneBuilder, curve: RoadCurve, sections: np.ndarray, sidewalk_width: float, kerb_tint: np.ndarray
) -> None:
    """Road, kerbs and sidewalks, one trapezoid each per section, textures continuous along s."""
    road = get_texture("road")
    paving = get_texture("paving")
    road_rows_per_metre = road.height / ROAD_TEXTURE_PERIOD
    paving_per_metre = paving.width / 3.0  # a 2 x 2 slab texture covers 3 x 3 metres
    hw, outer = ROAD_HALF_WIDTH, ROAD_HALF_WIDTH + sidewalk_width
    points, _, rights = _frame(curve, sections)
    for k in range(len(sections) - 1):
        (ca, cb), (ra, rb) = points[k : k + 2], rights[k : k + 2]

        def at(c: np.ndarray, r: np.ndarray, lateral: float, z: float) -> list[float]:
            return [*(c + lateral * r), z]

        # texture rows along the road, reduced by whole periods to keep the numbers small
        ya = (sections[k] * road_rows_per_metre) % road.height - 0.5
        yb = ya + (sections[k + 1] - sections[k]) * road_rows_per_metre
        builder.add_quad(
            [
                at(ca, ra, hw, ROAD_HEIGHT),
                at(ca, ra, -hw, ROAD_HEIGHT),
                at(cb, rb, -hw, ROAD_HEIGHT),
                at(cb, rb, hw, ROAD_HEIGHT),
            ],
            "road",
            [[-0.5, ya], [road.width - 0.5, ya], [road.width - 0.5, yb], [-0.5, yb]],
        )
        pa = (sections[k] * paving_per_metre) % paving.height
        pb = pa + (sections[k + 1] - sections[k]) * paving_per_metre
        across = sidewalk_width * paving_per_metre
        builder.add_quad(
            [
                at(ca, ra, outer, SIDEWALK_HEIGHT),
                at(ca, ra, hw, SIDEWALK_HEIGHT),
                at(cb, rb, hw, SIDEWALK_HEIGHT),
                at(cb, rb, outer, SIDEWALK_HEIGHT),
            ],
            "paving",
            [[0, pa], [across, pa], [across, pb], [0, pb]],
        )
        builder.add_quad(
            [
                at(ca, ra, -hw, SIDEWALK_HEIGHT),
                at(ca, ra, -outer, SIDEWALK_HEIGHT),
                at(cb, rb, -outer, SIDEWALK_HEIGHT),
                at(cb, rb, -hw, SIDEWALK_HEIGHT),
            ],
            "paving",
            [[0, pa], [across, pa], [across, pb], [0, pb]],
        )
        kerb = 0.13 * paving_per_metre
        builder.add_quad(
            [
                at(cb, rb, hw, SIDEWALK_HEIGHT),
                at(ca, ra, hw, SIDEWALK_HEIGHT),
                at(ca, ra, hw, ROAD_HEIGHT),
                at(cb, rb, hw, ROAD_HEIGHT),
            ],
            "concrete",
            [[pb, 0], [pa, 0], [pa, kerb], [pb, kerb]],
            kerb_tint,
        )
        builder.add_quad(
            [
                at(ca, ra, -hw, SIDEWALK_HEIGHT),
                at(cb, rb, -hw, SIDEWALK_HEIGHT),
                at(cb, rb, -hw, ROAD_HEIGHT),
                at(ca, ra, -hw, ROAD_HEIGHT),
            ],
            "concrete",
            [[pa, 0], [pb, 0], [pb, kerb], [pa, kerb]],
            kerb_tint,
        )


def _buildings(
    builder: SceneBuilder, rng: np.random.Generator, curve: RoadCurve, end: float, side: float, sidewalk_width: float
) -> None:
    """A row of buildings along one side (``side`` +1: right of the road, -1: left), each a box
    with facades, set back so that it clears the sidewalk even where the road bends toward it."""
    s = rng.uniform(-10.0, 5.0)
    while s < end:
        frontage = rng.uniform(10.0, 28.0)
        centre_s = s + frontage / 2
        gap = rng.uniform(0.0, 8.0) if rng.random() < 0.6 else 0.0
        if centre_s - frontage / 2 > end:
            break
        point, forward, right = _frame(curve, float(np.clip(centre_s, 0, curve.length)))
        kappa = curve.curvatures[curve.piece_at(np.clip(centre_s, 0, curve.length))]
        bends_toward = kappa * -side > 0  # a left turn (kappa > 0) bends toward the left side
        bend = (frontage / 2) ** 2 * abs(kappa) / 2 if bends_toward else 0.0
        setback = ROAD_HALF_WIDTH + sidewalk_width + rng.uniform(0.3, 4.0) + bend
        depth = rng.uniform(8.0, 14.0)
        floors = int(rng.integers(2, 7))
        centre = point + side * right * (setback + depth / 2)
        facade = "facade_brick" if rng.random() < 0.4 else "facade_plaster"
        hue = rng.dirichlet(np.ones(3))
        tint = (1.0 - 0.25 * (1.0 - hue / hue.max())) * rng.uniform(0.75, 1.05)
        # texture origin at each facade's top-left corner: storeys line up with the roof
        builder.add_box(
            (*centre, 0.0),
            (frontage, depth, floors * 3.0),
            float(np.arctan2(forward[1], forward[0])),
            [facade] * 4 + ["concrete"],
            3.0,
            tint,
        )
        s += frontage + gap


_CAR_COLOURS = np.array(
    [
        [0.95, 0.95, 0.95],
        [0.75, 0.76, 0.78],
        [0.15, 0.15, 0.17],
        [0.8, 0.1, 0.08],
        [0.12, 0.25, 0.6],
        [0.15, 0.35, 0.2],
        [0.9, 0.75, 0.2],
        [0.45, 0.42, 0.4],
    ]
)


def _parked_cars(builder: SceneBuilder, rng: np.random.Generator, curve: RoadCurve, end: float, side: float) -> None:
    """Cars in the parking lane of one side (``side`` +1 right, -1 left), parked with the traffic
    of that side: body, cabin and wheels, each a box."""
    lateral = ROAD_HALF_WIDTH - ROAD_PARKING_WIDTH / 2
    for slot in np.arange(8.0, end - 5.0, 6.5):
        if rng.random() > 0.35:
            continue
        s = slot + rng.uniform(-0.5, 0.5)
        point, forward, right = _frame(curve, s)
        heading = float(np.arctan2(forward[1], forward[0])) + (0.0 if side > 0 else np.pi)
        base = point + side * right * (lateral + rng.uniform(-0.15, 0.1))
        direction = forward * (1 if side > 0 else -1)
        colour = _CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))] * rng.uniform(0.9, 1.05)
        length = rng.uniform(3.9, 4.6)
        builder.add_box((*base, 0.32), (length, 1.78, 0.72), heading, "car_paint", (length * 2 + 3.56, 0.72), colour)
        cabin = base - direction * rng.uniform(0.0, 0.35)
        builder.add_box(
            (*cabin, 1.04),
            (length * 0.5, 1.5, rng.uniform(0.42, 0.52)),
            heading,
            ["glass"] * 4 + ["car_paint"],
            None,
            colour * 0.3 + 0.7,
        )
        builder.add_box(
            (*base, 0.0), (length - 0.3, 1.7, 0.34), heading, ["rubber", "rubber", "wheels", "wheels", "rubber"], None
        )


def _street_lamps(builder: SceneBuilder, rng: np.random.Generator, curve: RoadCurve, end: float, side: float) -> None:
    """Poles on one sidewalk every 30-45 m, each with an arm holding a lamp over the road."""
    s = rng.uniform(5.0, 30.0)
    while s < end:
        point, forward, right = _frame(curve, s)
        heading = float(np.arctan2(forward[1], forward[0]))
        foot = point + side * right * (ROAD_HALF_WIDTH + 0.45)
        builder.add_box((*foot, SIDEWALK_HEIGHT), (0.14, 0.14, 6.5), heading, "metal", 0.5, (0.55, 0.58, 0.6))
        arm = foot - side * right * 0.8
        builder.add_box((*arm, 6.3), (0.3, 1.7, 0.2), heading, "metal", 0.5, (0.8, 0.8, 0.78), skip_bottom=False)
        s += rng.uniform(30.0, 45.0)


def _closing_building(builder: SceneBuilder, curve: RoadCurve, end: float, rng: np.random.Generator) -> None:
    """A wide building across the road just past its end, closing the street."""
    point, forward, _ = _frame(curve, end)
    centre = point + forward * 11.0
    builder.add_box(
        (*centre, 0.0),
        (12.0, 70.0, 21.0),
        float(np.arctan2(forward[1], forward[0])),
        ["facade_plaster"] * 4 + ["concrete"],
        3.0,
        (0.9, 0.85, 0.75),
        rng,
    )
