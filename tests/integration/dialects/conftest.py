"""A real ``sdworker serve`` (tiny model, one worker process) for the dialect end-to-end tests."""

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

API_KEY = "admin1234"


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
def dialect_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sdworker.server.app", reason="the local endpoint is not on this branch")
    from sdworker.builder.tiny import bake_tiny

    models = tmp_path_factory.mktemp("dialect-models")
    bake_tiny(models, "tiny")
    return models


@pytest.fixture(scope="session")
def served(dialect_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``sdworker serve`` on 127.0.0.1 with an API key, as a user starts it."""
    pytest.importorskip("sdworker.server.app", reason="the local endpoint is not on this branch")
    port = _free_port()
    state = tmp_path_factory.mktemp("dialect-state")
    src = Path(__file__).resolve().parents[3] / "src"
    env = {
        **os.environ,
        "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "SDWORKER_MODELS_DIR": str(dialect_models),
        "SDWORKER_STATE_DIR": str(state),
        "SDWORKER_API_KEY": API_KEY,
        "SDWORKER_DEVICE": "cpu",
    }
    log = (state / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdworker", "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError((state / "serve.log").read_text())
            try:
                health = requests.get(
                    f"{url}/v2/local/health", headers={"Authorization": API_KEY}, timeout=2
                )
                if (
                    health.ok
                    and health.json()["workers"]["idle"] + health.json()["workers"]["running"] > 0
                ):
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "sdworker serve did not become ready:\n" + (state / "serve.log").read_text()
                )
            time.sleep(0.3)
        yield Served(url, API_KEY)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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
