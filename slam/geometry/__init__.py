"""Geometry, the lowest layer: SE3 (:mod:`.lie`), projection, backprojection and warping
(:mod:`.projection`), intrinsics scaling and depth resizing (:mod:`.resize`), cameras and
undistortion (:mod:`.camera`), and the Gauss-Newton layer with its bundle adjustment step
(:mod:`.solver`). Pure functions on tensors; imports nothing of the project but its errors.

Pose convention, for the whole project:

- ``pose_w2c`` (``G`` in the solver's formulas): world-to-camera, maps world points into the
  camera frame. SE3 ``poses`` arguments of the solver and the networks are world-to-camera.
- ``pose_c2w``: camera-to-world (the camera's position and orientation in the world), what
  trajectory files (TUM, KITTI), fusion and the viewer hold, usually as (4, 4) float64 matrices.
- ``T_ji``: the relative transform from camera i to camera j, ``G_j G_i^-1``;
  ``frame_from_keyframe`` likewise maps the keyframe's camera frame into the frame's.

Camera frames are OpenCV's: x right, y down, z forward; depth is z, in the map's units.
"""
