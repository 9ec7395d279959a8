"""Fixtures of the builder's integration tests: the tiny models baked once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdworker.builder.tiny import bake_tiny


@pytest.fixture(scope="session")
def baked_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir with ``tiny`` (no checker) and ``tiny-safe`` (a checker that flags all)."""
    models = tmp_path_factory.mktemp("builder-models")
    bake_tiny(models, "tiny")
    bake_tiny(models, "tiny-safe", safety_checker=True)
    return models
