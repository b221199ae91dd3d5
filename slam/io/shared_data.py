"""Where the project's real evaluation data lives: ``../shared/data`` beside the repository checkout
(on developer machines and in CI; absent on a user's machine, where tests skip and benchmarks say
so). Nothing is ever trained on it."""

from __future__ import annotations

from pathlib import Path

#: ``../shared/data`` beside the repository (this file is slam/io/shared_data.py inside it)
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
