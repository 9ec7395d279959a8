"""Job lifecycle through real worker processes: progress, failure, cancel, timeout, streams,
worker deaths, webhooks, and a server killed with -9."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import ServerProcess, wait_status

from tests.integration.waits import wait_until


def submit(url: str, job_input: dict[str, Any], **extra: Any) -> str:
    r = httpx.post(f"{url}/run", json={"input": job_input, **extra})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


@pytest.fixture(scope="module")
def steps(serve: Callable[..., ServerProcess]) -> ServerProcess:
    return serve("steps", workers=1)


def test_in_queue_in_progress_completed_with_progress_and_times(steps: ServerProcess) -> None:
    busy = submit(steps.url, {"steps": 3, "step_s": 0.2})
    sent = time.monotonic()
    job = submit(steps.url, {"steps": 4, "step_s": 0.15})
    assert httpx.get(f"{steps.url}/status/{job}").json()["status"] == "IN_QUEUE"
    wait_status(steps.url, busy, {"COMPLETED"})
    seen = wait_status(steps.url, job, {"IN_PROGRESS"})
    progress = None
    while progress is None:
        body = httpx.get(f"{steps.url}/status/{job}").json()
        if body["status"] == "IN_PROGRESS" and "output" in body:
            progress = body["output"]
        elif body["status"] != "IN_PROGRESS":
            break
        time.sleep(0.03)
    assert progress is not None and progress["steps"] == 4 and 0 < progress["progress"] <= 1
    done = wait_status(steps.url, job, {"COMPLETED"})
    waited_ms = (time.monotonic() - sent) * 1000
    assert done["output"] == {"steps_done": 4}
    assert seen["delayTime"] >= 300  # it waited behind the busy job
    # its own four steps, not the wait before them (however slow a busy machine makes both)
    assert 600 <= done["executionTime"] <= waited_ms - seen["delayTime"]


def test_cancel_queued_and_running_jobs(steps: ServerProcess, tmp_path: Path) -> None:
    record = tmp_path / "steps.log"
    record.touch()
    running = submit(steps.url, {"steps": 100, "step_s": 0.1, "record": str(record)})
    queued = submit(steps.url, {"steps": 1})
    wait_status(steps.url, running, {"IN_PROGRESS"})
    assert httpx.post(f"{steps.url}/cancel/{queued}").json()["status"] == "CANCELLED"
    assert httpx.post(f"{steps.url}/cancel/{running}").json()["status"] == "CANCELLED"
    # the single worker is free again before the cancelled job could have run its 100 steps
    after = submit(steps.url, {"steps": 1, "step_s": 0.01})
    assert wait_status(steps.url, after, {"COMPLETED"})["output"] == {"steps_done": 1}
    assert len(record.read_text().splitlines()) < 100
    assert httpx.get(f"{steps.url}/status/{running}").json()["status"] == "CANCELLED"
    assert httpx.get(f"{steps.url}/status/{queued}").json()["status"] == "CANCELLED"


def test_execution_timeout_then_retry(steps: ServerProcess) -> None:
    job = submit(steps.url, {"steps": 100, "step_s": 0.1}, policy={"executionTimeout": 500})
    body = wait_status(steps.url, job, {"TIMED_OUT"})
    assert "500 ms" in body["error"]
    retried = httpx.post(f"{steps.url}/retry/{job}").json()
    assert retried == {"id": job, "status": "IN_QUEUE"}
    assert wait_status(steps.url, job, {"TIMED_OUT"})["id"] == job


def test_ttl_expiry_answers_404(steps: ServerProcess) -> None:
    # the one worker is busy for 5 s: the job waits in the queue past its 200 ms TTL, however
    # slowly a busy machine submits it
    busy = submit(steps.url, {"steps": 50, "step_s": 0.1})
    wait_status(steps.url, busy, {"IN_PROGRESS"})
    job = submit(steps.url, {"steps": 1}, policy={"ttl": 200})
    time.sleep(0.3)  # the passage of time the TTL counts, not a wait on another process
    assert httpx.get(f"{steps.url}/status/{job}").status_code == 404
    wait_status(steps.url, busy, {"COMPLETED"})


def test_failed_job_carries_the_error(serve: Callable[..., ServerProcess]) -> None:
    server = serve("fail", workers=1)
    raised = wait_status(server.url, submit(server.url, {}), {"FAILED"})
    assert "the fixture handler always fails" in raised["error"]
    returned = wait_status(server.url, submit(server.url, {"mode": "return"}), {"FAILED"})
    assert returned["error"].startswith("invalid input: prompt")


def test_stream_chunks(serve: Callable[..., ServerProcess]) -> None:
    server = serve("stream", workers=1)
    job = submit(server.url, {"chunks": 4, "pause_s": 0.1})
    chunks: list[Any] = []
    status = ""
    while status != "COMPLETED":
        body = httpx.get(f"{server.url}/stream/{job}").json()
        chunks += [c["output"] for c in body["stream"]]
        status = body["status"]
        time.sleep(0.05)
    chunks += [c["output"] for c in httpx.get(f"{server.url}/stream/{job}").json()["stream"]]
    assert chunks == [{"chunk": i} for i in range(4)]
    final = httpx.get(f"{server.url}/status/{job}").json()
    assert final["output"] == [{"chunk": i} for i in range(4)]


def test_dead_worker_is_replaced_and_its_job_retried_once(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve("crash", workers=1)
    job = submit(server.url, {"crash": True})
    body = wait_status(server.url, job, {"FAILED"})
    assert "exited with code 3" in body["error"] and "attempted 2 times" in body["error"]
    assert httpx.get(f"{server.url}/health").json()["jobs"]["retried"] == 1
    survivor = wait_status(server.url, submit(server.url, {"crash": False}), {"COMPLETED"})
    assert survivor["output"] == {"survived": True}


def test_refresh_worker_fails_the_job_and_replaces_the_worker(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve(str(Path(__file__).parent / "handlers" / "refresh.py"), workers=1)
    before = wait_status(server.url, submit(server.url, {}), {"COMPLETED"})["output"]
    refreshed = submit(server.url, {"refresh": True})
    # queued right behind it: must run on the replacement, not on the retiring worker
    after_id = submit(server.url, {})
    failed = wait_status(server.url, refreshed, {"FAILED"})
    assert failed["error"] == "the pipeline is in a bad state"
    after = wait_status(server.url, after_id, {"COMPLETED"})["output"]
    assert after["pid"] != before["pid"]
    assert after["worker"] != before["worker"]
    # the refreshed job finished with its error: it is not retried
    assert httpx.get(f"{server.url}/status/{refreshed}").json()["status"] == "FAILED"
    assert httpx.get(f"{server.url}/health").json()["jobs"]["retried"] == 0


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Hook.received.append(body)
        # fail the first delivery so the retry is exercised
        self.send_response(500 if len(_Hook.received) == 1 else 200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    _Hook.received = []
    httpd = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    httpd.shutdown()
    httpd.server_close()


def test_webhook_delivered_and_retried(serve: Callable[..., ServerProcess], hook_url: str) -> None:
    # the hook listens on loopback: only an operator who allows private addresses reaches it
    steps = serve("steps", workers=1, SDWORKER_ALLOW_PRIVATE_URLS="true")
    job = submit(steps.url, {"steps": 1, "step_s": 0.01}, webhook=hook_url)
    wait_until(lambda: len(_Hook.received) >= 2, "the webhook delivered, then retried")
    assert len(_Hook.received) == 2
    assert _Hook.received[1]["id"] == job and _Hook.received[1]["status"] == "COMPLETED"
    assert _Hook.received[1]["output"] == {"steps_done": 1}


def test_webhook_to_loopback_is_refused_by_default(steps: ServerProcess, hook_url: str) -> None:
    job = submit(steps.url, {"steps": 1, "step_s": 0.01}, webhook=hook_url)
    wait_status(steps.url, job, {"COMPLETED"})
    # the sender's attempt has ended when it logs the refusal (a refusal is never retried)
    wait_until(lambda: f"refused for job {job}" in steps.log_path.read_text(), "the refusal")
    assert _Hook.received == []


@pytest.mark.parametrize("hook", ["ftp://example.com/x", "http://user:pw@example.com/", "hook"])
def test_an_unusable_webhook_is_refused_at_submission(steps: ServerProcess, hook: str) -> None:
    r = httpx.post(f"{steps.url}/run", json={"input": {"steps": 1}, "webhook": hook})
    assert r.status_code == 400
    assert r.json()["error"].startswith("webhook: ")


def test_kill_9_and_restart_loses_nothing(
    serve: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> None:
    state = tmp_path_factory.mktemp("durable")
    server = serve("steps", workers=1, state_dir=state)
    done = submit(server.url, {"steps": 1, "step_s": 0.01})
    wait_status(server.url, done, {"COMPLETED"})
    running = submit(server.url, {"steps": 30, "step_s": 0.1})
    wait_status(server.url, running, {"IN_PROGRESS"})
    queued = [submit(server.url, {"steps": 1, "step_s": 0.01}) for _ in range(3)]
    server.kill9()

    again = serve("steps", workers=1, state_dir=state)
    assert httpx.get(f"{again.url}/status/{done}").json()["output"] == {"steps_done": 1}
    for job in queued:
        assert wait_status(again.url, job, {"COMPLETED"})["output"] == {"steps_done": 1}
    # the job that was running when the server died ran again (its second attempt)
    assert wait_status(again.url, running, {"COMPLETED"})["output"] == {"steps_done": 30}
    assert httpx.get(f"{again.url}/health").json()["jobs"]["retried"] >= 1
