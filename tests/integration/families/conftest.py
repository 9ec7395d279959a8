"""A worker over the tiny SD 3 and FLUX.1 models, shared by the family tests of a session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sdworker.core.settings import Settings
from sdworker.runpod.adapter import RunpodAdapter


@pytest.fixture(scope="session")
def family_settings(family_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        models_dir=family_models_dir,
        default_model="tiny-flux",
        state_dir=tmp_path_factory.mktemp("family-state"),
        progress_interval_s=0.0,
    )


@pytest.fixture(scope="session")
def family_worker(family_settings: Settings) -> Iterator[RunpodAdapter]:
    yield RunpodAdapter(family_settings)
