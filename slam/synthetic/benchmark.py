"""Speed of the synthetic renderer (images and depth), for ``v2d bench`` and BENCHMARKS.md."""

from __future__ import annotations

import time

from slam.synthetic.sequence import SyntheticSequence


def measure_render_speed(
    kind: str = "room", height: int = 240, width: int = 320, frames: int = 200, seed: int = 0
) -> dict:
    """Render ``frames`` consecutive frames (image and depth) of a ``kind`` sequence ("room" or
    "road") at ``height`` x ``width`` and time them on this machine, after one warm-up frame.

    Returns a JSON-able dict: kind, height, width, frames, seed, ``fps`` (frames per second),
    ``ms_per_frame`` (mean), ``ms_per_frame_max`` (slowest frame), ``scene_build_s`` (building
    the scene and the path, textures included on first use) and ``faces`` (in the scene).
    """
    if frames < 1:
        raise ValueError("measure at least one frame")
    start = time.perf_counter()
    sequence = SyntheticSequence(kind, seed=seed, num_frames=frames, height=height, width=width)
    sequence.render(0)  # warm-up: textures and caches
    build = time.perf_counter() - start
    durations = []
    for index in range(frames):
        tic = time.perf_counter()
        sequence.render(index)
        durations.append(time.perf_counter() - tic)
    total = sum(durations)
    return {
        "kind": kind,
        "height": height,
        "width": width,
        "frames": frames,
        "seed": seed,
        "fps": frames / total,
        "ms_per_frame": 1000.0 * total / frames,
        "ms_per_frame_max": 1000.0 * max(durations),
        "scene_build_s": build,
        "faces": sequence.scene.num_faces,
    }
