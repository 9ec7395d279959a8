"""A job's transitions over :class:`JobStore`: finish, lose, expire, and what each sets off
(the stop signal to the worker holding the job, the webhook, the counters, the calls waiting
on the job). :class:`~sdworker.server.queue.JobQueue` holds one and calls it from its client
and worker sides and from its sweep; each transition is one synchronous store call, so none
interleaves with another.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sdworker.core.jobs import Status
from sdworker.core.netguard import FetchPolicy
from sdworker.core.settings import Settings
from sdworker.server.clock import Clock, SystemClock
from sdworker.server.files import FileStore
from sdworker.server.store import JobRecord, JobStore
from sdworker.server.webhooks import WebhookSender
from sdworker.server.workers import WorkerBoard

log = logging.getLogger(__name__)


class JobLifecycle:
    """The state every transition touches (the store, the clock, the workers' board, the
    webhook sender, the result files), and the transitions themselves."""

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
        #: set whenever a job may be ready to take (submitted, requeued)
        self.job_ready = asyncio.Event()
        self._finished: dict[str, asyncio.Event] = {}

    def live(self, job_id: str) -> JobRecord | None:
        """The job unless unknown or past its expiry (expired ones are removed on sight)."""
        job = self.store.get(job_id)
        if job is not None and job.expires_at <= self.clock.now():
            self.expire(job)
            return None
        return job

    def held(self, job_id: str, worker_id: str) -> JobRecord | None:
        """The job if ``worker_id`` runs it now; a report about any other is stale."""
        job = self.store.get(job_id)
        if job is None or job.status is not Status.IN_PROGRESS or job.worker_id != worker_id:
            log.debug("dropping a stale report for job %s from %s", job_id, worker_id)
            return None
        return job

    def finished(self, job_id: str) -> asyncio.Event:
        """The event set when the job next ends or goes away."""
        return self._finished.setdefault(job_id, asyncio.Event())

    def finish(
        self, job: JobRecord, status: Status, *, output: Any = None, error: str | None = None
    ) -> bool:
        """End ``job`` with a terminal ``status``; False when another transition won."""
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
            self.signal_stop(job)
        if status is Status.COMPLETED:
            self.store.incr("completed")
        elif status in (Status.FAILED, Status.TIMED_OUT):
            self.store.incr("failed")
        self.notify(job.id)
        if job.webhook:
            final = self.store.get(job.id)
            if final is not None:
                self.webhooks.send(job.webhook, final.view().status_body())
        return True

    def lost(self, job: JobRecord, reason: str) -> None:
        """The worker running ``job`` is gone: requeue it, or fail it after the last attempt."""
        if job.attempts < self.settings.job_attempts:
            log.warning("job %s: %s; retrying it", job.id, reason)
            self.store.requeue(job.id, self.clock.now())
            self.store.incr("retried")
            self.job_ready.set()
            return
        self.finish(
            job,
            Status.FAILED,
            error=f"worker lost: {reason}; the job was attempted {job.attempts} times",
        )

    def expire(self, job: JobRecord) -> None:
        """Forget ``job`` and its files (its TTL or its result's retention passed)."""
        if job.status is Status.IN_PROGRESS:
            self.signal_stop(job)
        self.store.delete(job.id)
        self.files.delete(job.id)
        self.notify(job.id)

    def signal_stop(self, job: JobRecord) -> None:
        """Tell the worker holding ``job`` to stop it (offered until the worker lets go)."""
        if job.worker_id is not None:
            self.board.offer(job.worker_id, job.id)

    def notify(self, job_id: str) -> None:
        """Wake the calls waiting on ``job_id``."""
        event = self._finished.pop(job_id, None)
        if event is not None:
            event.set()
