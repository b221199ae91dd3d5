"""Synthetic scenes with exact depth and camera poses: the embedded default source, the test
fixture of every module and the training data of the networks.

- :class:`SyntheticSequence` (``kind="room"`` or ``"road"``): a scene, a camera path and the
  renders along it (images, depths, camera-to-world poses, timestamps, intrinsics).
- :func:`render`: image and depth of any scene from any camera-to-world pose.
- :func:`build_room`, :func:`build_road`: the scenes on their own, for random views.
- :func:`~slam.synthetic.benchmark.measure_render_speed`: frames per second of the renderer.

Modules: ``textures`` (photographs and procedural patterns), ``scene`` (faces, lighting),
``rooms`` and ``roads`` (scene builders), ``paths`` (camera paths), ``render`` (rasteriser),
``photometric`` (optional camera effects), ``sequence``, ``benchmark``.
"""

from slam.synthetic.photometric import Photometric
from slam.synthetic.render import Renderer, RenderResult, render
from slam.synthetic.roads import build_road
from slam.synthetic.rooms import build_room
from slam.synthetic.scene import Scene
from slam.synthetic.sequence import KINDS, SyntheticSequence, default_camera

__all__ = [
    "KINDS",
    "Photometric",
    "Renderer",
    "RenderResult",
    "Scene",
    "SyntheticSequence",
    "build_road",
    "build_room",
    "default_camera",
    "render",
]
