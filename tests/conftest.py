"""Shared fixtures: the real test data beside the checkout, skipped with a reason where absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slam.io.shared_data import SHARED_DATA

REPO_ROOT = Path(__file__).resolve().parents[1]

# `v2d run` opens the Qt viewer by default when a display is present (make test runs under
# Xvfb): tests that want a viewer ask for one with --viewer
os.environ["V2D_VIEWER"] = "none"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gui`` need an X server: without ``$DISPLAY`` they skip, saying how to run them."""
    if os.environ.get("DISPLAY"):
        return
    skip = pytest.mark.skip(reason="needs an X display ($DISPLAY unset): run under xvfb-run, as `make test` does")
    for item in items:
        if "gui" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (present on developer machines and in CI)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (only present on developer machines and in CI)")
    return SHARED_DATA
