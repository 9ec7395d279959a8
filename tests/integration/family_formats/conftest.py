"""A real ``sdworker serve`` (one worker, an API key) over the tiny SD 3 and FLUX.1 models,
which answer to the hub ids clients name them by: ``black-forest-labs/FLUX.1-schnell`` and
``stabilityai/stable-diffusion-3.5-medium``, given by ``SDWORKER_MODEL_ALIASES``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.serving import Served, serve

API_KEY = "family-formats-key"
ALIASES = (
    "black-forest-labs/FLUX.1-schnell=tiny-flux,"
    "stabilityai/stable-diffusion-3.5-medium=tiny-sd3,"
    "black-forest-labs/FLUX.1-Kontext-dev=tiny-flux-kontext"
)


@pytest.fixture(scope="session")
def family_served(
    family_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    state = tmp_path_factory.mktemp("family-formats-state")
    with serve(
        family_models_dir,
        state,
        API_KEY,
        SDWORKER_MODEL_ALIASES=ALIASES,
        SDWORKER_DEFAULT_MODEL="tiny-flux",
        HF_HUB_OFFLINE="1",
    ) as served:
        yield served
