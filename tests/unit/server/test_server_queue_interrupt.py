"""The local endpoint's interrupt: a queued job is cancelled, a running one is asked (through
the worker's own interrupt channel, not the SDK's stop channel) to end with what it made."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from sdworker.core.jobs import Status
from sdworker.core.settings import Settings
from sdworker.runpod.interrupts import Interrupts, listen
from sdworker.server.app import create_app
from sdworker.server.clock import ManualClock
from sdworker.server.queue import JobQueue
from sdworker.server.supervisor import worker_env
from tests.unit.server.test_server_http import worker_done, worker_take
from tests.unit.server.test_server_queue import run_with_queue


@pytest.fixture
def client(settings: Settings, clock: ManualClock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock, workers=0)) as c:
        yield c


def test_interrupting_a_queued_job_cancels_it(settings: Settings, clock: ManualClock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({})
        view = await q.interrupt(job.id)
        assert view is not None and view.status is Status.CANCELLED
        assert await q.take("w1", 1, 0) == []
        assert await q.interrupt("nope") is None

    run_with_queue(settings, clock, body)


def test_interrupting_a_running_job_asks_its_worker_once_and_keeps_the_result(
    settings: Settings, clock: ManualClock
) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({})
        await q.take("w1", 1, 0)
        waiter = asyncio.create_task(q.interrupt_signals("w1", 5.0))
        await asyncio.sleep(0)
        view = await q.interrupt(job.id)
        assert view is not None and view.status is Status.IN_PROGRESS  # it still runs
        assert await asyncio.wait_for(waiter, 1.0) == [job.id]
        # asked once; and never through the SDK's stop channel (that would drop the result)
        assert await q.interrupt_signals("w1", 0.01) == []
        assert await q.stop_signals("w1", 0.01) == []
        assert await q.interrupt_signals("w2", 0.01) == []
        output = [{"image": "abc", "seed": 1, "interrupted": True}]
        await q.report(job.id, "w1", {"output": output}, is_stream=False)
        done = await q.get(job.id)
        assert done is not None and done.status is Status.COMPLETED and done.output == output
        # a finished job is left as it is
        again = await q.interrupt(job.id)
        assert again is not None and again.status is Status.COMPLETED

    run_with_queue(settings, clock, body)


def test_the_interrupt_route_and_the_worker_channel_over_http(client: TestClient) -> None:
    token = client.app.state.worker_token  # type: ignore[attr-defined]
    channel = f"/_worker/job-interrupt/w1?token={token}"
    assert client.get("/_worker/job-interrupt/w1?token=wrong").status_code == 401
    assert client.get(channel).status_code == 204  # nothing asked: the long poll ends empty
    job_id = client.post("/v2/local/run", json={"input": {}}).json()["id"]
    worker_take(client)
    answer = client.post(f"/v2/local/interrupt/{job_id}").json()
    assert answer == {"id": job_id, "status": "IN_PROGRESS"}
    assert client.get(channel).json() == {"jobsToInterrupt": [job_id]}
    worker_done(client, job_id, {"output": [{"image": "x", "seed": 1, "interrupted": True}]})
    status = client.get(f"/v2/local/status/{job_id}").json()
    assert status["status"] == "COMPLETED" and status["output"][0]["interrupted"] is True
    assert client.post("/v2/local/interrupt/unknown").status_code == 404
    queued = client.post("/v2/local/run", json={"input": {}}).json()["id"]
    assert client.post(f"/v2/local/interrupt/{queued}").json()["status"] == "CANCELLED"


def test_workers_are_told_where_the_interrupt_channel_is() -> None:
    env = worker_env("http://127.0.0.1:9/_worker", "tok", "worker-0-0", "local")
    assert env["SDWORKER_INTERRUPT_URL"] == (
        "http://127.0.0.1:9/_worker/job-interrupt/worker-0-0?token=tok"
    )


def test_the_worker_listener_hears_the_channel() -> None:
    answers = [b'{"jobsToInterrupt": ["job-1", 7]}']

    class Channel(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers.pop(0) if answers else b""
            self.send_response(200 if body else 204)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Channel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        interrupts = Interrupts()
        asked = interrupts.asked("job-1")
        heard = threading.Event()
        original = interrupts.add

        def add(job_id: str) -> None:
            original(job_id)
            heard.set()

        interrupts.add = add  # type: ignore[method-assign]
        stop = threading.Event()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        thread = listen(url, interrupts, timeout_s=5, stop=stop)
        assert heard.wait(10)
        assert asked() and not interrupts.asked("job-2")()
        interrupts.forget("job-1")
        assert not asked()
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        server.shutdown()
