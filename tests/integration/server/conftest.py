"""Fixtures that start real ``sdworker serve`` processes for a test module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server_harness import FAST, ServerProcess


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers for a test module (``serve("echo", workers=2, **env)``); all stopped after."""
    started: list[ServerProcess] = []

    def start(
        handler: str, workers: int = 1, state_dir: Path | None = None, **env: str
    ) -> ServerProcess:
        folder = state_dir or tmp_path_factory.mktemp(f"endpoint-{Path(handler).stem}")
        server = ServerProcess(handler, workers, folder, {**FAST, **env})
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
