"""Camera sources: every input (video, image folder, TUM, KITTI, EuRoC, webcam, synthetic) yields
:class:`slam.io.frame.Frame` objects through the :class:`slam.io.sources.base.Source` interface."""
