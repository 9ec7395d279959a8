"""Webhook delivery: POST the final status body, retried as hosted RunPod does (2 retries, 10 s apart)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

log = logging.getLogger(__name__)

Poster = Callable[[str, dict[str, Any]], Awaitable[int]]


class WebhookSender:
    """Delivers webhooks in background tasks; ``retries`` extra attempts ``interval_s`` apart."""

    def __init__(
        self,
        *,
        retries: int,
        interval_s: float,
        timeout_s: float = 10.0,
        poster: Poster | None = None,
    ) -> None:
        self.retries = retries
        self.interval_s = interval_s
        self._timeout_s = timeout_s
        self._poster = poster or self._post
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[bool]] = set()

    def send(self, url: str, body: dict[str, Any]) -> asyncio.Task[bool]:
        """Start delivering ``body`` to ``url``; the task's result says whether it arrived."""
        task = asyncio.create_task(self.deliver(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def deliver(self, url: str, body: dict[str, Any]) -> bool:
        """Try once, then up to ``retries`` more times; any 2xx answer counts as delivered."""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.interval_s)
            try:
                status = await self._poster(url, body)
            except httpx.HTTPError as exc:
                log.warning("webhook %s attempt %d failed: %s", url, attempt + 1, exc)
                continue
            if 200 <= status < 300:
                return True
            log.warning("webhook %s attempt %d answered %d", url, attempt + 1, status)
        log.error("webhook %s not delivered for job %s", url, body.get("id"))
        return False

    async def _post(self, url: str, body: dict[str, Any]) -> int:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s)
        response = await self._client.post(url, json=body)
        return response.status_code

    async def close(self) -> None:
        """Wait briefly for deliveries in flight, then close the client."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)
            for task in self._tasks:
                task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
