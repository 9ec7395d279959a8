"""A real ``sdworker serve`` (tiny model, one worker, an API key) whose model answers to the
names migrated clients use: ``stable-diffusion-2`` baked in with ``--alias``, and
``stabilityai/stable-diffusion-2-1`` and ``dall-e-2`` given by ``SDWORKER_MODEL_ALIASES``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

API_KEY = "openai-key-1234"
#: given by the setting; ``stable-diffusion-2`` is baked into the manifest
ALIASES = "stabilityai/stable-diffusion-2-1=tiny,dall-e-2=tiny"


@dataclass(frozen=True)
class Served:
    url: str
    key: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def aliased_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, baked as a user does: ``sdworker bake tiny --name tiny --alias ...``."""
    from sdworker.builder.cli import bake_command
    from sdworker.core.settings import Settings

    models = tmp_path_factory.mktemp("openai-models")
    argv = ["tiny", "--name", "tiny", "--alias", "stable-diffusion-2", "--models-dir", str(models)]
    assert bake_command(argv, Settings()) == 0
    return models


def _ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        try:
            health = requests.get(
                f"{url}/v2/local/health", headers={"Authorization": API_KEY}, timeout=2
            )
            workers = health.json()["workers"] if health.ok else {}
            if workers.get("idle", 0) + workers.get("running", 0) > 0:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("sdworker serve did not become ready:\n" + log.read_text())
        time.sleep(0.3)


@pytest.fixture(scope="session")
def served(aliased_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``sdworker serve`` on 127.0.0.1 with an API key and aliases."""
    port = _free_port()
    state = tmp_path_factory.mktemp("openai-state")
    src = Path(__file__).resolve().parents[3] / "src"
    env = {
        **os.environ,
        "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "SDWORKER_MODELS_DIR": str(aliased_models),
        "SDWORKER_STATE_DIR": str(state),
        "SDWORKER_API_KEY": API_KEY,
        "SDWORKER_DEVICE": "cpu",
        "SDWORKER_MODEL_ALIASES": ALIASES,
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
        _ready(url, proc, log_path)
        yield Served(url, API_KEY)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
