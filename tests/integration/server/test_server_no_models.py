"""An endpoint that cannot serve says so: ``sdworker serve`` with no models refuses to start
with the worker's own message; a ``--handler`` script that needs none still serves; workers
that cannot start (a damaged model, found only by the workers' sha256 check) are restarted
with a back-off, shown unhealthy in ``/health`` with their reason, and a queued job waits with
that reason in its ``/status``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from server_harness import FAST, SRC, ServerProcess

from tests.integration.waits import wait_until

NO_MODELS = "no baked models in"


def _env(models: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDWORKER_")}
    env.update(
        SDWORKER_MODELS_DIR=str(models),
        RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]),
        **more,
    )
    return env


def test_serve_with_no_models_refuses_with_the_workers_message(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    env = _env(empty, SDWORKER_STATE_DIR=str(tmp_path / "state"))
    serve = subprocess.run(
        [sys.executable, "-m", "sdworker", "serve", "--port", "0", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    worker = subprocess.run(
        [sys.executable, "-m", "sdworker.worker"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert serve.returncode == 2, serve.stderr
    assert worker.returncode != 0, worker.stderr
    said = serve.stderr.strip().splitlines()[-1]
    assert said.startswith("sdworker serve: refusing to start: " + NO_MODELS), said
    # the same words as the worker's own refusal
    assert (
        said.split("refusing to start: ")[1]
        == worker.stderr.strip().splitlines()[-1].split("refusing to start: ")[1]
    )
    assert not (tmp_path / "state" / "queue.sqlite3").exists()  # nothing was served


def test_a_handler_of_ones_own_needs_no_models(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    server = ServerProcess(
        "echo", 1, tmp_path / "state", {**FAST, "SDWORKER_MODELS_DIR": str(empty)}
    )
    server.start()
    try:
        r = httpx.post(f"{server.url}/runsync", json={"input": {"x": 1}}, timeout=120)
        assert r.json()["status"] == "COMPLETED", r.text
    finally:
        server.stop()


def _damaged(models_dir: Path, into: Path) -> Path:
    """A copy of the tiny model with one weight file changed, at its size: only a sha256
    check (the workers') finds it."""
    shutil.copytree(models_dir / "tiny", into / "tiny")
    weights = max((into / "tiny").rglob("*.safetensors"), key=lambda p: p.stat().st_size)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return into


def _health_until(server: ServerProcess, done: Any) -> dict[str, Any]:
    seen: list[dict[str, Any]] = [{}]

    def there() -> dict[str, Any] | None:
        seen[0] = httpx.get(f"{server.url}/health", timeout=30).json()
        return seen[0] if done(seen[0]) else None

    return wait_until(there, lambda: f"/health getting there (last {seen[0]})", every_s=0.1)


def test_workers_that_cannot_start_are_unhealthy_and_a_job_waits_saying_why(
    models_dir: Path, tmp_path: Path
) -> None:
    models = _damaged(models_dir, tmp_path / "models")
    env = {
        **FAST,
        "SDWORKER_MODELS_DIR": str(models),
        "SDWORKER_DEFAULT_MODEL": "tiny",
        "SDWORKER_VERIFY_SHA256": "true",
        "SDWORKER_WORKER_BACKOFF_S": "0.1",
        "SDWORKER_WORKER_BACKOFF_MAX_S": "0.4",
        "HF_HUB_OFFLINE": "1",
    }
    server = ServerProcess("packaged", 1, tmp_path / "state", env)
    server.start(ready=0)  # the server starts: sizes are right
    try:
        job = httpx.post(f"{server.url}/run", json={"input": {"prompt": "x"}}, timeout=30).json()
        # the back-off: failures in a row grow while the worker keeps refusing
        health = _health_until(
            server, lambda b: b.get("unhealthyWorkers", [{}])[0].get("failures", 0) >= 3
        )
        assert health["workers"]["unhealthy"] == 1, health
        assert health["workers"]["idle"] + health["workers"]["running"] == 0, health
        failing = health["unhealthyWorkers"][0]
        assert failing["worker"] == "worker-0"
        assert "sdworker: refusing to start: model 'tiny'" in failing["reason"], failing
        assert "is damaged" in failing["reason"] and "[exit code 1]" in failing["reason"]
        assert 0 <= failing["nextStartInS"] <= 0.4
        status = httpx.get(f"{server.url}/status/{job['id']}", timeout=10).json()
        assert status["status"] == "IN_QUEUE", status
        assert status["reason"].startswith("waiting for a worker: none could start: "), status
        assert "is damaged" in status["reason"]
    finally:
        server.stop()
    log = (tmp_path / "state.log").read_text()
    assert "could not start: sdworker: refusing to start: model 'tiny'" in log
