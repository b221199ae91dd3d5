"""Input and output: the ``Frame`` every source yields, the sources themselves, trajectory and
depth map files, and chessboard calibration."""
