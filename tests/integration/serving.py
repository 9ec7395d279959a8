"""``sdworker serve`` as a user starts it (one worker process, an API key), for the
end-to-end tests of the request formats and their client packages."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.integration.waits import wait_until

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass(frozen=True)
class Served:
    url: str
    key: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(url: str, key: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until a worker process is polling for jobs; the log is the error when it never does."""

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        try:
            health = requests.get(
                f"{url}/v2/local/health", headers={"Authorization": key}, timeout=30
            )
        except requests.RequestException:
            return False
        workers = health.json()["workers"] if health.ok else {}
        return bool(workers.get("idle", 0) + workers.get("running", 0) > 0)

    wait_until(ready, lambda: "sdworker serve ready:\n" + log.read_text(), every_s=0.2)


@contextmanager
def serve(models: Path, state: Path, key: str, **settings: str) -> Iterator[Served]:
    """``sdworker serve --workers 1`` on 127.0.0.1 over ``models``, with ``settings``
    (``SDWORKER_...`` variables) added to its environment; stopped on exit."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "SDWORKER_MODELS_DIR": str(models),
        "SDWORKER_STATE_DIR": str(state),
        "SDWORKER_API_KEY": key,
        "SDWORKER_DEVICE": "cpu",
        **settings,
    }
    log_path = state / "serve.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdworker", "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, key, proc, log_path)
        yield Served(url, key)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
