"""Scoring against ground truth: trajectories (ATE, RPE through evo) and depth maps."""
