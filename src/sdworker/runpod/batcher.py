"""Cross-request batching as a small generic leaf: entries wait, compatible ones run together.

Each waiting entry has a key (None: it runs alone) and a size (its images). The oldest waiting
entry opens a window of ``window_s``: entries with its key that arrive in it, or that queued up
while the previous batch ran, join it, up to ``max_images``. One batch runs at a time, in a
thread, oldest entry first: so the device never runs two batches at once, and with
``max_images`` 1 every entry runs alone, in arrival order. Arrival is a :meth:`Batcher.ticket`
taken when the job reached the worker, so a job whose preparation (decoding, downloading) ends
late keeps its place among those waiting; it does not hold up the ones ready before it.

A cancelled entry leaves at once; the others run on. :class:`Batcher` knows nothing of what it
runs: ``execute`` gets the entries of a batch and answers each.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Entry:
    """One job waiting for, or running in, a batch."""

    payload: Any
    key: Hashable | None
    size: int
    arrived: float
    ticket: int = 0
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    cancelled: threading.Event = field(default_factory=threading.Event)


#: runs a batch (in a thread) and returns one result per entry, in order
Execute = Callable[[list[Entry]], list[Any]]


class Batcher:
    """Collects entries into batches and runs them one batch at a time, oldest job first."""

    def __init__(
        self,
        execute: Execute,
        *,
        max_images: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._execute = execute
        self.max_images = max_images
        self.window_s = window_s
        self._clock = clock
        self._pending: list[Entry] = []
        self._arrived = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tickets = itertools.count()

    def ticket(self) -> int:
        """A place in line, taken when a job arrives (before it is prepared)."""
        return next(self._tickets)

    async def submit(
        self, payload: Any, key: Hashable | None, size: int, *, ticket: int | None = None
    ) -> Any:
        """Queue ``payload`` (at its ``ticket``'s place; a new one by default) and wait for its
        own result; cancelling the caller leaves the batch (the entry's ``cancelled`` event
        tells a batch already running)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # the worker loop runs one event loop for its life; tests and scripts may run more
            self._loop, self._pending, self._arrived, self._drainer = (
                loop,
                [],
                asyncio.Event(),
                None,
            )
        place = self.ticket() if ticket is None else ticket
        entry = Entry(payload, key, size, self._clock(), place)
        bisect.insort(self._pending, entry, key=lambda e: e.ticket)
        self._arrived.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        try:
            return await asyncio.shield(entry.future)
        except asyncio.CancelledError:
            entry.cancelled.set()
            if entry in self._pending:
                self._pending.remove(entry)
            raise

    async def _drain(self) -> None:
        while self._pending:
            batch = await self._gather(self._pending[0])
            for entry in batch:
                self._pending.remove(entry)
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self._execute, batch)
            except Exception as exc:  # execute answers per job; this is a bug, fail the batch
                log.exception("batch of %d jobs failed", len(batch))
                results = [exc] * len(batch)
            for entry, result in zip(batch, results, strict=True):
                if entry.future.done():
                    continue
                if isinstance(result, BaseException):
                    entry.future.set_exception(result)
                else:
                    entry.future.set_result(result)

    def _company(self, first: Entry) -> list[Entry]:
        group, images = [first], first.size
        if first.key is None:
            return group
        for entry in self._pending:
            if entry is first or entry.key != first.key:
                continue
            if images + entry.size <= self.max_images:
                group.append(entry)
                images += entry.size
        return group

    async def _gather(self, first: Entry) -> list[Entry]:
        """``first`` and the compatible jobs that arrive within its window (or fill a batch)."""
        while True:
            if first not in self._pending:  # cancelled while it waited
                return []
            group = self._company(first)
            full = sum(e.size for e in group) >= self.max_images
            remaining = first.arrived + self.window_s - self._clock()
            if first.key is None or full or remaining <= 0:
                return group
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
