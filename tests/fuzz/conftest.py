"""The fuzz suite's budget and seed: hypothesis, derandomized (a fixed seed, so CI finds the
same cases every run), a bounded number of examples per property.

``SDWORKER_FUZZ_EXAMPLES`` raises the budget for a long run outside CI, and
``SDWORKER_FUZZ_SEED`` picks another fixed seed:

    SDWORKER_FUZZ_EXAMPLES=3000 SDWORKER_FUZZ_SEED=7 .venv/bin/python -m pytest tests/fuzz
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, seed, settings

F = TypeVar("F", bound=Callable[..., Any])

EXAMPLES = int(os.environ.get("SDWORKER_FUZZ_EXAMPLES", "120"))
SEED = int(os.environ.get("SDWORKER_FUZZ_SEED", "0"))

settings.register_profile(
    "sdworker-fuzz",
    max_examples=EXAMPLES,
    derandomize=SEED == 0,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("sdworker-fuzz")


def fuzz_seed(test: F) -> F:
    """A fixed seed other than the derandomized default, when ``SDWORKER_FUZZ_SEED`` asks."""
    return seed(SEED)(test) if SEED else test


class Canary:
    """A server on loopback that nothing may reach: ``hits`` lists the paths asked of it."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    server = Canary()
    yield server
    server.close()
