"""The job queue: lifecycle, retention, timeouts, stop signals and webhooks over :class:`JobStore`.

It implements :class:`~sdworker.core.jobs.JobGateway` for the client routes and the
job-take / job-done / job-stream / job-stop side for the ``runpod`` worker loop. Everything
runs on one event loop, so each state change is a single synchronous store call with no
``await`` in between: no two coroutines can interleave inside a transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sdworker.core.errors import InvalidInput, JobStateConflict, Problem
from sdworker.core.jobs import JobView, Status
from sdworker.core.netguard import FetchPolicy
from sdworker.core.settings import Settings
from sdworker.server.auth import file_signature
from sdworker.server.clock import Clock, SystemClock
from sdworker.server.files import FileStore
from sdworker.server.store import JobRecord, JobStore
from sdworker.server.webhooks import WebhookSender

log = logging.getLogger(__name__)

#: how long a worker may go without polling before /health stops counting it
_WORKER_SILENCE_S = 30.0


class JobQueue:
    """The durable queue behind every route; one per server."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: JobStore | None = None,
        clock: Clock | None = None,
        webhooks: WebhookSender | None = None,
        files: FileStore | None = None,
        public_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or JobStore(settings.state_dir / "queue.sqlite3")
        self.clock = clock or SystemClock()
        self.webhooks = webhooks or WebhookSender(
            retries=settings.webhook_retries,
            interval_s=settings.webhook_interval_s,
            policy=FetchPolicy(
                allow_private=settings.allow_private_urls, timeout_s=10.0, max_bytes=64 * 1024
            ),
        )
        self.files = files or FileStore(settings.state_dir / "files")
        #: prefixes file URLs; without it they are relative to the requesting client's base URL
        self.public_url = public_url.rstrip("/") if public_url else None
        self._job_ready = asyncio.Event()
        self._finished: dict[str, asyncio.Event] = {}
        self._stops: dict[str, set[str]] = {}
        self._stop_ready: dict[str, asyncio.Event] = {}
        self._workers: dict[str, float] = {}
        self._retiring: set[str] = set()
        #: set by the supervisor: stops a worker whose handler asked to be replaced
        self.on_retire: Callable[[str], None] | None = None
        self._closing = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle of the queue itself ------------------------------------------------------

    async def start(self) -> None:
        """Recover jobs a previous server left running, then sweep in the background."""
        for job in self.store.select("status = ?", [Status.IN_PROGRESS.value]):
            self._lost(job, "the server stopped while the job was running")
        self._sweeper = asyncio.create_task(self._sweep_forever())

    def release_polls(self) -> None:
        """Answer every worker long-poll now, and later ones at once (the server is stopping)."""
        self._closing.set()
        self._job_ready.set()
        for event in self._stop_ready.values():
            event.set()

    async def close(self) -> None:
        """Release every long-poll, stop sweeping, flush webhooks, close the database."""
        self.release_polls()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.webhooks.close()
        self.store.close()

    # -- the client side (JobGateway) -------------------------------------------------------

    async def submit(
        self,
        job_input: dict[str, Any],
        *,
        webhook: str | None = None,
        policy: dict[str, Any] | None = None,
        sync: bool = False,
    ) -> JobView:
        """Queue a job (IN_QUEUE); its TTL counts from now."""
        policy = _check_policy(policy or {})
        now = self.clock.now()
        ttl_s = policy["ttl"] / 1000.0 if "ttl" in policy else self.settings.job_ttl_s
        job = JobRecord(
            id=f"{'sync-' if sync else ''}{uuid.uuid4()}",
            status=Status.IN_QUEUE,
            input=job_input,
            created_at=now,
            queued_at=now,
            expires_at=now + ttl_s,
            webhook=webhook,
            policy=policy,
            sync=sync,
        )
        self.store.insert(job)
        self._job_ready.set()
        return job.view()

    async def get(self, job_id: str) -> JobView | None:
        job = self._live(job_id)
        return job.view() if job else None

    async def wait(self, job_id: str, timeout_s: float) -> JobView | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            job = self._live(job_id)
            if job is None or job.status.is_terminal():
                return job.view() if job else None
            remaining = deadline - loop.time()
            if remaining <= 0:
                return job.view()
            event = self._finished.setdefault(job_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def cancel(self, job_id: str) -> JobView | None:
        job = self._live(job_id)
        if job is None or job.status.is_terminal():
            return job.view() if job else None
        self._finish(job, Status.CANCELLED)
        return await self.get(job_id)

    async def retry(self, job_id: str) -> JobView | None:
        """Send a FAILED or TIMED_OUT job back to the queue under the same id."""
        job = self._live(job_id)
        if job is None:
            return None
        if job.status not in (Status.FAILED, Status.TIMED_OUT):
            raise JobStateConflict(
                f"only FAILED or TIMED_OUT jobs can be retried; job {job_id} is {job.status.value}"
            )
        now = self.clock.now()
        self.store.requeue(job_id, now)
        ttl_s = job.policy["ttl"] / 1000.0 if "ttl" in job.policy else self.settings.job_ttl_s
        self.store.update(job_id, attempts=0, expires_at=now + ttl_s)
        self.store.incr("retried")
        self._job_ready.set()
        return await self.get(job_id)

    async def purge(self) -> int:
        """Drop every queued job; running ones are untouched."""
        ids = self.store.purge_queued()
        for job_id in ids:
            self._notify(job_id)
        return len(ids)

    async def stream(self, job_id: str) -> tuple[JobView, list[Any]] | None:
        """The job and the stream chunks produced since the last call."""
        job = self._live(job_id)
        if job is None:
            return None
        return job.view(), self.store.take_chunks(job_id)

    async def health(self) -> dict[str, Any]:
        counts = self.store.counts()
        now = self.clock.now()
        alive = {w for w, seen in self._workers.items() if now - seen < _WORKER_SILENCE_S}
        running = len(alive & self.store.running_workers())
        return {
            "jobs": {
                "completed": self.store.counter("completed"),
                "failed": self.store.counter("failed"),
                "inProgress": counts.get(Status.IN_PROGRESS, 0),
                "inQueue": counts.get(Status.IN_QUEUE, 0),
                "retried": self.store.counter("retried"),
            },
            "workers": {"idle": len(alive) - running, "running": running},
        }

    async def queue_position(self, job_id: str) -> int | None:
        return self.store.queue_position(job_id)

    async def store_file(self, job_id: str, name: str, data: bytes, content_type: str) -> str:
        """Keep the file; its URL is absolute under ``public_url`` when one was given, else
        relative (no leading slash) so the route resolves it against the request's base URL:
        a client that reached this server by some address can fetch the file by the same."""
        path = self.files.save(job_id, name, data, content_type)
        endpoint = self.settings.endpoint_id
        url = f"v2/{endpoint}/files/{job_id}/{path.name}"
        if self.public_url is not None:
            url = f"{self.public_url}/{url}"
        if self.settings.api_key:
            url += "?sig=" + file_signature(self.settings.api_key, job_id, path.name)
        return url

    # -- the worker side --------------------------------------------------------------------

    def worker_seen(self, worker_id: str) -> None:
        self._workers[worker_id] = self.clock.now()

    async def take(self, worker_id: str, count: int, wait_s: float) -> list[dict[str, Any]]:
        """Long-poll for up to ``count`` jobs; an empty list after ``wait_s`` means none."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not self._closing.is_set() and worker_id not in self._retiring:
            self.worker_seen(worker_id)
            self._job_ready.clear()
            jobs = self.store.claim(
                worker_id, count, self.clock.now(), self.settings.execution_timeout_s
            )
            if jobs:
                # there may be more: let the next waiting worker look too
                self._job_ready.set()
                return [job.as_task() for job in jobs]
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._job_ready.wait(), remaining)
        return []

    async def report(
        self, job_id: str, worker_id: str, payload: dict[str, Any], *, is_stream: bool
    ) -> None:
        """A result or a progress update from the worker holding the job; stale ones are dropped.

        A result with ``stopPod`` (the handler returned ``refresh_worker``) is recorded like
        any other, then its worker is retired: hosted RunPod replaces such a worker.
        """
        job = self._held(job_id, worker_id)
        if job is not None:
            self._record(job, payload, is_stream=is_stream)
        if payload.get("stopPod"):
            self._retire(worker_id)

    def _record(self, job: JobRecord, payload: dict[str, Any], *, is_stream: bool) -> None:
        if payload.get("status") == Status.IN_PROGRESS.value:
            self.store.update(job.id, only_if=Status.IN_PROGRESS, progress=payload.get("output"))
            return
        if payload.get("error"):
            # the output of a failed job carries the failure as data (code, problems)
            error = _error_text(payload["error"])
            self._finish(job, Status.FAILED, error=error, output=payload.get("output"))
            return
        output = payload.get("output")
        if is_stream and not output:
            output = [chunk.get("output") for chunk in self.store.all_chunks(job.id)]
        self._finish(job, Status.COMPLETED, output=output)

    def _retire(self, worker_id: str) -> None:
        """Give the worker no more jobs, answer its long polls now, and have it stopped."""
        if self.on_retire is None:
            # nothing here manages that process (an external worker): it keeps running
            log.warning("worker %s asked to be replaced, but no supervisor runs it", worker_id)
            return
        if worker_id in self._retiring:
            return
        log.info("worker %s asked to be replaced after its job", worker_id)
        self._retiring.add(worker_id)
        self._job_ready.set()
        self._stop_ready.setdefault(worker_id, asyncio.Event()).set()
        self.on_retire(worker_id)

    async def stream_chunk(self, job_id: str, worker_id: str, payload: dict[str, Any]) -> None:
        if self._held(job_id, worker_id) is not None:
            self.store.add_chunk(job_id, payload)

    async def stop_signals(self, worker_id: str, wait_s: float) -> list[str]:
        """Long-poll for ids of jobs this worker must stop (cancelled, timed out, expired)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not self._closing.is_set():
            self.worker_seen(worker_id)
            pending = self._stops.pop(worker_id, None)
            if pending:
                return sorted(pending)
            if worker_id in self._retiring:
                break  # let a worker that is shutting down stop polling at once
            event = self._stop_ready.setdefault(worker_id, asyncio.Event())
            event.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
        return []

    def worker_gone(self, worker_id: str, reason: str) -> None:
        """A worker process died: its jobs are retried once, then failed."""
        self._workers.pop(worker_id, None)
        self._retiring.discard(worker_id)
        self._stops.pop(worker_id, None)
        self._stop_ready.pop(worker_id, None)
        held = self.store.select(
            "status = ? AND worker_id = ?", [Status.IN_PROGRESS.value, worker_id]
        )
        for job in held:
            self._lost(job, reason)

    # -- time-based behaviour ---------------------------------------------------------------

    async def sweep(self) -> None:
        """Expire results and TTLs, time out long runs. Called periodically; tests call it."""
        now = self.clock.now()
        for job in self.store.select("expires_at <= ?", [now]):
            self._expire(job)
        for job in self.store.select(
            "status = ? AND timeout_at <= ?", [Status.IN_PROGRESS.value, now]
        ):
            limit_ms = round((job.timeout_at or now) * 1000 - (job.started_at or now) * 1000)
            self._finish(job, Status.TIMED_OUT, error=f"execution timeout exceeded ({limit_ms} ms)")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:  # a bad sweep must not stop the next one
                log.exception("queue sweep failed")

    # -- transitions ------------------------------------------------------------------------

    def _live(self, job_id: str) -> JobRecord | None:
        """The job unless unknown or past its expiry (expired ones are removed on sight)."""
        job = self.store.get(job_id)
        if job is not None and job.expires_at <= self.clock.now():
            self._expire(job)
            return None
        return job

    def _held(self, job_id: str, worker_id: str) -> JobRecord | None:
        job = self.store.get(job_id)
        if job is None or job.status is not Status.IN_PROGRESS or job.worker_id != worker_id:
            log.debug("dropping a stale report for job %s from %s", job_id, worker_id)
            return None
        return job

    def _finish(
        self, job: JobRecord, status: Status, *, output: Any = None, error: str | None = None
    ) -> bool:
        now = self.clock.now()
        retention = self.settings.runsync_ttl_s if job.sync else self.settings.result_ttl_s
        done = self.store.update(
            job.id,
            only_if=job.status,
            status=status,
            output=output,
            error=error,
            progress=None,
            finished_at=now,
            expires_at=now + retention,
        )
        if not done:
            return False  # another transition won the race; it has notified
        if job.status is Status.IN_PROGRESS and status not in (Status.COMPLETED, Status.FAILED):
            self._signal_stop(job)
        if status is Status.COMPLETED:
            self.store.incr("completed")
        elif status in (Status.FAILED, Status.TIMED_OUT):
            self.store.incr("failed")
        self._notify(job.id)
        if job.webhook:
            final = self.store.get(job.id)
            if final is not None:
                self.webhooks.send(job.webhook, final.view().status_body())
        return True

    def _lost(self, job: JobRecord, reason: str) -> None:
        """The worker running ``job`` is gone: requeue it, or fail it after the last attempt."""
        if job.attempts < self.settings.job_attempts:
            log.warning("job %s: %s; retrying it", job.id, reason)
            self.store.requeue(job.id, self.clock.now())
            self.store.incr("retried")
            self._job_ready.set()
            return
        self._finish(
            job,
            Status.FAILED,
            error=f"worker lost: {reason}; the job was attempted {job.attempts} times",
        )

    def _expire(self, job: JobRecord) -> None:
        if job.status is Status.IN_PROGRESS:
            self._signal_stop(job)
        self.store.delete(job.id)
        self.files.delete(job.id)
        self._notify(job.id)

    def _signal_stop(self, job: JobRecord) -> None:
        if job.worker_id is None:
            return
        self._stops.setdefault(job.worker_id, set()).add(job.id)
        self._stop_ready.setdefault(job.worker_id, asyncio.Event()).set()

    def _notify(self, job_id: str) -> None:
        event = self._finished.pop(job_id, None)
        if event is not None:
            event.set()


def _check_policy(policy: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(policy, dict):
        raise InvalidInput.one("policy", "must be an object", policy)
    problems = []
    for key in ("executionTimeout", "ttl"):
        value = policy.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append(Problem(f"policy.{key}", "must be a positive number of ms", value))
    if problems:
        raise InvalidInput(problems)
    return {k: v for k, v in policy.items() if v is not None}


def _error_text(error: Any) -> str:
    return error if isinstance(error, str) else str(error)
