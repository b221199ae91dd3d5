"""Live display of the SLAM map: Qt (pyqtgraph) window, Open3D window or offscreen snapshots."""
