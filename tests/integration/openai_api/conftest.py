"""A real ``sdworker serve`` (tiny model, one worker, an API key) whose model answers to the
names migrated clients use: ``stable-diffusion-2`` baked in with ``--alias``, and
``stabilityai/stable-diffusion-2-1`` and ``dall-e-2`` given by ``SDWORKER_MODEL_ALIASES``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.serving import Served, serve

API_KEY = "openai-key-1234"
#: given by the setting; ``stable-diffusion-2`` is baked into the manifest
ALIASES = "stabilityai/stable-diffusion-2-1=tiny,dall-e-2=tiny"


@pytest.fixture(scope="session")
def aliased_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, baked as a user does: ``sdworker bake tiny --name tiny --alias ...``."""
    from sdworker.builder.cli import bake_command
    from sdworker.core.settings import Settings

    models = tmp_path_factory.mktemp("openai-models")
    argv = ["tiny", "--name", "tiny", "--alias", "stable-diffusion-2", "--models-dir", str(models)]
    assert bake_command(argv, Settings()) == 0
    return models


@pytest.fixture(scope="session")
def served(aliased_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``sdworker serve`` on 127.0.0.1 with an API key and aliases."""
    state = tmp_path_factory.mktemp("openai-state")
    with serve(aliased_models, state, API_KEY, SDWORKER_MODEL_ALIASES=ALIASES) as served:
        yield served
