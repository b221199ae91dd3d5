"""Camera paths through synthetic scenes, as smooth functions of time (seconds) that give
camera-to-world poses (4 x 4 float64, OpenCV camera frame: x right, y down, z forward; world
frame of the scene: z up).

- :class:`HandheldPath`: TUM-like, a person walking through a room holding a camera: 0.3-1 m/s,
  turning by up to a few tens of degrees per second toward things across the room, with a
  small shake; always inside the room's free rectangle (:class:`~.rooms.RoomLayout`).
- :class:`LoopPath`: a hand-held camera walking laps of a closed path through a room, an ellipse
  ("loop") or a figure-eight ("figure8"), at 0.5 m/s, looking to its right: each lap comes back
  to the places the one before saw (loop closure's test).
- :class:`DrivingPath`: KITTI-like, a car in the right lane of a street at 5-10 m/s, the camera
  1.6 m above the ground looking forward, with small bounces and wobbles.

Smooth parts are uniform cubic B-splines of random control points; since a B-spline stays in
the convex hull of its control points, positions drawn inside a rectangle never leave it, and
speeds drawn within a range stay within it.
"""

from __future__ import annotations

import numpy as np

from slam.synthetic.roads import LANE_CENTRE, RoadCurve
from slam.synthetic.rooms import RoomLayout

#: Camera height above the ground plane for driving (metres).
DRIVING_CAMERA_HEIGHT = 1.6


def bspline(control: np.ndarray, knot_interval: float, t: np.ndarray) -> np.ndarray:
    """Uniform cubic B-spline with control points ``control`` (K, D) spaced ``knot_interval``
    seconds apart, at times ``t`` (N,) in [0, (K - 3) * knot_interval] (clamped): shape (N, D)."""
    control = np.asarray(control, np.float64)
    x = np.clip(np.asarray(t, np.float64) / knot_interval, 0.0, len(control) - 3.0)
    segment = np.minimum(np.floor(x).astype(int), len(control) - 4)
    u = (x - segment)[:, None]
    basis = [(1 - u) ** 3 / 6, (3 * u**3 - 6 * u**2 + 4) / 6, (-3 * u**3 + 3 * u**2 + 3 * u + 1) / 6, u**3 / 6]
    return sum(b * control[segment + i] for i, b in enumerate(basis))


