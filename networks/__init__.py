"""Learned DeepV2D modules (depth, Flow-SE3 motion) and their classical twins: pure torch."""
