"""A real ``sdworker serve`` (tiny model, one worker, an API key) for the clients of Hugging
Face and Replicate: the model also answers to the names those clients send
(``black-forest-labs/flux-schnell``, a pinned Replicate version id, a hub id), webhooks may
reach 127.0.0.1 (``SDWORKER_ALLOW_PRIVATE_URLS``, for the local receiver), and progress is
reported often enough for a prediction's logs to show it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.serving import Served, serve

API_KEY = "clients-key-1234"
#: a Replicate version id, as ``replicate.run("owner/name:VERSION")`` sends it alone
VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
ALIASES = (
    f"black-forest-labs/flux-schnell=tiny,{VERSION}=tiny,"
    "stabilityai/stable-diffusion-xl-base-1.0=tiny"
)


@pytest.fixture(scope="session")
def client_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sdworker.builder.tiny import bake_tiny

    models = tmp_path_factory.mktemp("clients-models")
    bake_tiny(models, "tiny")
    return models


@pytest.fixture(scope="session")
def served(client_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    state = tmp_path_factory.mktemp("clients-state")
    settings = {
        "SDWORKER_MODEL_ALIASES": ALIASES,
        "SDWORKER_ALLOW_PRIVATE_URLS": "true",
        "SDWORKER_PROGRESS_INTERVAL_S": "0.05",
    }
    with serve(client_models, state, API_KEY, **settings) as served:
        yield served


class Receiver:
    """A webhook receiver on 127.0.0.1: every JSON body posted, by path."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver._lock:
                    receiver.posts.append((self.path, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for at, body in self.posts if at == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()
