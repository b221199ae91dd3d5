"""Training of the learned DeepV2D modules (``v2d train``): data, losses, the two-stage loop,
validation, checkpoints, and multi-process training through torchrun."""
