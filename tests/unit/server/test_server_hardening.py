"""What a client (or a worker) sends never takes a route down, and every job ends."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sdworker.core.jobs import Status
from sdworker.core.settings import Settings
from sdworker.server.app import create_app
from sdworker.server.clock import ManualClock
from sdworker.server.queue import JobQueue
from sdworker.server.webhooks import WebhookSender
from sdworker.server.workers import REOFFER_S


@pytest.fixture
def client(settings: Settings, clock: ManualClock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock, workers=0)) as c:
        yield c


JSON = {"content-type": "application/json"}

BAD_BODIES = [
    (b'{"input": {"guidance_scale": NaN}}', "input.guidance_scale: NaN is not JSON"),
    (b'{"input": {"a": 1}, "policy": {"executionTimeout": NaN}}', "policy.executionTimeout"),
    (b'{"input": {"a": 1}, "policy": {"executionTimeout": 1e309}}', "policy.executionTimeout"),
    (b'{"input": {"a": 1}, "policy": {"ttl": 1e300}}', "policy.ttl: must be more than 0"),
    (b'{"input": {"a": 1}, "policy": {"ttl": "5000"}}', "policy.ttl: must be a number"),
    (b'{"input": {"a": 1}, "policy": {"ttl": true}}', "policy.ttl: must be a number"),
    (b'{"input": {"a": 1}, "policy": 5}', "policy: must be an object"),
    (b'{"input": {"a": 1}, "policy": [1]}', "policy: must be an object"),
    (b'{"input": {"a": 1}, "webhook": 5}', "webhook must be a URL string"),
    (b'{"input": {"a": 1}, "webhook": "http://[::1"}', "webhook:"),
    (b'{"input": {"p": "\\ud800"}}', "input.p: a lone surrogate"),
    (b'{"input": {"\\ud800": 1}}', "input: a key holds a lone surrogate"),
    (b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper than"),
    (b"[" * 70 + b"]" * 70, "nested deeper than"),
    (b'"just a string"', 'an "input" object'),
    (b'{"input": [1]}', 'an "input" object'),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b"", "not valid JSON"),
]


@pytest.mark.parametrize("path", ["/v2/local/run", "/v2/local/runsync", "/run", "/runsync"])
@pytest.mark.parametrize(("raw", "message"), BAD_BODIES)
def test_bad_job_bodies_are_400_naming_the_field(
    client: TestClient, path: str, raw: bytes, message: str
) -> None:
    r = client.post(path, content=raw, headers=JSON)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    assert client.get("/v2/local/health").json()["jobs"]["inQueue"] == 0


@pytest.mark.parametrize("wait", ["abc", "1e309", "-5", "1.5", "٣"])
def test_bad_wait_is_400_and_queues_nothing(client: TestClient, wait: str) -> None:
    r = client.post(f"/v2/local/runsync?wait={wait}", json={"input": {}})
    assert r.status_code == 400 and r.json()["error"].startswith("wait:")
    assert client.get("/v2/local/health").json()["jobs"]["inQueue"] == 0


def test_a_huge_wait_is_held_to_the_cap() -> None:
    from sdworker.server.routes import _wait_ms

    assert _wait_ms("9" * 5000) == 300_000
    assert _wait_ms("5") == 1000 and _wait_ms(" 2500 ") == 2500 and _wait_ms(None) is None


@pytest.mark.parametrize("job_id", ["%ED%A0%80", "%00", "a" * 5000, "..", "%2e%2e", "x%20y"])
@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("GET", "status"),
        ("POST", "status"),
        ("GET", "stream"),
        ("POST", "cancel"),
        ("POST", "retry"),
    ],
)
def test_odd_ids_are_404(client: TestClient, method: str, route: str, job_id: str) -> None:
    r = client.request(method, f"/v2/local/{route}/{job_id}?wait=abc&x=%ED%A0%80")
    assert r.status_code == 404 and len(r.text) < 300, r.text


def test_every_route_answers_413_for_an_oversize_body(settings: Settings, clock) -> None:
    small = settings.with_(run_body_limit_bytes=1000, runsync_body_limit_bytes=2000)
    with TestClient(create_app(small, clock=clock, workers=0)) as client:
        token = client.app.state.worker_token  # type: ignore[attr-defined]
        big = b"x" * 5000
        for path in (
            "/v2/local/status/x",
            "/v2/local/cancel/x",
            f"/_worker/job-done/w/j?token={token}",
        ):
            r = client.post(path, content=big)
            assert r.status_code == 413 and "at most 2000 bytes" in r.json()["error"]
        # streamed, no Content-Length: counted as the route reads it (a route that reads no
        # body answers without buffering any)
        r = client.post(
            f"/_worker/job-done/w/j?token={token}", content=iter([b"x" * 1500, b"x" * 1500])
        )
        assert r.status_code == 413 and r.json()["error"].startswith("payload too large")
        assert client.post("/v2/local/status/x", content=b"x" * 100).status_code == 404


def _take(client: TestClient, worker: str = "w1") -> dict:
    token = client.app.state.worker_token  # type: ignore[attr-defined]
    r = client.get(f"/_worker/job-take/{worker}?token={token}&job_in_progress=0")
    assert r.status_code == 200, r.text
    return r.json()


def _post_done(client: TestClient, job_id: str, raw: bytes, worker: str = "w1") -> int:
    token = client.app.state.worker_token  # type: ignore[attr-defined]
    r = client.post(
        f"/_worker/job-done/{worker}/{job_id}?token={token}&isStream=false", content=raw
    )
    return r.status_code


def test_an_unreadable_result_fails_the_job(client: TestClient) -> None:
    job_id = client.post("/v2/local/run", json={"input": {}}).json()["id"]
    _take(client)
    # a progress update JSON cannot carry is dropped: the job goes on
    assert _post_done(client, job_id, b'{"status": "IN_PROGRESS", "output": {"p": NaN}}') == 400
    assert client.get(f"/v2/local/status/{job_id}").json()["status"] == "IN_PROGRESS"
    assert _post_done(client, job_id, b'{"output": {"seed": NaN}}') == 400
    body = client.get(f"/v2/local/status/{job_id}").json()
    assert body["status"] == "FAILED"
    assert "could not be read: result.output.seed: NaN is not JSON" in body["error"]


def test_an_unparseable_result_fails_the_job(client: TestClient) -> None:
    job_id = client.post("/v2/local/run", json={"input": {}}).json()["id"]
    _take(client)
    assert _post_done(client, job_id, b"{truncated") == 400
    assert client.get(f"/v2/local/status/{job_id}").json()["status"] == "FAILED"


def run_queue(settings: Settings, clock: ManualClock, body) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        queue = JobQueue(settings, clock=clock, webhooks=WebhookSender(retries=0, interval_s=0))
        await queue.start()
        try:
            await body(queue)
        finally:
            await queue.close()

    asyncio.run(main())


def test_a_stop_is_offered_until_the_worker_lets_go(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        jobs = [await q.submit({}) for _ in range(3)]
        tasks = await q.take("w1", 3, 0)
        assert len(tasks) == 3
        for job in jobs:
            await q.cancel(job.id)
        assert await q.stop_signals("w1", 0) == sorted(j.id for j in jobs)
        # the SDK may have dropped them (fetched, not started): offered again, not once
        assert await q.stop_signals("w1", 0) == []
        assert await q.stop_signals("w1", REOFFER_S * 4) == sorted(j.id for j in jobs)
        # a job-done for one settles it; an idle take settles the rest
        await q.report(jobs[0].id, "w1", {"output": 1}, is_stream=False)
        assert await q.stop_signals("w1", REOFFER_S * 4) == sorted(j.id for j in jobs[1:])
        await q.take("w1", 1, 0, holding=True)
        assert q.board.pending("w1") == {j.id for j in jobs[1:]}
        await q.take("w1", 1, 0, holding=False)
        assert q.board.pending("w1") == set()
        assert await q.stop_signals("w1", REOFFER_S * 2) == []

    run_queue(settings, clock, body)


def test_a_silent_worker_is_lost_retried_then_failed(settings, clock) -> None:
    lost: list[str] = []
    lost_s = 60.0

    async def body(q: JobQueue) -> None:
        q.on_lost = lost.append
        job = await q.submit({})
        await q.take("w1", 1, 0)
        clock.advance(lost_s - 1)
        await q.sweep()
        assert (await q.get(job.id)).status is Status.IN_PROGRESS  # type: ignore[union-attr]
        clock.advance(2)
        await q.sweep()
        assert lost == ["w1"]
        assert (await q.get(job.id)).status is Status.IN_QUEUE  # type: ignore[union-attr]
        await q.take("w2", 1, 0)
        clock.advance(lost_s + 1)
        await q.sweep()
        final = await q.get(job.id)
        assert final is not None and final.status is Status.FAILED
        assert "did not answer" in (final.error or "")

    run_queue(settings.with_(worker_lost_s=lost_s, execution_timeout_s=3600.0), clock, body)


def test_a_worker_that_polls_but_never_answers_times_the_job_out(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({}, policy={"executionTimeout": 90_000})
        await q.take("w1", 1, 0)
        for _ in range(10):  # alive: it keeps polling its stop channel
            clock.advance(10)
            await q.stop_signals("w1", 0)
            await q.sweep()
        final = await q.get(job.id)
        assert final is not None and final.status is Status.TIMED_OUT
        assert q.board.pending("w1") == {job.id}  # and told to stop until it lets go

    run_queue(settings.with_(worker_lost_s=30.0), clock, body)


def test_an_input_json_cannot_carry_is_refused_by_the_queue_itself(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        from sdworker.core.errors import InvalidInput

        with pytest.raises(InvalidInput, match=r"input.scale: NaN is not JSON"):
            await q.submit({"scale": float("nan")})

    run_queue(settings, clock, body)


def test_webhook_failures_never_raise_and_logs_hide_the_query(caplog) -> None:
    async def boom(url: str, body: dict) -> int:
        raise UnicodeError("the guard could not read this URL")

    async def main() -> None:
        assert not await WebhookSender(retries=1, interval_s=0, poster=boom).deliver(
            "http://example.com/hook?secret=s3cr3t", {"id": "j"}
        )
        sender = WebhookSender(retries=0, interval_s=0)
        for url in ("http://[::1", "http://127.0.0.1:9/h?secret=s3cr3t", "", "http://\ud800/x"):
            assert not await sender.deliver(url, {"id": "j"})

    with caplog.at_level(logging.INFO, logger="sdworker.server.webhooks"):
        asyncio.run(main())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "s3cr3t" not in text and "http://example.com/hook" in text
    assert "http://127.0.0.1:9/h refused" in text
    json.dumps(text)  # every line is writable text