def look_rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Camera-to-world rotations (N, 3, 3) of OpenCV cameras (x right, y down, z forward) in a
    z-up world: looking toward azimuth ``yaw`` (radians, counter-clockwise from +x), tilted up
    by ``pitch`` and turned clockwise about the optical axis by ``roll``."""
    yaw, pitch, roll = (np.asarray(a, np.float64) for a in (yaw, pitch, roll))
    forward = np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], axis=-1)
    right0 = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], axis=-1)
    down0 = np.cross(forward, right0)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    right = c * right0 + s * down0
    down = -s * right0 + c * down0
    return np.stack([right, down, forward], axis=-1)


def _poses(rotations: np.ndarray, positions: np.ndarray) -> np.ndarray:
    poses = np.tile(np.eye(4), (len(positions), 1, 1))
    poses[:, :3, :3] = rotations
    poses[:, :3, 3] = positions
    return poses


def _shake(rng: np.random.Generator, count: int, amplitude: float, frequencies: tuple[float, float]):
    """A function of time (N,) -> (N, count): sums of three sinusoids per output with random
    frequencies in ``frequencies`` (Hz) and phases, peak amplitude about ``amplitude``."""
    freq = rng.uniform(*frequencies, (3, count))
    phase = rng.uniform(0, 2 * np.pi, (3, count))
    amp = rng.uniform(0.5, 1.0, (3, count)) * amplitude / 3

    def evaluate(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, np.float64)[:, None, None]
        return (amp * np.sin(2 * np.pi * freq * t + phase)).sum(axis=1)

    return evaluate


class HandheldPath:
    """A hand-held camera walking through a room (see the module docstring)."""

    knot_interval = 1.5

    def __init__(self, layout: RoomLayout, duration: float, seed: int):
        # separate random streams for positions, view directions and shake, each drawn in time
        # order: a longer path has the same beginning
        rng = np.random.default_rng([seed, 301])
        count = int(np.ceil(duration / self.knot_interval)) + 4
        lo, hi = np.array(layout.free_min), np.array(layout.free_max)
        z_lo, z_hi = layout.camera_heights
        positions = [np.array([*rng.uniform(lo, hi), rng.uniform(z_lo, z_hi)])]
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(count - 1):
            for _attempt in range(20):
                candidate_heading = heading + rng.normal(0, np.radians(60))
                step = rng.uniform(0.35, 1.0) * self.knot_interval  # metres per knot at 0.35-1 m/s
                candidate = positions[-1][:2] + step * np.array([np.cos(candidate_heading), np.sin(candidate_heading)])
                if np.all(candidate >= lo) and np.all(candidate <= hi):
                    break
            heading = candidate_heading
            z = np.clip(positions[-1][2] + rng.normal(0, 0.12), z_lo, z_hi)
            positions.append(np.array([*np.clip(candidate, lo, hi), z]))
        self.control_positions = np.array(positions)

        # view direction: toward the room's landmarks (furniture, pictures, windows, the door,
        # the table), the farthest of three drawn at random, turning at most 65 degrees from one
        # control point to the next
        landmarks = np.array(layout.landmarks, np.float64)
        rng = np.random.default_rng([seed, 302])
        angles: list[tuple[float, float, float]] = []
        for position in self.control_positions:
            targets = landmarks[rng.integers(len(landmarks), size=3)] + rng.normal(0, 0.15, (3, 3))
            target = targets[np.argmax(np.linalg.norm(targets[:, :2] - position[:2], axis=1))]
            offset = target - position
            yaw = np.arctan2(offset[1], offset[0])
            pitch = np.clip(np.arctan2(offset[2], np.hypot(offset[0], offset[1])), np.radians(-35), np.radians(10))
            if angles:
                previous = angles[-1][0]
                turn = (yaw - previous + np.pi) % (2 * np.pi) - np.pi
                yaw = previous + np.clip(turn, -np.radians(65), np.radians(65))
            angles.append((yaw, pitch, rng.normal(0, np.radians(3))))
        self.control_angles = np.array(angles)
        rng = np.random.default_rng([seed, 303])
        self._rotation_shake = _shake(rng, 3, np.radians(0.6), (1.0, 6.0))
        self._position_shake = _shake(rng, 3, 0.004, (1.0, 5.0))

    def poses(self, t: np.ndarray) -> np.ndarray:
        """Camera-to-world poses (N, 4, 4) at times ``t`` (N,) seconds."""
        t = np.asarray(t, np.float64)
        position = bspline(self.control_positions, self.knot_interval, t) + self._position_shake(t)
        yaw, pitch, roll = (bspline(self.control_angles, self.knot_interval, t) + self._rotation_shake(t)).T
        return _poses(look_rotation(yaw, pitch, roll), position)


class LoopPath:
    """Laps of a closed path through a room (see the module docstring): an ellipse or a
    figure-eight (Gerono's lemniscate) filling 80% of the free rectangle, walked at a constant
    :attr:`speed` from a point drawn from the seed, the camera at a constant height, looking
    :attr:`look_aside` to the right of the walking direction and 10 degrees down, with a small
    shake."""

    speed = 0.5  # m/s
    look_aside = np.radians(75)
    shapes = ("loop", "figure8")

    def __init__(self, layout: RoomLayout, seed: int, shape: str = "loop"):
        if shape not in self.shapes:
            raise ValueError(f"unknown closed path {shape!r}: use one of {', '.join(self.shapes)}")
        rng = np.random.default_rng([seed, 321])
        lo, hi = np.array(layout.free_min), np.array(layout.free_max)
        self.centre, self.radii = (lo + hi) / 2, 0.8 * (hi - lo) / 2
        self.shape = shape
        self.height = float(np.mean(layout.camera_heights))
        # arc length along one lap, to walk it at a constant speed
        angles = np.linspace(0.0, 2 * np.pi, 4097)
        steps = np.linalg.norm(np.diff(self._point(angles), axis=0), axis=1)
        self._angles, self._arc = angles, np.concatenate([[0.0], np.cumsum(steps)])
        self._start = rng.uniform(0, self._arc[-1])
        self._rotation_shake = _shake(rng, 3, np.radians(0.6), (1.0, 6.0))
        self._position_shake = _shake(rng, 3, 0.004, (1.0, 5.0))

    @property
    def lap_length(self) -> float:
        """Metres walked in one lap."""
        return float(self._arc[-1])

    @property
    def lap_seconds(self) -> float:
        """Seconds one lap takes."""
        return self.lap_length / self.speed

    def _point(self, angle: np.ndarray) -> np.ndarray:
        """(N, 2) positions on the path at parameters ``angle`` (N,) radians."""
        x = self.radii[0] * np.sin(angle)
        y = self.radii[1] * (np.cos(angle) if self.shape == "loop" else np.sin(angle) * np.cos(angle))
        return self.centre + np.stack([x, y], axis=-1)

    def poses(self, t: np.ndarray) -> np.ndarray:
        """Camera-to-world poses (N, 4, 4) at times ``t`` (N,) seconds."""
        t = np.asarray(t, np.float64)
        laps, along = np.divmod(self._start + self.speed * t, self.lap_length)
        angle = np.interp(along, self._arc, self._angles) + 2 * np.pi * laps
        ahead = self._point(angle + 1e-3) - self._point(angle - 1e-3)
        heading = np.unwrap(np.arctan2(ahead[:, 1], ahead[:, 0]))
        shake = self._rotation_shake(t)
        rotation = look_rotation(heading - self.look_aside + shake[:, 0], np.radians(-10) + shake[:, 1], shake[:, 2])
        position = np.concatenate([self._point(angle), np.full((len(t), 1), self.height)], axis=1)
        return _poses(rotation, position + self._position_shake(t))


class DrivingPath:
    """A car driving along a road's right lane (see the module docstring). Its distance along the
    road, ``s(t)``, is known before the road is built: :attr:`distance` says how long a road the
    path needs."""

    knot_interval = 2.0

    def __init__(self, duration: float, seed: int, start: float = 12.0):
        rng = np.random.default_rng([seed, 311])  # speeds, drawn in time order (see HandheldPath)
        count = int(np.ceil(duration / self.knot_interval)) + 4
        speeds = np.empty(count)
        speeds[0] = rng.uniform(5.5, 9.5)
        for k in range(1, count):
            speeds[k] = np.clip(speeds[k - 1] + rng.normal(0, 1.2), 5.0, 10.0)
        # s control points whose differences are speed * interval: s'(t) stays within [5, 10] m/s
        control = start + np.concatenate([[0.0], np.cumsum(speeds[1:] * self.knot_interval)])
        self.control_distance = (control - control[1] + start)[:, None]
        self.duration = float(duration)
        rng = np.random.default_rng([seed, 312])
        self._lateral = _shake(rng, 1, 0.15, (0.05, 0.2))
        self._bounce = _shake(rng, 1, 0.015, (1.0, 3.0))
        self._rotation_shake = _shake(rng, 3, np.radians(0.5), (0.3, 2.0))
        self._pitch = np.radians(rng.uniform(-2.0, 0.5))

    def distance_at(self, t: np.ndarray) -> np.ndarray:
        """Distance along the road's centre line (metres) at times ``t`` (N,) seconds."""
        return bspline(self.control_distance, self.knot_interval, t)[:, 0]

    @property
    def distance(self) -> float:
        """Distance along the road reached at the end of the path (metres)."""
        return float(self.distance_at(np.array([self.duration]))[0])

    def poses(self, t: np.ndarray, curve: RoadCurve) -> np.ndarray:
        """Camera-to-world poses (N, 4, 4) at times ``t`` (N,) seconds on the road ``curve``."""
        t = np.asarray(t, np.float64)
        point, heading = curve.evaluate(self.distance_at(t))
        right = np.stack([np.sin(heading), -np.cos(heading)], axis=-1)
        lateral = LANE_CENTRE + self._lateral(t)
        position = np.concatenate([point + lateral * right, DRIVING_CAMERA_HEIGHT + self._bounce(t)], axis=1)
        shake = self._rotation_shake(t)
        rotation = look_rotation(heading + shake[:, 0], self._pitch + shake[:, 1], shake[:, 2])
        return _poses(rotation, position)
