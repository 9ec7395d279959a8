"""Baked models served by the worker: one per request, offline."""

from __future__ import annotations

import base64
import socket
from pathlib import Path
from typing import Any

import pytest

from sdworker.builder.bake import bake_folder
from sdworker.builder.tiny import bake_tiny
from sdworker.core.settings import Settings
from sdworker.runpod.adapter import RunpodAdapter


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("two-models")
    bake_tiny(models, "tiny")
    seed_one = bake_tiny(tmp_path_factory.mktemp("src"), "src", seed=1)
    bake_folder(seed_one, models, "other")
    return models


def _job(**extra: Any) -> dict[str, Any]:
    payload = {"prompt": "a cat", "seed": 5, "num_inference_steps": 2, "width": 64, "height": 64}
    return {"id": "job-1", "input": {**payload, **extra}}


def _image(result: Any) -> bytes:
    assert isinstance(result, list), result
    return base64.b64decode(result[0]["image"])


def test_each_request_selects_its_model(two_models: Path) -> None:
    worker = RunpodAdapter(Settings(models_dir=two_models, default_model="tiny"))
    worker.service.registry.verify(check_sha256=True)
    default = _image(worker.handle_sync(_job()))
    tiny = _image(worker.handle_sync(_job(model="tiny")))
    other = _image(worker.handle_sync(_job(model="other")))
    assert default == tiny
    assert other != tiny
    missing = worker.handle_sync(_job(model="nope"))
    assert isinstance(missing, dict)
    assert "other" in missing["error"] and "tiny" in missing["error"]


def test_a_job_opens_no_socket_beyond_loopback(
    two_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if not (
            isinstance(host, str) and (host.startswith("127.") or host in ("::1", "localhost"))
        ):
            attempts.append(address)
            raise OSError(f"test forbids connecting to {address!r}")
        real_connect(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", "::1", None):
            attempts.append(host)
            raise OSError(f"test forbids resolving {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    # a fresh worker: loading the pipeline happens inside the guarded block too
    worker = RunpodAdapter(Settings(models_dir=two_models, default_model="other"))
    result = worker.handle_sync(_job(num_images=2))
    assert isinstance(result, list) and len(result) == 2, result
    assert attempts == []
