"""The queue's lifecycle, on a manual clock: no test here sleeps for a TTL or a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from sdworker.core.errors import InvalidInput, JobStateConflict
from sdworker.core.jobs import Status
from sdworker.core.settings import Settings
from sdworker.server.clock import ManualClock
from sdworker.server.queue import JobQueue
from sdworker.server.store import JobStore
from sdworker.server.webhooks import WebhookSender

T = TypeVar("T")


class Posts:
    """A fake webhook receiver: records posts, answers from a script of status codes."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, url: str, body: dict[str, Any]) -> int:
        self.calls.append((url, body))
        return self.codes.pop(0) if self.codes else 200


def run_with_queue(
    settings: Settings,
    clock: ManualClock,
    body: Callable[[JobQueue], Awaitable[T]],
    posts: Posts | None = None,
) -> T:
    async def main() -> T:
        hooks = WebhookSender(retries=2, interval_s=0.01, poster=posts or Posts([]))
        queue = JobQueue(settings, clock=clock, webhooks=hooks)
        await queue.start()
        try:
            return await body(queue)
        finally:
            await queue.close()

    return asyncio.run(main())


def test_lifecycle_in_queue_in_progress_completed_with_times(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({"prompt": "x"})
        assert job.status is Status.IN_QUEUE
        clock.advance(2.0)
        [task] = await q.take("w1", 1, 0)
        assert task == {"id": job.id, "input": {"prompt": "x"}}
        running = await q.get(job.id)
        assert running is not None and running.status is Status.IN_PROGRESS
        assert running.delay_time_ms == 2000
        progress = {"step": 5, "steps": 20, "progress": 0.25}
        await q.report(job.id, "w1", {"status": "IN_PROGRESS", "output": progress}, is_stream=False)
        assert (await q.get(job.id)).status_body()["output"] == progress  # type: ignore[union-attr]
        clock.advance(3.5)
        await q.report(job.id, "w1", {"output": [{"image": "abc", "seed": 1}]}, is_stream=False)
        body = (await q.get(job.id)).status_body()  # type: ignore[union-attr]
        assert body == {
            "id": job.id,
            "status": "COMPLETED",
            "delayTime": 2000,
            "executionTime": 3500,
            "output": [{"image": "abc", "seed": 1}],
        }

    run_with_queue(settings, clock, body)


def test_failed_job_keeps_the_error(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({})
        await q.take("w1", 1, 0)
        await q.report(
            job.id, "w1", {"error": "invalid input: width: bad (got 5)"}, is_stream=False
        )
        view = await q.get(job.id)
        assert view is not None and view.status is Status.FAILED
        assert view.error == "invalid input: width: bad (got 5)"
        assert (await q.health())["jobs"]["failed"] == 1

    run_with_queue(settings, clock, body)


def test_cancel_queued_job_never_runs(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({})
        cancelled = await q.cancel(job.id)
        assert cancelled is not None and cancelled.status is Status.CANCELLED
        assert await q.take("w1", 1, 0) == []

    run_with_queue(settings, clock, body)


def test_cancel_running_job_signals_its_worker_and_drops_late_results(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({})
        await q.take("w1", 1, 0)
        waiter = asyncio.create_task(q.stop_signals("w1", 5.0))
        await asyncio.sleep(0)
        assert (await q.cancel(job.id)).status is Status.CANCELLED  # type: ignore[union-attr]
        assert await asyncio.wait_for(waiter, 1.0) == [job.id]
        await q.report(job.id, "w1", {"output": "late"}, is_stream=False)
        assert (await q.get(job.id)).status is Status.CANCELLED  # type: ignore[union-attr]

    run_with_queue(settings, clock, body)


def test_execution_timeout_times_out_and_stops_the_worker(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({}, policy={"executionTimeout": 1000})
        await q.take("w1", 1, 0)
        clock.advance(0.9)
        await q.sweep()
        assert (await q.get(job.id)).status is Status.IN_PROGRESS  # type: ignore[union-attr]
        clock.advance(0.2)
        await q.sweep()
        view = await q.get(job.id)
        assert view is not None and view.status is Status.TIMED_OUT
        assert "1000 ms" in (view.error or "")
        assert await q.stop_signals("w1", 0) == [job.id]

    run_with_queue(settings, clock, body)


def test_ttl_counts_from_submission_then_404(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({}, policy={"ttl": 5000})
        clock.advance(4.9)
        assert await q.get(job.id) is not None
        clock.advance(0.2)
        assert await q.get(job.id) is None
        assert await q.take("w1", 1, 0) == []

    run_with_queue(settings, clock, body)


def test_ttl_expiry_stops_a_running_job(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({}, policy={"ttl": 5000})
        await q.take("w1", 1, 0)
        clock.advance(6)
        await q.sweep()
        assert await q.get(job.id) is None
        assert await q.stop_signals("w1", 0) == [job.id]

    run_with_queue(settings, clock, body)


@pytest.mark.parametrize(("sync", "keep_s"), [(False, 1800.0), (True, 60.0)])
def test_results_are_kept_30_minutes_for_run_and_1_minute_for_runsync(
    settings, clock, sync: bool, keep_s: float
) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({}, sync=sync)
        await q.take("w1", 1, 0)
        await q.report(job.id, "w1", {"output": 1}, is_stream=False)
        clock.advance(keep_s - 1)
        assert await q.get(job.id) is not None
        clock.advance(2)
        await q.sweep()
        assert await q.get(job.id) is None
        assert q.store.get(job.id) is None  # swept from disk, not only hidden

    run_with_queue(settings, clock, body)


def test_retry_only_failed_or_timed_out(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({})
        await q.take("w1", 1, 0)
        with pytest.raises(JobStateConflict, match="IN_PROGRESS"):
            await q.retry(job.id)
        await q.report(job.id, "w1", {"error": "boom"}, is_stream=False)
        again = await q.retry(job.id)
        assert again is not None and again.status is Status.IN_QUEUE and again.id == job.id
        assert again.error is None
        assert (await q.health())["jobs"]["retried"] == 1
        assert [t["id"] for t in await q.take("w2", 1, 0)] == [job.id]

    run_with_queue(settings, clock, body)


def test_purge_removes_queued_and_leaves_running(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        running = await q.submit({})
        await q.take("w1", 1, 0)
        queued = [await q.submit({"n": i}) for i in range(3)]
        assert await q.purge() == 3
        assert all([await q.get(j.id) is None for j in queued])
        assert (await q.get(running.id)).status is Status.IN_PROGRESS  # type: ignore[union-attr]

    run_with_queue(settings, clock, body)


def test_dead_worker_job_is_retried_once_then_failed(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({})
        await q.take("w1", 1, 0)
        q.worker_gone("w1", "worker process w1 exited with code -9")
        assert (await q.get(job.id)).status is Status.IN_QUEUE  # type: ignore[union-attr]
        await q.take("w2", 1, 0)
        q.worker_gone("w2", "worker process w2 exited with code -9")
        view = await q.get(job.id)
        assert view is not None and view.status is Status.FAILED
        assert view.error is not None
        assert "w2 exited with code -9" in view.error and "attempted 2 times" in view.error
        assert (await q.health())["jobs"]["retried"] == 1

    run_with_queue(settings, clock, body)


def test_restart_keeps_queued_jobs_and_results_and_retries_running(settings, clock) -> None:
    async def first(q: JobQueue) -> dict[str, str]:
        done = await q.submit({"n": "done"})
        await q.take("w1", 1, 0)
        await q.report(done.id, "w1", {"output": "ok"}, is_stream=False)
        running = await q.submit({"n": "running"})
        await q.take("w1", 1, 0)
        queued = await q.submit({"n": "queued"})
        return {"done": done.id, "running": running.id, "queued": queued.id}

    ids = run_with_queue(settings, clock, first)

    async def second(q: JobQueue) -> None:
        done = await q.get(ids["done"])
        assert done is not None and done.status is Status.COMPLETED and done.output == "ok"
        # the running job went back to the queue, behind the one that was already waiting
        taken = [t["id"] for t in await q.take("w9", 5, 0)]
        assert taken == [ids["queued"], ids["running"]]

    run_with_queue(settings, clock, second)


def test_webhook_gets_final_status_and_is_retried(settings, clock) -> None:
    posts = Posts([500, 503])

    async def body(q: JobQueue) -> None:
        job = await q.submit({}, webhook="http://127.0.0.1:9/hook")
        await q.take("w1", 1, 0)
        await q.report(job.id, "w1", {"output": {"ok": True}}, is_stream=False)
        for _ in range(100):
            if len(posts.calls) == 3:
                break
            await asyncio.sleep(0.01)
        assert len(posts.calls) == 3
        url, sent = posts.calls[-1]
        assert url == "http://127.0.0.1:9/hook"
        assert (
            sent["id"] == job.id
            and sent["status"] == "COMPLETED"
            and sent["output"] == {"ok": True}
        )

    run_with_queue(settings, clock, body, posts)


def test_webhook_gives_up_after_two_retries() -> None:
    posts = Posts([500, 500, 500, 200])
    sender = WebhookSender(retries=2, interval_s=0.0, poster=posts)
    assert asyncio.run(sender.deliver("http://h", {"id": "x"})) is False
    assert len(posts.calls) == 3


def test_stream_chunks_since_last_call_and_aggregated_output(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({})
        await q.take("w1", 1, 0)
        await q.stream_chunk(job.id, "w1", {"output": 1})
        await q.stream_chunk(job.id, "w1", {"output": 2})
        _, chunks = await q.stream(job.id)  # type: ignore[misc]
        assert chunks == [{"output": 1}, {"output": 2}]
        await q.stream_chunk(job.id, "w1", {"output": 3})
        await q.report(job.id, "w1", {"output": []}, is_stream=True)
        view, chunks = await q.stream(job.id)  # type: ignore[misc]
        assert chunks == [{"output": 3}]
        assert view.status is Status.COMPLETED and view.output == [1, 2, 3]

    run_with_queue(settings, clock, body)


def test_wait_returns_when_the_job_finishes(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        job = await q.submit({}, sync=True)
        waiter = asyncio.create_task(q.wait(job.id, 5.0))
        await q.take("w1", 1, 0)
        await q.report(job.id, "w1", {"output": 7}, is_stream=False)
        view = await asyncio.wait_for(waiter, 1.0)
        assert view is not None and view.status is Status.COMPLETED and view.output == 7

    run_with_queue(settings, clock, body)


def test_long_poll_take_wakes_on_submit(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        taker = asyncio.create_task(q.take("w1", 1, 5.0))
        await asyncio.sleep(0.01)
        job = await q.submit({"x": 1})
        tasks = await asyncio.wait_for(taker, 1.0)
        assert [t["id"] for t in tasks] == [job.id]

    run_with_queue(settings, clock, body)


def test_bad_policy_is_rejected(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        with pytest.raises(InvalidInput, match=r"policy.ttl: must be more than 0"):
            await q.submit({}, policy={"ttl": -1})

    run_with_queue(settings, clock, body)


def test_health_counts_workers(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        q.worker_seen("w1")
        q.worker_seen("w2")
        await q.submit({})
        await q.submit({})
        await q.take("w1", 1, 0)
        health = await q.health()
        assert health["workers"] == {"idle": 1, "running": 1}
        assert health["jobs"]["inProgress"] == 1 and health["jobs"]["inQueue"] == 1

    run_with_queue(settings, clock, body)


def test_store_is_in_wal_mode(settings) -> None:
    store = JobStore(settings.state_dir / "q.sqlite3")
    mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    store.close()
    assert mode == "wal"


def test_refresh_worker_records_the_result_then_retires_the_worker(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        retired: list[str] = []
        # the result is recorded before the worker is stopped
        q.on_retire = lambda w: retired.append(f"{w}:{q.store.get(job.id).status.value}")  # type: ignore[union-attr]
        job = await q.submit({"prompt": "x"})
        await q.take("w1", 1, 0)
        await q.report(job.id, "w1", {"error": "bad state", "stopPod": True}, is_stream=False)
        view = await q.get(job.id)
        assert view is not None and view.status is Status.FAILED and view.error == "bad state"
        assert retired == ["w1:FAILED"]
        # the retiring worker gets no more jobs, and its polls answer at once
        queued = await q.submit({"prompt": "y"})
        assert await asyncio.wait_for(q.take("w1", 1, 5), 1) == []
        assert await asyncio.wait_for(q.stop_signals("w1", 5), 1) == []
        assert (await q.get(queued.id)).status is Status.IN_QUEUE  # type: ignore[union-attr]
        q.worker_gone("w1", "replaced")
        assert (await q.get(job.id)).status is Status.FAILED  # type: ignore[union-attr]
        assert q.store.counter("retried") == 0
        [task] = await q.take("w2", 1, 0)
        assert task["id"] == queued.id

    run_with_queue(settings, clock, body)


def test_refresh_worker_wakes_a_pending_long_poll(settings, clock) -> None:
    async def body(q: JobQueue) -> None:
        q.on_retire = lambda w: None
        job = await q.submit({"prompt": "x"})
        await q.take("w1", 1, 0)
        poll = asyncio.create_task(q.take("w1", 1, 5))
        await asyncio.sleep(0.01)
        await q.report(job.id, "w1", {"output": {"ok": 1}, "stopPod": True}, is_stream=False)
        assert await asyncio.wait_for(poll, 1) == []
        assert (await q.get(job.id)).status is Status.COMPLETED  # type: ignore[union-attr]

    run_with_queue(settings, clock, body)
