"""The online SLAM system: the shared map state, the frontend (tracking and keyframes), the backend
(sliding-window optimisation), the dense bundle adjustment, the hand-over of final keyframes to
fusion, and the run loop that writes a run's outputs."""
