"""Textures of the synthetic scenes: real photographs shipped with scikit-image and procedural
patterns (noise, wood planks, tiles, bricks, checker, facades, road asphalt with markings ...).

Every texture is an RGB uint8 image with a mipmap pyramid, made once per process (cached by
name) and identical on every run: procedural textures draw from fixed seeds, photographs are
read from the files in scikit-image's installed ``skimage/data`` folder (no network).

Texture pixel convention: texel (0, 0) is the centre of the top-left texel, as for images.
Scenes give colour to a texture through a per-face tint and lighting (see :mod:`.scene`), so grey
patterns serve many materials. ``wrap`` textures tile seamlessly and are sampled with wrap-around.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from slam.errors import SourceError

#: Photographs of scikit-image's data folder usable as textures (file name per texture name).
PHOTOS = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "horse": "horse.png",
    "moon": "moon.png",
    "page": "page.png",
    "text": "text.png",
    "rocket": "rocket.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "retina": "retina.jpg",
    "motorcycle": "motorcycle_left.png",
    "color": "color.png",
    "ihc": "ihc.png",
    "clock": "clock_motion.png",
    "cell": "cell.png",
}
#: Photographs that are surface materials: made seamless and tiled (the others are pictures).
TILED_PHOTOS = ("brick", "grass", "gravel")
#: Photographs hung as pictures on room walls.
PICTURES = tuple(name for name in PHOTOS if name not in TILED_PHOTOS)

_MAX_PHOTO_SIDE = 512
_MIN_LEVEL_SIDE = 4


@dataclass(frozen=True)
class Texture:
    """An RGB uint8 texture and its mipmap pyramid (``levels[0]`` is full resolution, each next
    level half the size). ``wrap``: tiles seamlessly (sampled with wrap-around), otherwise
    sampled with edge replication."""

    name: str
    levels: tuple[np.ndarray, ...]
    wrap: bool

    @property
    def height(self) -> int:
        return int(self.levels[0].shape[0])

    @property
    def width(self) -> int:
        return int(self.levels[0].shape[1])

    @property
    def aspect(self) -> float:
        """Width over height."""
        return self.width / self.height


def get_texture(name: str) -> Texture:
    """The texture called ``name`` (a key of :data:`PHOTOS` or :data:`PROCEDURAL`), built once
    per process."""
    return _build_texture(name)


def texture_names() -> tuple[str, ...]:
    """Every texture name :func:`get_texture` accepts."""
    return tuple(PHOTOS) + tuple(PROCEDURAL)


@cache
def _build_texture(name: str) -> Texture:
    if name in PHOTOS:
        image = _read_photo(PHOTOS[name])
        wrap = name in TILED_PHOTOS
        if wrap:
            image = _make_seamless(image)
    elif name in PROCEDURAL:
        image = PROCEDURAL[name](np.random.default_rng(_name_seed(name)))
        wrap = True
    else:
        raise KeyError(f"unknown texture {name!r}; known: {', '.join(texture_names())}")
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return Texture(name, _mipmaps(image, wrap), wrap)


def _name_seed(name: str) -> int:
    """A fixed seed per texture name (Python's str hash is salted per process, so not that)."""
    return zlib.crc32(name.encode())


def skimage_data_dir() -> Path:
    """The ``skimage/data`` folder of the installed scikit-image package."""
    import skimage

    return Path(skimage.__file__).parent / "data"


def _read_photo(file_name: str) -> np.ndarray:
    """RGB uint8 of a photograph of scikit-image's data folder, at most 512 texels on a side.
    Read with Pillow (a dependency of scikit-image), which, unlike OpenCV's libpng, reads
    ``page.png`` without printing a warning about its colour profile."""
    from PIL import Image, UnidentifiedImageError

    path = skimage_data_dir() / file_name
    try:
        with Image.open(path) as picture:
            image = np.asarray(picture.convert("RGB"))
    except (OSError, UnidentifiedImageError):
        raise SourceError(
            f"synthetic scene texture {path} is missing or unreadable (is scikit-image installed?)"
        ) from None
    scale = _MAX_PHOTO_SIDE / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


def _make_seamless(image: np.ndarray) -> np.ndarray:
    """Blend an image with its half-period roll so that it tiles without seams: the roll, whose
    borders wrap continuously, shows at the borders and the original in the middle."""
    h, w = image.shape[:2]
    rolled = np.roll(image, (h // 2, w // 2), axis=(0, 1)).astype(np.float32)
    wy = 1.0 - np.abs(np.linspace(-1.0, 1.0, h, dtype=np.float32))
    wx = 1.0 - np.abs(np.linspace(-1.0, 1.0, w, dtype=np.float32))
    weight = np.clip(2.5 * np.minimum.outer(wy, wx), 0.0, 1.0)[..., None]
    return np.clip(weight * image + (1.0 - weight) * rolled + 0.5, 0, 255).astype(np.uint8)


def _mipmaps(image: np.ndarray, wrap: bool) -> tuple[np.ndarray, ...]:
    """The image and its successive halvings (Gaussian pyramid) down to a few texels."""
    levels = [image]
    while min(levels[-1].shape[:2]) >= 2 * _MIN_LEVEL_SIDE:
        current = levels[-1]
        if wrap:  # filter across the wrap-around so that smaller levels still tile
            pad = 4
            padded = np.pad(current, ((pad, pad), (pad, pad), (0, 0)), mode="wrap")
            down = cv2.pyrDown(padded)
            levels.append(np.ascontiguousarray(down[pad // 2 : -(pad // 2), pad // 2 : -(pad // 2)]))
        else:
            levels.append(cv2.pyrDown(current))
    return tuple(levels)


# ---------------------------------------------------------------------------------------------
# procedural patterns: functions of a seeded generator, returning RGB uint8 images whose sides are
# powers of two and which tile seamlessly (every pattern is periodic by construction)


def fractal_noise(
    shape: tuple[int, int],
    rng: np.random.Generator,
    beta: float = 2.0,
    stretch: tuple[float, float] = (1.0, 1.0),
    min_period: float = 2.0,
) -> np.ndarray:
    """Periodic 1/f^beta noise of ``shape`` (rows, cols), zero mean and unit standard deviation.
    ``stretch`` (rows, cols) elongates features along an axis (wood grain); frequencies with
    periods under ``min_period`` texels are removed."""
    rows, cols = shape
    spectrum = np.fft.rfft2(rng.standard_normal(shape))
    fy = np.fft.fftfreq(rows)[:, None] * stretch[0]
    fx = np.fft.rfftfreq(cols)[None, :] * stretch[1]
    freq = np.hypot(fy, fx)
    freq[0, 0] = np.inf
    amplitude = freq ** (-beta / 2.0)
    amplitude[freq > 1.0 / min_period] = 0.0
    noise = np.fft.irfft2(spectrum * amplitude, s=shape)
    return ((noise - noise.mean()) / (noise.std() + 1e-12)).astype(np.float32)


def _to_rgb(grey: np.ndarray, colour: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """A [0, 1] grey image times an RGB colour, as uint8."""
    rgb = np.clip(grey, 0.0, 1.0)[..., None] * np.asarray(colour, np.float32)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def _paint(rng: np.random.Generator) -> np.ndarray:
    """Stucco-like wall paint: light, with soft blotches and fine grain."""
    blotch = fractal_noise((256, 256), rng, beta=2.5)
    grain = fractal_noise((256, 256), rng, beta=0.5)
    return _to_rgb(0.86 + 0.03 * blotch + 0.03 * grain)


def _concrete(rng: np.random.Generator) -> np.ndarray:
    base = fractal_noise((512, 512), rng, beta=2.2)
    grain = fractal_noise((512, 512), rng, beta=0.3)
    pits = (fractal_noise((512, 512), rng, beta=0.0) > 2.6).astype(np.float32)
    return _to_rgb(0.62 + 0.08 * base + 0.05 * grain - 0.15 * pits)


def _carpet(rng: np.random.Generator) -> np.ndarray:
    fibre = fractal_noise((256, 256), rng, beta=0.2)
    patches = fractal_noise((256, 256), rng, beta=3.0)
    return _to_rgb(0.7 + 0.09 * fibre + 0.06 * patches)


def _wood(rng: np.random.Generator) -> np.ndarray:
    """Floor boards running along the columns: per-plank tone, long grain and dark joints."""
    size, planks = 512, 4
    grain = fractal_noise((size, size), rng, beta=2.0, stretch=(1.0, 0.08))
    rings = np.sin(6.0 * grain + fractal_noise((size, size), rng, beta=3.0, stretch=(1.0, 0.2)))
    plank_of_row = np.arange(size) * planks // size
    tone = rng.uniform(-0.08, 0.08, planks)[plank_of_row][:, None]
    grey = 0.62 + tone + 0.06 * rings + 0.04 * grain
    joints = np.zeros((size, size), np.float32)
    joints[(np.arange(size) % (size // planks)) < 3] = 1.0
    for p in range(planks):  # butt joints, one per plank at a random place along it
        rows = slice(p * size // planks, (p + 1) * size // planks)
        joints[rows, int(rng.integers(size)) + np.arange(3) - size] = 1.0
    grey = grey * (1.0 - 0.55 * joints)
    return _to_rgb(grey, (1.0, 0.72, 0.46))


def _tiles(rng: np.random.Generator) -> np.ndarray:
    """Square tiles with grout lines (4 x 4 tiles)."""
    size, count, grout = 512, 4, 6
    cell = size // count
    idx = np.arange(size) // cell
    tone = rng.uniform(-0.05, 0.05, (count, count))[idx[:, None], idx[None, :]]
    speckle = fractal_noise((size, size), rng, beta=1.0)
    grey = 0.8 + tone + 0.025 * speckle
    line = (np.arange(size) % cell) < grout
    grout_mask = line[:, None] | line[None, :]
    grey = np.where(grout_mask, 0.45 + 0.03 * speckle, grey)
    return _to_rgb(grey)


def _bricks(rng: np.random.Generator) -> np.ndarray:
    """Running-bond bricks: 8 courses of 4 bricks, mortar joints, per-brick colour variation."""
    size, courses, per_course, mortar = 512, 8, 4, 7
    rows = np.arange(size)
    course = rows // (size // courses)
    brick_w = size // per_course
    shift = (course % 2) * (brick_w // 2)
    cols = (np.arange(size)[None, :] + shift[:, None]) % size
    brick_id = course[:, None] * per_course + cols // brick_w
    tone = rng.uniform(-0.12, 0.12, courses * per_course)[brick_id]
    rough = fractal_noise((size, size), rng, beta=1.2)
    grey = 0.62 + tone + 0.05 * rough
    mortar_mask = ((rows % (size // courses)) < mortar)[:, None] | ((cols % brick_w) < mortar)
    rgb = np.where(
        mortar_mask[..., None],
        np.array([0.78, 0.76, 0.72], np.float32) * (1 + 0.05 * rough[..., None]),
        grey[..., None] * np.array([1.0, 0.55, 0.42], np.float32),
    )
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def _checker(rng: np.random.Generator) -> np.ndarray:
    size, count = 256, 4
    idx = np.arange(size) // (size // count)
    board = ((idx[:, None] + idx[None, :]) % 2).astype(np.float32)
    grey = 0.2 + 0.65 * board + 0.03 * fractal_noise((size, size), rng, beta=1.0)
    return _to_rgb(grey)


def _wallpaper(rng: np.random.Generator) -> np.ndarray:
    """Vertical stripes with a small repeating diamond motif."""
    size = 256
    x = np.arange(size)[None, :]
    y = np.arange(size)[:, None]
    stripes = ((x // 32) % 2).astype(np.float32)
    motif = (np.abs((x % 32) - 16) + np.abs((y % 32) - 16) < 6).astype(np.float32)
    grey = 0.78 + 0.07 * stripes - 0.18 * motif * (1 - stripes) + 0.02 * fractal_noise((size, size), rng, 1.0)
    return _to_rgb(np.broadcast_to(grey, (size, size)))


def _books(rng: np.random.Generator) -> np.ndarray:
    """Book spines side by side: colourful vertical bands of varying width and height."""
    height, width = 128, 512
    image = np.zeros((height, width, 3), np.float32)
    x = 0
    while x < width:
        w = int(rng.integers(8, 26))
        top = int(rng.integers(0, 40))
        colour = rng.uniform(0.15, 0.9, 3)
        image[top:, x : x + w] = colour
        image[top:, x : x + 1] *= 0.5
        label = int(rng.integers(top + 10, height - 20))
        image[label : label + 6, x + 2 : x + w - 2] = 0.9
        x += w
    image *= (1 + 0.05 * fractal_noise((height, width), rng, 1.0))[..., None]
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _cardboard(rng: np.random.Generator) -> np.ndarray:
    size = 256
    fibre = fractal_noise((size, size), rng, beta=1.0, stretch=(0.3, 1.0))
    grey = 0.75 + 0.05 * fibre
    grey[size // 2 - 18 : size // 2 + 18, :] += 0.12  # packing tape
    return _to_rgb(grey, (0.85, 0.64, 0.42))


def _metal(rng: np.random.Generator) -> np.ndarray:
    size = 128
    brushed = fractal_noise((size, size), rng, beta=1.0, stretch=(0.05, 1.0))
    return _to_rgb(0.6 + 0.05 * brushed)


def _window(rng: np.random.Generator) -> np.ndarray:
    """A room window: frame, four panes showing a bright sky gradient with clouds."""
    height, width = 256, 256
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    sky = (1 - y) * np.array([0.55, 0.7, 0.95], np.float32) + y * np.array([0.85, 0.9, 0.95], np.float32)
    clouds = np.clip(fractal_noise((height, width), rng, beta=3.0), 0, None)[..., None]
    panes = np.clip(sky + 0.12 * clouds, 0, 1)
    frame = np.zeros((height, width), bool)
    frame[:14], frame[-14:], frame[:, :14], frame[:, -14:] = True, True, True, True
    frame[height // 2 - 6 : height // 2 + 6] = True
    frame[:, width // 2 - 6 : width // 2 + 6] = True
    image = np.where(frame[..., None], np.array([0.92, 0.92, 0.9], np.float32), panes)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _door(rng: np.random.Generator) -> np.ndarray:
    """A panelled door or cupboard door, grey with a faint grain, coloured by the face's tint
    (texture covers the whole door, width:height = 1:2)."""
    height, width = 512, 256
    grain = fractal_noise((height, width), rng, beta=2.0, stretch=(0.08, 1.0))
    grey = 0.6 + 0.05 * grain
    for top, bottom in ((40, 220), (280, 470)):  # recessed panels: darker outline, lighter inside
        grey[top:bottom, 40:216] -= 0.12
        grey[top + 6 : bottom - 6, 46:210] += 0.1
    grey[250:262, 200:236] = 0.9  # handle
    grey[248:250, 200:236] = 0.4
    return _to_rgb(grey)


def _facade(rng: np.random.Generator, brick: bool) -> np.ndarray:
    """One bay (3 m wide) by one storey (3 m high) of a building facade: wall, a framed window
    with sill and a dark glass pane with a sky reflection. 256 x 256 texels."""
    size = 256
    if brick:  # 16 courses per storey
        small = cv2.resize(_bricks(rng), (size // 2, size // 2), interpolation=cv2.INTER_AREA)
        wall = np.tile(small, (2, 2, 1)).astype(np.float32) / 255.0 * 1.1
    else:
        wall = np.repeat((0.8 + 0.04 * fractal_noise((size, size), rng, 2.0))[..., None], 3, axis=2)
    y0, y1, x0, x1 = 60, 200, 64, 192
    reflection = np.linspace(0.45, 0.15, y1 - y0, dtype=np.float32)[:, None, None]
    glass = (
        reflection * np.array([0.7, 0.8, 1.0], np.float32)
        + 0.05 * fractal_noise((y1 - y0, x1 - x0), rng, 3.0)[..., None]
    )
    image = wall.copy()
    image[y0 - 8 : y1 + 8, x0 - 8 : x1 + 8] = 0.9  # frame
    image[y0:y1, x0:x1] = glass
    image[y0:y1, (x0 + x1) // 2 - 3 : (x0 + x1) // 2 + 3] = 0.9  # mullion
    image[y1 + 8 : y1 + 18, x0 - 16 : x1 + 16] = 0.7  # sill
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _asphalt(rng: np.random.Generator) -> np.ndarray:
    """Asphalt without markings (ground patches, parking areas)."""
    size = 512
    grain = fractal_noise((size, size), rng, beta=0.4)
    patches = fractal_noise((size, size), rng, beta=3.0)
    return _to_rgb(0.36 + 0.04 * grain + 0.05 * patches)


#: Road cross-section painted by :func:`_road` (metres; the scene builder uses the same numbers).
ROAD_LANE_WIDTH = 3.25
ROAD_PARKING_WIDTH = 2.2
ROAD_HALF_WIDTH = ROAD_LANE_WIDTH + ROAD_PARKING_WIDTH
#: Metres of road along its length that one period of the road texture covers.
ROAD_TEXTURE_PERIOD = 12.0


def _road(rng: np.random.Generator) -> np.ndarray:
    """A two-lane street with parking lanes, ROAD_TEXTURE_PERIOD metres long: columns go across
    the road (left kerb to right kerb), rows along it. Dashed centre line, solid lines between
    the driving and parking lanes, parking bay ticks, tyre wear, asphalt grain."""
    height, width = 1024, 512
    across = (np.arange(width) + 0.5) / width * 2 * ROAD_HALF_WIDTH - ROAD_HALF_WIDTH  # metres from centre
    along = (np.arange(height) + 0.5) / height * ROAD_TEXTURE_PERIOD
    grain = fractal_noise((height, width), rng, beta=0.4)
    patches = fractal_noise((height, width), rng, beta=3.0, stretch=(0.3, 1.0))
    grey = 0.34 + 0.035 * grain + 0.04 * patches
    for wheel in (0.8, 2.45):  # darker tyre tracks in both lanes
        grey -= 0.03 * np.exp(-(((np.abs(across) - wheel) / 0.35) ** 2))[None, :]
    paint = np.zeros((height, width), bool)
    dash = (along % ROAD_TEXTURE_PERIOD) < 4.0
    paint |= dash[:, None] & (np.abs(across) < 0.08)[None, :]
    paint |= (np.abs(np.abs(across) - ROAD_LANE_WIDTH) < 0.07)[None, :]
    ticks = (along % 6.0) < 0.12
    in_parking_lane = (np.abs(across) > ROAD_LANE_WIDTH) & (np.abs(across) < ROAD_LANE_WIDTH + 0.6)
    paint |= ticks[:, None] & in_parking_lane[None, :]
    wear = 0.82 + 0.1 * np.clip(fractal_noise((height, width), rng, beta=1.5), -1, 1)
    grey = np.where(paint, wear, grey)
    return _to_rgb(grey)


def _paving(rng: np.random.Generator) -> np.ndarray:
    """Sidewalk slabs: 2 x 2 concrete slabs with joints."""
    size, count = 256, 2
    cell = size // count
    idx = np.arange(size) // cell
    tone = rng.uniform(-0.05, 0.05, (count, count))[idx[:, None], idx[None, :]]
    grey = 0.66 + tone + 0.04 * fractal_noise((size, size), rng, beta=1.0)
    line = (np.arange(size) % cell) < 3
    grey = np.where(line[:, None] | line[None, :], 0.45, grey)
    return _to_rgb(grey)


def _glass(rng: np.random.Generator) -> np.ndarray:
    """Car windows: dark glass with a soft reflection band."""
    size = 128
    y = np.linspace(0, 1, size, dtype=np.float32)[:, None]
    grey = 0.22 + 0.3 * np.exp(-(((y - 0.3) / 0.15) ** 2)) + 0.03 * fractal_noise((size, size), rng, 2.5)
    grey[:, : size // 16] = 0.08  # pillars at the window ends
    grey[:, -size // 16 :] = 0.08
    return _to_rgb(grey, (0.8, 0.9, 1.0))


def _rubber(rng: np.random.Generator) -> np.ndarray:
    return _to_rgb(0.12 + 0.02 * fractal_noise((64, 64), rng, beta=1.0))


def _wheels(rng: np.random.Generator) -> np.ndarray:
    """The side of a car below its body: dark shadow with the lower halves of two wheels (tyre
    and rim) centred on the top edge at 18 % and 82 % of the length. 64 x 512 texels."""
    height, width = 64, 512
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    grey = np.full((height, width), 0.1, np.float32) + 0.015 * fractal_noise((height, width), rng, 1.0)
    for centre in (0.18 * width, 0.82 * width):
        radius = np.hypot((x - centre) / (width / 4.3), y / height)  # 1 at the tyre's edge (0.34 m)
        grey = np.where(radius < 1.0, 0.16, grey)
        grey = np.where(radius < 0.62, 0.55 + 0.1 * np.cos(10 * np.arctan2(y, x - centre)), grey)
        grey = np.where(radius < 0.2, 0.3, grey)
    return _to_rgb(grey)


def _car_paint(rng: np.random.Generator) -> np.ndarray:
    """Car body: glossy paint with a darker sill and lights at the ends (texture wraps around the
    body's four sides; tinted by the car colour)."""
    height, width = 128, 512
    grey = np.full((height, width), 0.8, np.float32) + 0.02 * fractal_noise((height, width), rng, 2.5)
    grey[: height // 8] += 0.08  # highlight on the upper edge
    grey[-height // 5 :] -= 0.35  # darker sill
    return _to_rgb(grey)


#: Procedural textures by name (each a function of a seeded generator).
PROCEDURAL: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "paint": _paint,
    "concrete": _concrete,
    "carpet": _carpet,
    "wood": _wood,
    "tiles": _tiles,
    "bricks": _bricks,
    "checker": _checker,
    "wallpaper": _wallpaper,
    "books": _books,
    "cardboard": _cardboard,
    "metal": _metal,
    "window": _window,
    "door": _door,
    "facade_plaster": lambda rng: _facade(rng, brick=False),
    "facade_brick": lambda rng: _facade(rng, brick=True),
    "asphalt": _asphalt,
    "road": _road,
    "paving": _paving,
    "glass": _glass,
    "rubber": _rubber,
    "car_paint": _car_paint,
    "wheels": _wheels,
}
