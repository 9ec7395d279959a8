"""Interrupt through a real ``sdworker serve``, its real ``runpod`` worker loop and the tiny
model: the job ends COMPLETED with the image as it stood, where cancel discards it."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.integration.server.server_harness import FAST, ServerProcess, wait_status
from tests.integration.waits import wait_until

HANDLER = Path(__file__).resolve().parents[3] / "handler.py"
#: far more work than the test waits for: the job is still denoising when interrupted
LONG = {"prompt": "a lighthouse", "width": 64, "height": 64, "num_inference_steps": 500}


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        **FAST,
        "SDWORKER_MODELS_DIR": str(models_dir),
        "SDWORKER_DEFAULT_MODEL": "tiny",
        "SDWORKER_PROGRESS_INTERVAL_S": "0",
        "SDWORKER_PREFETCH": "0",  # a job behind the running one stays IN_QUEUE
        "SDWORKER_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
    }
    proc = ServerProcess(str(HANDLER), 1, tmp_path_factory.mktemp("interrupt") / "state", env)
    try:
        yield proc.start()
    finally:
        proc.stop()


def denoising(url: str, job_id: str) -> dict[str, Any]:
    """Wait until the job has reported a denoising step (it is running on the worker)."""

    def stepping() -> dict[str, Any] | None:
        body: dict[str, Any] = httpx.get(f"{url}/status/{job_id}", timeout=30).json()
        output = body.get("output")
        if body["status"] == "IN_PROGRESS" and isinstance(output, dict) and output.get("step"):
            return body
        assert body["status"] in {"IN_QUEUE", "IN_PROGRESS"}, body
        return None

    return wait_until(stepping, f"job {job_id} reporting a denoising step")


def test_interrupt_a_running_job_completes_with_the_image_as_it_stood(
    server: ServerProcess,
) -> None:
    job_id = httpx.post(
        f"{server.url}/run", json={"input": {**LONG, "seed": 4, "num_images": 2}}, timeout=30
    ).json()["id"]
    denoising(server.url, job_id)
    answer = httpx.post(f"{server.url}/interrupt/{job_id}", timeout=30).json()
    assert answer == {"id": job_id, "status": "IN_PROGRESS"}
    done = wait_status(server.url, job_id, {"COMPLETED", "FAILED", "CANCELLED"}, 120)
    assert done["status"] == "COMPLETED", done
    [entry] = done["output"]  # the first image, stopped: the second never started
    assert entry["interrupted"] is True and entry["seed"] == 4
    assert Image.open(io.BytesIO(base64.b64decode(entry["image"]))).size == (64, 64)


def test_interrupt_a_queued_job_cancels_it_and_cancel_still_discards(
    server: ServerProcess,
) -> None:
    running = httpx.post(f"{server.url}/run", json={"input": LONG}, timeout=30).json()["id"]
    denoising(server.url, running)
    queued = httpx.post(f"{server.url}/run", json={"input": LONG}, timeout=30).json()["id"]
    answer = httpx.post(f"{server.url}/interrupt/{queued}", timeout=30).json()
    assert answer == {"id": queued, "status": "CANCELLED"}
    cancelled = httpx.post(f"{server.url}/cancel/{running}", timeout=30).json()
    assert cancelled == {"id": running, "status": "CANCELLED"}
    body = wait_status(server.url, running, {"CANCELLED"}, 10)
    assert "output" not in body
