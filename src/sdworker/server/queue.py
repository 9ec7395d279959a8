"""The job queue: what the routes and the workers ask of the jobs, over :class:`JobStore`.

It is the :class:`~sdworker.core.jobs.JobGateway` of the client routes and the
job-take / job-done / job-stream / job-stop side of the ``runpod`` worker loop, and it sweeps
for expired results and TTLs, long runs and silent workers. The transitions themselves (and
the stop signals, webhooks and wake-ups they set off) are its :class:`JobLifecycle`'s.
Everything runs on one event loop, so each state change is a single synchronous store call
with no ``await`` in between: no two coroutines can interleave inside a transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sdworker.core import secrets, strictjson
from sdworker.core.errors import InvalidInput, JobStateConflict
from sdworker.core.jobs import JobGateway, JobView, Status
from sdworker.core.settings import Settings
from sdworker.server.auth import file_signature
from sdworker.server.clock import Clock
from sdworker.server.files import FileStore
from sdworker.server.lifecycle import JobLifecycle
from sdworker.server.policy import check_policy
from sdworker.server.store import JobRecord, JobStore
from sdworker.server.webhooks import WebhookSender

log = logging.getLogger(__name__)

#: how long a worker may go without polling before /health stops counting it
_WORKER_SILENCE_S = 30.0


class JobQueue(JobGateway):
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
        self.lifecycle = JobLifecycle(
            settings, store=store, clock=clock, webhooks=webhooks, files=files
        )
        self.settings = settings
        self.store = self.lifecycle.store
        self.clock = self.lifecycle.clock
        self.webhooks = self.lifecycle.webhooks
        self.files = self.lifecycle.files
        self.board = self.lifecycle.board
        #: prefixes file URLs; without it they are relative to the requesting client's base URL
        self.public_url = public_url.rstrip("/") if public_url else None
        #: set by the supervisor: stops a worker whose handler asked to be replaced
        self.on_retire: Callable[[str], None] | None = None
        #: set by the supervisor: kills a worker that stopped answering (its jobs are requeued)
        self.on_lost: Callable[[str], None] | None = None
        self._retiring: set[str] = set()
        #: job id -> the secrets its input carried (a LoRA's token): in memory only, never
        #: in the store (sdworker.core.secrets)
        self._secrets: dict[str, secrets.Secrets] = {}
        self._closing = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle of the queue itself ------------------------------------------------------

    async def start(self) -> None:
        """Recover jobs a previous server left running, then sweep in the background."""
        for job in self.store.select("status = ?", [Status.IN_PROGRESS.value]):
            self.lifecycle.lost(job, "the server stopped while the job was running")
        self._sweeper = asyncio.create_task(self._sweep_forever())

    def release_polls(self) -> None:
        """Answer every worker long-poll now, and later ones at once (the server is stopping)."""
        self._closing.set()
        self.lifecycle.job_ready.set()
        self.board.wake_all()

    async def close(self) -> None:
        """Release every long-poll, stop sweeping, flush webhooks, close the database."""
        self.release_polls()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.webhooks.close()
        self.store.close()

    def worker_gone(self, worker_id: str, reason: str) -> None:
        """A worker process died: its jobs are retried once, then failed."""
        self.board.forget(worker_id)
        self._retiring.discard(worker_id)
        held = self.store.select(
            "status = ? AND worker_id = ?", [Status.IN_PROGRESS.value, worker_id]
        )
        for job in held:
            self.lifecycle.lost(job, reason)

    # -- time-based behaviour ---------------------------------------------------------------

    async def sweep(self) -> None:
        """Expire results and TTLs, time out long runs. Called periodically; tests call it."""
        now = self.clock.now()
        for job in self.store.select("expires_at <= ?", [now]):
            self.lifecycle.expire(job)
        for job in self.store.select(
            "status = ? AND timeout_at <= ?", [Status.IN_PROGRESS.value, now]
        ):
            limit_ms = round((job.timeout_at or now) * 1000 - (job.started_at or now) * 1000)
            error = f"execution timeout exceeded ({limit_ms} ms)"
            self.lifecycle.finish(job, Status.TIMED_OUT, error=error)
        self._find_lost(now)
        # a job's secrets last as long as the job may still run (a failed one may be retried)
        for job_id in list(self._secrets):
            held = self.lifecycle.live(job_id)
            if held is None or held.status in (Status.COMPLETED, Status.CANCELLED):
                del self._secrets[job_id]

    def _find_lost(self, now: float) -> None:
        """A worker that holds a job and has not answered for ``worker_lost_s`` (no poll: the
        SDK polls its stop channel even while a job runs) is lost: it is stopped for good and
        its jobs are retried or failed, as if its process had died."""
        limit = self.settings.worker_lost_s
        if limit <= 0:
            return
        running = self.store.select("status = ?", [Status.IN_PROGRESS.value])
        silent = {
            job.worker_id: self.board.silent_for(job.worker_id, now, job.started_at or now)
            for job in running
            if job.worker_id is not None
        }
        for worker_id, seconds in silent.items():
            if seconds > limit:
                if self.on_lost is not None:
                    self.on_lost(worker_id)
                self.worker_gone(
                    worker_id, f"worker {worker_id} did not answer for {seconds:.0f} s"
                )

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:  # a bad sweep must not stop the next one
                log.exception("queue sweep failed")

    # -- the client side (JobGateway) -------------------------------------------------------

    async def submit(
        self,
        job_input: dict[str, Any],
        *,
        webhook: str | None = None,
        policy: dict[str, Any] | None = None,
        sync: bool = False,
    ) -> JobView:
        """Queue a job (IN_QUEUE); its TTL counts from now.

        An input JSON cannot carry (NaN, infinity, a lone surrogate) is refused here, for every
        route: no worker could post the result of such a job, so it would never end."""
        policy = check_policy(policy)
        found = strictjson.find(job_input, "input")
        if found is not None:
            raise InvalidInput.one(found[0], found[1], has_value=False)
        now = self.clock.now()
        ttl_s = policy["ttl"] / 1000.0 if "ttl" in policy else self.settings.job_ttl_s
        stored, kept = secrets.split(job_input)
        job = JobRecord(
            id=f"{'sync-' if sync else ''}{uuid.uuid4()}",
            status=Status.IN_QUEUE,
            input=stored,
            created_at=now,
            queued_at=now,
            expires_at=now + ttl_s,
            webhook=webhook,
            policy=policy,
            sync=sync,
        )
        if kept:
            self._secrets[job.id] = kept
        self.store.insert(job)
        self.lifecycle.job_ready.set()
        return job.view()

    async def get(self, job_id: str) -> JobView | None:
        job = self.lifecycle.live(job_id)
        return job.view() if job else None

    async def wait(self, job_id: str, timeout_s: float) -> JobView | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            job = self.lifecycle.live(job_id)
            if job is None or job.status.is_terminal():
                return job.view() if job else None
            remaining = deadline - loop.time()
            if remaining <= 0:
                return job.view()
            event = self.lifecycle.finished(job_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def cancel(self, job_id: str) -> JobView | None:
        job = self.lifecycle.live(job_id)
        if job is None or job.status.is_terminal():
            return job.view() if job else None
        self.lifecycle.finish(job, Status.CANCELLED)
        return await self.get(job_id)

    async def interrupt(self, job_id: str) -> JobView | None:
        """Cancel a queued job; ask a running one to stop early and end COMPLETED with what
        it made (the worker's interrupt listener hears it; see :meth:`interrupt_signals`)."""
        job = self.lifecycle.live(job_id)
        if job is None or job.status.is_terminal():
            return job.view() if job else None
        if job.status is Status.IN_QUEUE:
            return await self.cancel(job_id)
        if job.worker_id is not None:
            self.board.ask_interrupt(job.worker_id, job_id)
        return job.view()

    async def retry(self, job_id: str) -> JobView | None:
        """Send a FAILED or TIMED_OUT job back to the queue under the same id."""
        job = self.lifecycle.live(job_id)
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
        self.lifecycle.job_ready.set()
        return await self.get(job_id)

    async def purge(self) -> int:
        """Drop every queued job; running ones are untouched."""
        ids = self.store.purge_queued()
        for job_id in ids:
            self.lifecycle.notify(job_id)
        return len(ids)

    async def stream(self, job_id: str) -> tuple[JobView, list[Any]] | None:
        """The job and the stream chunks produced since the last call."""
        job = self.lifecycle.live(job_id)
        if job is None:
            return None
        return job.view(), self.store.take_chunks(job_id)

    async def health(self) -> dict[str, Any]:
        counts = self.store.counts()
        now = self.clock.now()
        alive = self.board.alive(now, _WORKER_SILENCE_S)
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
        self.board.seen(worker_id, self.clock.now())

    async def take(
        self, worker_id: str, count: int, wait_s: float, *, holding: bool | None = None
    ) -> list[dict[str, Any]]:
        """Long-poll for up to ``count`` jobs; an empty list after ``wait_s`` means none.

        ``holding`` is the SDK's ``job_in_progress``: False means the worker holds no job
        any more, so no stop offer to it needs repeating."""
        if holding is False:
            self.board.settle(worker_id)
        with self.board.polling(worker_id, self.clock.now()):
            return await self._take(worker_id, count, wait_s)

    async def _take(self, worker_id: str, count: int, wait_s: float) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not self._closing.is_set() and worker_id not in self._retiring:
            self.worker_seen(worker_id)
            self.lifecycle.job_ready.clear()
            jobs = self.store.claim(
                worker_id, count, self.clock.now(), self.settings.execution_timeout_s
            )
            if jobs:
                # there may be more: let the next waiting worker look too
                self.lifecycle.job_ready.set()
                return [self._task(job) for job in jobs]
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lifecycle.job_ready.wait(), remaining)
        return []

    def _task(self, job: JobRecord) -> dict[str, Any]:
        """The job as a worker takes it: its input with its secrets back in."""
        task = job.as_task()
        kept = self._secrets.get(job.id)
        if kept:
            task["input"] = secrets.join(task["input"], kept)
        return task

    async def report(
        self, job_id: str, worker_id: str, payload: dict[str, Any], *, is_stream: bool
    ) -> None:
        """A result or a progress update from the worker holding the job; stale ones are dropped.

        A result with ``stopPod`` (the handler returned ``refresh_worker``) is recorded like
        any other, then its worker is retired: hosted RunPod replaces such a worker.
        """
        if payload.get("status") != Status.IN_PROGRESS.value:
            self.board.settle(worker_id, job_id)  # the worker is done with it, whatever it was
        job = self.lifecycle.held(job_id, worker_id)
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
            self.lifecycle.finish(job, Status.FAILED, error=error, output=payload.get("output"))
            return
        output = payload.get("output")
        if is_stream and not output:
            output = [chunk.get("output") for chunk in self.store.all_chunks(job.id)]
        self.lifecycle.finish(job, Status.COMPLETED, output=output)

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
        self.lifecycle.job_ready.set()
        self.board.wake(worker_id)
        self.on_retire(worker_id)

    async def stream_chunk(self, job_id: str, worker_id: str, payload: dict[str, Any]) -> None:
        if self.lifecycle.held(job_id, worker_id) is not None:
            self.store.add_chunk(job_id, payload)

    async def stop_signals(self, worker_id: str, wait_s: float) -> list[str]:
        """Long-poll for ids of jobs this worker must stop (cancelled, timed out, expired);
        each is offered again until the worker shows it let go (see :mod:`.workers`)."""
        with self.board.polling(worker_id, self.clock.now()):
            return await self._stop_signals(worker_id, wait_s)

    async def _stop_signals(self, worker_id: str, wait_s: float) -> list[str]:
        def due() -> tuple[list[str], float | None]:
            self.worker_seen(worker_id)
            return self.board.due(worker_id)

        return await self._long_poll(worker_id, wait_s, self.board.event, due)

    async def interrupt_signals(self, worker_id: str, wait_s: float) -> list[str]:
        """Long-poll for ids of jobs this worker must interrupt (a local-endpoint extension:
        the worker's own listener polls it, beside the SDK's stop channel)."""

        def asked() -> tuple[list[str], float | None]:
            return self.board.take_interrupts(worker_id), None

        return await self._long_poll(worker_id, wait_s, self.board.interrupt_event, asked)

    async def _long_poll(
        self,
        worker_id: str,
        wait_s: float,
        event_of: Callable[[str], asyncio.Event],
        look: Callable[[], tuple[list[str], float | None]],
    ) -> list[str]:
        """A worker's signal poll: ``look`` (the ids for it now, and in how many seconds it
        should look again, if sooner than the poll's end) until it finds some, the worker
        retires, the endpoint closes or ``wait_s`` runs out; ``event_of`` wakes it early."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not self._closing.is_set():
            event = event_of(worker_id)
            event.clear()
            ids, next_due = look()
            if ids:
                return ids
            if worker_id in self._retiring:
                break  # let a worker that is shutting down stop polling at once
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if next_due is not None:
                remaining = min(remaining, next_due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
        return []

    def refuse_result(self, job_id: str, worker_id: str, reason: str) -> None:
        """A job-done the server cannot read: the job fails with ``reason`` rather than wait
        for a result that will never come in a readable form."""
        self.board.settle(worker_id, job_id)
        job = self.lifecycle.held(job_id, worker_id)
        if job is not None:
            log.warning("job %s: unreadable result from %s: %s", job_id, worker_id, reason)
            self.lifecycle.finish(
                job, Status.FAILED, error=f"the worker's result could not be read: {reason}"
            )


def _error_text(error: Any) -> str:
    return error if isinstance(error, str) else str(error)
