"""Through real ``runpod`` worker processes: a cancel is never lost, and the worker token
never reaches a log."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from server_harness import HANDLERS, ServerProcess, wait_status

from sdworker.core.settings import Settings
from sdworker.server.queue import JobQueue
from sdworker.server.supervisor import WorkerSupervisor
from tests.integration.waits import PATIENCE_S

STEPS = 8


def test_a_cancel_the_moment_a_job_starts_is_never_lost(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = serve("steps", workers=1)
    record = tmp_path / "steps.log"
    record.touch()
    ids = []
    with httpx.Client(timeout=10) as client:
        for _ in range(10):
            job_input = {"steps": STEPS, "step_s": 0.1, "record": str(record)}
            job_id = client.post(f"{server.url}/run", json={"input": job_input}).json()["id"]
            while client.get(f"{server.url}/status/{job_id}").json()["status"] == "IN_QUEUE":
                pass  # no sleep: cancel the very moment it turns IN_PROGRESS
            assert client.post(f"{server.url}/cancel/{job_id}").json()["status"] == "CANCELLED"
            ids.append(job_id)
        # the worker is free again, and nothing of the cancelled jobs runs on behind it
        last = client.post(f"{server.url}/run", json={"input": {"steps": 1}}).json()["id"]
        # one job at a time (the fixture's concurrency is 1): had a cancel been lost, that job
        # would have run all its steps before this one could start
        wait_status(server.url, last, {"COMPLETED"})
    done = Counter(line.split()[0] for line in record.read_text().splitlines())
    assert all(done[job_id] < STEPS for job_id in ids), done


class _Failing(BaseHTTPRequestHandler):
    """Answers every request 500, as a job-take that fails would."""

    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_worker_token_never_reaches_the_worker_log(tmp_path: Path) -> None:
    """The SDK prints its job-take URL (with our token) when a take fails."""
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    token = "tok-" + "x" * 28
    log_file = tmp_path / "workers.log"

    async def main() -> None:
        queue = JobQueue(Settings(state_dir=tmp_path / "state", workers=0))
        supervisor = WorkerSupervisor(
            queue,
            handler_path=HANDLERS / "echo.py",
            count=1,
            base_url=f"http://127.0.0.1:{http.server_address[1]}/_worker",
            token=token,
            log_file=log_file,
        )
        await supervisor.start()
        try:
            deadline = time.monotonic() + PATIENCE_S
            while time.monotonic() < deadline:
                if "Failed to get job" in log_file.read_text(errors="replace"):
                    break
                await asyncio.sleep(0.2)
        finally:
            await supervisor.close()
            queue.store.close()

    try:
        asyncio.run(main())
    finally:
        http.shutdown()
    text = log_file.read_text(errors="replace")
    assert "Failed to get job" in text and "[redacted]" in text
    assert token not in text
