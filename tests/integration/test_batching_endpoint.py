"""Batching through the real runpod worker loop: one worker takes several jobs at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.server.server_harness import FAST, ServerProcess, wait_status

HANDLER = Path(__file__).resolve().parents[2] / "handler.py"


@pytest.fixture
def server(models_dir: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        **FAST,
        "SDWORKER_MODELS_DIR": str(models_dir),
        "SDWORKER_DEFAULT_MODEL": "tiny",
        "SDWORKER_BATCH_MAX": "4",
        "SDWORKER_BATCH_WINDOW_MS": "1500",
        "HF_HUB_OFFLINE": "1",
    }
    proc = ServerProcess(str(HANDLER), 1, tmp_path / "state", env)
    try:
        yield proc.start()
    finally:
        proc.stop()


def test_one_worker_batches_concurrent_jobs_and_answers_each(server: ServerProcess) -> None:
    small = {"width": 64, "height": 64, "num_inference_steps": 2}
    ids = []
    for i in range(4):
        body = {"input": {"prompt": f"job {i}", "seed": 100 + i, **small}}
        ids.append(httpx.post(f"{server.url}/run", json=body, timeout=30).json()["id"])
    results = [wait_status(server.url, job_id, {"COMPLETED", "FAILED"}, 120) for job_id in ids]
    for i, result in enumerate(results):
        assert result["status"] == "COMPLETED", result
        assert [e["seed"] for e in result["output"]] == [100 + i]
    logs = "".join(p.read_text() for p in server.state_dir.parent.rglob("*.log"))
    assert "in one call" in logs
