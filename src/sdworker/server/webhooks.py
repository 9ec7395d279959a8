"""Webhook delivery: POST the final status body, retried as hosted RunPod does (2 retries,
10 s apart), through the same address guard as image URLs (:mod:`sdworker.core.netguard`): a
webhook never reaches a loopback or private address unless the operator allows them.

The same sender carries webhooks that report a job as it goes, as Replicate's do: each POST is
an *event* (``start``, ``output``, ``logs``, then the final ``completed``) of a *key* (one
prediction), sent only when the subscription's filter wants it (``webhook_events_filter``).
A key's deliveries arrive in the order they were sent; an event before the final one is tried
once, and dropped when the key's previous one began less than ``event_interval_s`` ago
(Replicate sends them at most every 500 ms), while the final one is never throttled and is
retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any
from urllib.parse import urlsplit

from sdworker.core.netguard import FetchError, FetchPolicy, UrlRefused, request

log = logging.getLogger(__name__)

Poster = Callable[[str, dict[str, Any]], Awaitable[int]]
#: the event a final status body is (RunPod's only webhook; Replicate's ``completed``)
FINAL = "completed"
#: the least time between two events of one key before the final one (Replicate's)
EVENT_INTERVAL_S = 0.5
#: series kept before the ones left unended are looked for
_CHAINS = 1024


class WebhookSender:
    """Delivers webhooks in background tasks; ``retries`` extra attempts ``interval_s`` apart."""

    def __init__(
        self,
        *,
        retries: int,
        interval_s: float,
        policy: FetchPolicy | None = None,
        poster: Poster | None = None,
        event_interval_s: float = EVENT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retries = retries
        self.interval_s = interval_s
        self.event_interval_s = event_interval_s
        # a webhook answer is read only for its status: a small body limit, no redirects
        self._policy = policy or FetchPolicy(timeout_s=10.0, max_bytes=64 * 1024)
        self._poster = poster or self._post
        self._clock = clock
        self._tasks: set[asyncio.Task[bool]] = set()
        #: each key's last delivery (the next waits for it) and when it began
        self._chains: dict[str, tuple[asyncio.Task[bool], float]] = {}

    def send(
        self,
        url: str,
        body: dict[str, Any],
        *,
        event: str = FINAL,
        wanted: Collection[str] | None = None,
        key: str | None = None,
    ) -> asyncio.Task[bool] | None:
        """Start delivering ``body`` to ``url``; the task's result says whether it arrived.

        ``event`` is what the body reports, ``wanted`` the events the subscription takes
        (None: every one) and ``key`` the series it belongs to (see the module docstring).
        None when the event is not sent: filtered out, or throttled."""
        final = event == FINAL
        chain = self._chains.get(key) if key is not None else None
        if key is not None and final:
            self._chains.pop(key, None)  # the series ends: nothing of it is kept
        now = self._clock()
        if wanted is not None and event not in wanted:
            return None
        if chain is not None and not final and now - chain[1] < self.event_interval_s:
            return None
        task = asyncio.create_task(
            self._after(chain[0] if chain else None, url, body, self.retries if final else 0)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if key is not None and not final:
            self._chains[key] = (task, now)
            if len(self._chains) > _CHAINS:
                self._prune(now)
        return task

    def _prune(self, now: float) -> None:
        """Forget the series whose last event is delivered and old (one never ended)."""
        for key, (task, began) in list(self._chains.items()):
            if task.done() and now - began > max(60.0, self.event_interval_s):
                del self._chains[key]

    async def _after(
        self, previous: asyncio.Task[bool] | None, url: str, body: dict[str, Any], retries: int
    ) -> bool:
        if previous is not None:
            await asyncio.wait({previous})
        return await self.deliver(url, body, retries=retries)

    async def deliver(self, url: str, body: dict[str, Any], *, retries: int | None = None) -> bool:
        """Try once, then up to ``retries`` (default: the sender's) more times; any 2xx
        answer counts as delivered.

        Never raises: a webhook that cannot be delivered is logged, and the job is unaffected.
        Logs show the URL without its query, which may carry the receiver's secret."""
        shown = shown_url(url)
        attempts = (self.retries if retries is None else retries) + 1
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.interval_s)
            try:
                status = await self._poster(url, body)
            except UrlRefused as exc:
                log.error("webhook %s refused for job %s: %s", shown, body.get("id"), exc)
                return False  # the URL itself is refused: no retry can help
            except FetchError as exc:
                log.warning("webhook %s attempt %d failed: %s", shown, attempt + 1, exc)
                continue
            except Exception as exc:  # a URL the guard could not even read: no retry helps
                log.error("webhook %s failed for job %s: %r", shown, body.get("id"), exc)
                return False
            if 200 <= status < 300:
                return True
            log.warning("webhook %s attempt %d answered %d", shown, attempt + 1, status)
        log.error("webhook %s not delivered for job %s", shown, body.get("id"))
        return False

    async def _post(self, url: str, body: dict[str, Any]) -> int:
        data = json.dumps(body).encode()
        response = await asyncio.to_thread(
            request,
            "POST",
            url,
            policy=self._policy,
            body=data,
            headers={"Content-Type": "application/json"},
            follow_redirects=False,
        )
        return response.status

    @property
    def in_flight(self) -> int:
        """Deliveries not yet ended (delivered, refused or given up)."""
        return len(self._tasks)

    async def close(self) -> None:
        """Wait briefly for deliveries in flight, then stop waiting for them."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)
            for task in self._tasks:
                task.cancel()


def shown_url(url: str) -> str:
    """``url`` as a log may show it: scheme, host, port and path, never credentials, query or
    fragment; text a log can always write."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        text = f"{parts.scheme}://{host}{port}{parts.path}"[:200]
    except ValueError:
        return "(an unreadable URL)"
    if not parts.scheme or not host:
        return "(an unreadable URL)"
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
