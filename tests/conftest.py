"""Shared fixtures: the real test data beside the checkout, skipped with a reason where absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# `v2d run` opens the Qt viewer by default when a display is present (make test runs under
# Xvfb): tests that want a viewer ask for one with --viewer
os.environ["V2D_VIEWER"] = "none"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (present on developer machines and in CI)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (only present on developer machines and in CI)")
    return SHARED_DATA
