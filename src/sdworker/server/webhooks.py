"""Webhook delivery: POST the final status body, retried as hosted RunPod does (2 retries,
10 s apart), through the same address guard as image URLs (:mod:`sdworker.core.netguard`): a
webhook never reaches a loopback or private address unless the operator allows them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from sdworker.core.netguard import FetchError, FetchPolicy, UrlRefused, request

log = logging.getLogger(__name__)

Poster = Callable[[str, dict[str, Any]], Awaitable[int]]


class WebhookSender:
    """Delivers webhooks in background tasks; ``retries`` extra attempts ``interval_s`` apart."""

    def __init__(
        self,
        *,
        retries: int,
        interval_s: float,
        policy: FetchPolicy | None = None,
        poster: Poster | None = None,
    ) -> None:
        self.retries = retries
        self.interval_s = interval_s
        # a webhook answer is read only for its status: a small body limit, no redirects
        self._policy = policy or FetchPolicy(timeout_s=10.0, max_bytes=64 * 1024)
        self._poster = poster or self._post
        self._tasks: set[asyncio.Task[bool]] = set()

    def send(self, url: str, body: dict[str, Any]) -> asyncio.Task[bool]:
        """Start delivering ``body`` to ``url``; the task's result says whether it arrived."""
        task = asyncio.create_task(self.deliver(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def deliver(self, url: str, body: dict[str, Any]) -> bool:
        """Try once, then up to ``retries`` more times; any 2xx answer counts as delivered.

        Never raises: a webhook that cannot be delivered is logged, and the job is unaffected.
        Logs show the URL without its query, which may carry the receiver's secret."""
        shown = shown_url(url)
        for attempt in range(self.retries + 1):
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
