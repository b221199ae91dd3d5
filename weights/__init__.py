"""The learned weights this project ships (trained by `v2d train`; see MODEL_CARD.md)."""

from pathlib import Path

#: the lite depth and motion networks
LITE = Path(__file__).with_name("lite.pt")
