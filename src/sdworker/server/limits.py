"""One body limit for every route: an ASGI middleware answering 413 for a request body over
``settings.runsync_body_limit_bytes``, declared (``Content-Length``) or streamed.

``/run`` and ``/runsync`` keep their own (smaller or equal) limits and messages, and request
formats may shape theirs; this guard is what every other route, and anything that forgets,
falls back on: no route buffers an unbounded body.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """413 ``{"error": ...}`` for any HTTP request whose body exceeds ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, send)
            return
        guard = _Guard(self, scope, receive, send)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            # the app failed on the body we cut short; the client already has its 413
            if not guard.refused:
                raise

    async def _refuse(self, scope: Scope, send: Send) -> None:
        limit = self.limit
        path = str(scope.get("path", ""))[:100].encode("utf-8", "backslashreplace").decode()
        message = (
            f"payload too large: {path} accepts at most {limit} bytes"
            f" ({limit / 1024 / 1024:g} MB); upload big inputs and pass a URL instead"
        )
        body = json.dumps({"error": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _Guard:
    """Counts the body as the app reads it; past the limit, answers 413 and tells the app the
    client left, then drops whatever the app still tries to send."""

    def __init__(
        self, owner: BodyLimitMiddleware, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.owner = owner
        self.scope = scope
        self._receive = receive
        self._send = send
        self.seen = 0
        self.started = False
        self.refused = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.owner.limit:
                if not self.started:
                    self.started = True
                    await self.owner._refuse(self.scope, self._send)
                self.refused = True
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    headers: Any = scope.get("headers") or []
    for name, value in headers:
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None
