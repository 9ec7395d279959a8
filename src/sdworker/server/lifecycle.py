"""A job's transitions over :class:`JobStore`: finish, lose, expire, time out, and the stop
signals and webhooks they send. :class:`~sdworker.server.queue.JobQueue` builds the routes'
side on top; each transition is one synchronous store call, so none interleaves with another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sdworker.core.jobs import Status
from sdworker.core.netguard import FetchPolicy
from sdworker.core.settings import Settings
from sdworker.server.clock import Clock, SystemClock
from sdworker.server.files import FileStore
from sdworker.server.store import JobRecord, JobStore
from sdworker.server.webhooks import WebhookSender
from sdworker.server.workers import WorkerBoard

log = logging.getLogger("sdworker.server.queue")


class JobLifecycle:
    """The state every transition touches, and the transitions themselves."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: JobStore | None = None,
        clock: Clock | None = None,
        webhooks: WebhookSender | None = None,
        files: FileStore | None = None,
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
        self.board = WorkerBoard()
        #: set by the supervisor: kills a worker that stopped answering (its jobs are requeued)
        self.on_lost: Callable[[str], None] | None = None
        self._job_ready = asyncio.Event()
        self._finished: dict[str, asyncio.Event] = {}
        self._retiring: set[str] = set()

    def worker_gone(self, worker_id: str, reason: str) -> None:
        """A worker process died: its jobs are retried once, then failed."""
        self.board.forget(worker_id)
        self._retiring.discard(worker_id)
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
        self._find_lost(now)

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
        if job.worker_id is not None:
            self.board.offer(job.worker_id, job.id)

    def _notify(self, job_id: str) -> None:
        event = self._finished.pop(job_id, None)
        if event is not None:
            event.set()
