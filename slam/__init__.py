"""DeepV2D SLAM: geometry, camera sources, the SLAM system, fusion, export and evaluation."""

__version__ = "0.1.0"
