"""Camera sources: every input (video, image folder, TUM, KITTI, EuRoC, webcam, synthetic) yields
:class:`slam.frame.Frame` objects through the :class:`slam.sources.base.Source` interface."""
