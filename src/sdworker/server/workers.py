"""What the queue knows about the worker processes it serves: when each last answered, and the
stop signals each still has to take.

A stop signal is offered again and again, not once: the ``runpod`` worker loop drops a stop
for a job it has fetched but not yet started (its ``stop_job`` finds no task for it), and a
cancelled job would then run to its end. So an offer stands, repeated every
:data:`REOFFER_S`, until the worker shows it no longer holds the job: a job-done for it, a
job-take saying it holds nothing (``job_in_progress=0``), or the worker gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

#: how soon a stop offer is made again while the worker may still hold the job
REOFFER_S = 0.25
#: an offer nobody settles (a handler that ignores cancellation) stops after this long
OFFER_LIMIT_S = 300.0


class WorkerBoard:
    """Liveness and pending stop offers per worker id. Loop-time based (``asyncio``'s
    monotonic clock) for offers; liveness uses the queue's clock, so tests can move it."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._polls: dict[str, int] = {}
        #: worker -> job -> (loop time the offer is next due, loop time it lapses)
        self._offers: dict[str, dict[str, tuple[float, float]]] = {}
        self._ready: dict[str, asyncio.Event] = {}
        #: worker -> jobs it is asked to interrupt (taken once: the worker's own listener
        #: takes them, not the SDK's loop, so nothing drops them)
        self._interrupts: dict[str, set[str]] = {}
        self._interrupt_ready: dict[str, asyncio.Event] = {}

    # -- liveness ---------------------------------------------------------------------------

    def seen(self, worker_id: str, now: float) -> None:
        """The worker answered at ``now`` (queue clock)."""
        self._seen[worker_id] = now

    @contextlib.contextmanager
    def polling(self, worker_id: str, now: float) -> Iterator[None]:
        """Around a long poll: a worker waiting on one is alive however long it waits."""
        self.seen(worker_id, now)
        self._polls[worker_id] = self._polls.get(worker_id, 0) + 1
        try:
            yield
        finally:
            self._polls[worker_id] -= 1
            if not self._polls[worker_id]:
                del self._polls[worker_id]

    def silent_for(self, worker_id: str, now: float, default: float) -> float:
        """Seconds since the worker last answered (0 while it holds a poll open); ``default``
        is when to count from for a worker never heard of."""
        if worker_id in self._polls:
            return 0.0
        return now - self._seen.get(worker_id, default)

    def heard(self, worker_id: str) -> bool:
        """Whether the worker has answered since it started (and is not known gone)."""
        return worker_id in self._seen or worker_id in self._polls

    def alive(self, now: float, silence_s: float) -> set[str]:
        """Workers heard from within ``silence_s``."""
        return {w for w in self._seen if self.silent_for(w, now, now) < silence_s}

    def forget(self, worker_id: str) -> None:
        """The worker is gone: drop what is known of it, and answer its stop poll now."""
        self._seen.pop(worker_id, None)
        self._offers.pop(worker_id, None)
        self._interrupts.pop(worker_id, None)
        for events in (self._ready, self._interrupt_ready):
            event = events.pop(worker_id, None)
            if event is not None:
                event.set()

    # -- stop offers ------------------------------------------------------------------------

    def event(self, worker_id: str) -> asyncio.Event:
        """Set whenever the worker's stop poll should look again."""
        return self._ready.setdefault(worker_id, asyncio.Event())

    def wake(self, worker_id: str) -> None:
        self.event(worker_id).set()

    def wake_all(self) -> None:
        for event in [*self._ready.values(), *self._interrupt_ready.values()]:
            event.set()

    def offer(self, worker_id: str, job_id: str) -> None:
        """Ask the worker to stop ``job_id``, until it shows it no longer holds it."""
        now = asyncio.get_running_loop().time()
        self._offers.setdefault(worker_id, {})[job_id] = (now, now + OFFER_LIMIT_S)
        self.wake(worker_id)

    def settle(self, worker_id: str, job_id: str | None = None) -> None:
        """The worker no longer holds ``job_id`` (every job, when None): stop offering."""
        if job_id is None:
            self._offers.pop(worker_id, None)
            return
        offers = self._offers.get(worker_id)
        if offers is not None:
            offers.pop(job_id, None)

    def due(self, worker_id: str) -> tuple[list[str], float | None]:
        """Job ids to offer now (each then due again after :data:`REOFFER_S`), and the seconds
        until the next offer falls due (None when none is pending)."""
        offers = self._offers.get(worker_id)
        if not offers:
            return [], None
        now = asyncio.get_running_loop().time()
        ready = []
        for job_id, (due_at, lapses_at) in list(offers.items()):
            if now >= lapses_at:
                del offers[job_id]
            elif now >= due_at:
                ready.append(job_id)
                offers[job_id] = (now + REOFFER_S, lapses_at)
        if not offers:
            return sorted(ready), None
        return sorted(ready), max(0.0, min(d for d, _ in offers.values()) - now)

    def pending(self, worker_id: str) -> set[str]:
        """Jobs the worker is still being asked to stop (tests and diagnostics)."""
        return set(self._offers.get(worker_id, {}))

    # -- interrupts -------------------------------------------------------------------------

    def interrupt_event(self, worker_id: str) -> asyncio.Event:
        """Set whenever the worker's interrupt poll should look again."""
        return self._interrupt_ready.setdefault(worker_id, asyncio.Event())

    def ask_interrupt(self, worker_id: str, job_id: str) -> None:
        """Ask the worker to end ``job_id`` early, keeping what it made."""
        self._interrupts.setdefault(worker_id, set()).add(job_id)
        self.interrupt_event(worker_id).set()

    def take_interrupts(self, worker_id: str) -> list[str]:
        """The jobs the worker is asked to interrupt, each given once."""
        return sorted(self._interrupts.pop(worker_id, set()))
