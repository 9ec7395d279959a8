"""Fixtures of the builder's integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def baked_tiny(models_dir: Path) -> Path:
    """The session's models dir: ``tiny`` (no checker) and ``tiny-safe`` (flags everything).

    Read-only: tests that change files copy or re-bake them first."""
    return models_dir
