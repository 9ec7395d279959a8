"""A real ``sdworker serve`` (tiny model, one worker process) for the dialect end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.serving import Served, serve

API_KEY = "admin1234"


@pytest.fixture(scope="session")
def dialect_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sdworker.builder.tiny import bake_tiny

    models = tmp_path_factory.mktemp("dialect-models")
    bake_tiny(models, "tiny")
    return models


@pytest.fixture(scope="session")
def served(dialect_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``sdworker serve`` on 127.0.0.1 with an API key, as a user starts it."""
    state = tmp_path_factory.mktemp("dialect-state")
    with serve(dialect_models, state, API_KEY) as served:
        yield served


def native_pixels(served: Served, job_input: dict) -> list[bytes]:  # type: ignore[type-arg]
    """The same request in the native form, through ``/runsync``: each image's RGB pixels."""
    import base64
    import io

    from PIL import Image

    r = requests.post(
        f"{served.url}/v2/local/runsync",
        json={"input": job_input},
        headers={"Authorization": f"Bearer {served.key}"},
        timeout=120,
    )
    body = r.json()
    assert body["status"] == "COMPLETED", body
    return [
        Image.open(io.BytesIO(base64.b64decode(o["image"]))).convert("RGB").tobytes()
        for o in body["output"]
    ]


@pytest.fixture
def native(served: Served):  # type: ignore[no-untyped-def]
    return lambda job_input: native_pixels(served, job_input)
