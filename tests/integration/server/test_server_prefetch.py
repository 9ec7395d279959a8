"""Prefetch through the real worker loop: ``sdworker serve`` with the project's handler and the
tiny model. Jobs taken beyond the running one are IN_PROGRESS, a cancelled one never reaches
the device, and the device runs the rest in arrival order (read from its ``device run:`` lines).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from server_harness import ServerProcess, wait_status

from sdworker.runpod.timing import parse
from tests.integration.waits import wait_until

HANDLER = Path(__file__).resolve().parents[3] / "handler.py"


def test_waiting_jobs_are_in_progress_a_cancelled_one_never_starts_and_order_is_kept(
    serve: Callable[..., ServerProcess], models_dir: Path
) -> None:
    server = serve(
        str(HANDLER),
        workers=1,
        SDWORKER_MODELS_DIR=str(models_dir),
        SDWORKER_DEFAULT_MODEL="tiny",
        SDWORKER_PREFETCH="2",
        SDWORKER_PROGRESS_INTERVAL_S="0",
        HF_HUB_OFFLINE="1",
    )
    small = {"prompt": "a lighthouse", "width": 64, "height": 64, "seed": 7}
    # the first job runs until it is cancelled: the others wait behind it for as long as needed
    long_job = {**small, "width": 128, "height": 128, "num_inference_steps": 500}
    jobs = [long_job] + [{**small, "num_inference_steps": 1}] * 3

    def submit(job: dict[str, object]) -> str:
        return str(httpx.post(f"{server.url}/run", json={"input": job}, timeout=30).json()["id"])

    long, gone, second, third = ids = [submit(job) for job in jobs]
    # the long job is on the device (it reports steps); the worker holds two more, waiting
    wait_until(
        lambda: isinstance(wait_status(server.url, long, {"IN_PROGRESS"}).get("output"), dict),
        "the long job reporting steps",
    )
    wait_status(server.url, gone, {"IN_PROGRESS"})
    wait_status(server.url, second, {"IN_PROGRESS"})
    # at its limit (1 + prefetch), the worker leaves the fourth job in the queue
    assert httpx.get(f"{server.url}/status/{third}").json()["status"] == "IN_QUEUE"

    cancelled = httpx.post(f"{server.url}/cancel/{gone}").json()
    assert cancelled["status"] == "CANCELLED"
    httpx.post(f"{server.url}/cancel/{long}")
    for job_id in (second, third):
        assert (
            wait_status(server.url, job_id, {"COMPLETED", "FAILED"}, 120)["status"] == "COMPLETED"
        )

    log = (server.state_dir.parent / f"{server.state_dir.name}.log").read_text()
    ran = [job_id for run in parse(log) for job_id in run.jobs if job_id in ids]
    # the long job's run ends at its cancellation; the cancelled waiting job never ran
    assert ran == [long, second, third]
