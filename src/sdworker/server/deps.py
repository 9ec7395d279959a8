"""Request-scoped lookups shared by the endpoint's routers."""

from __future__ import annotations

from fastapi import Request

from sdworker.server.queue import JobQueue


def app_queue(request: Request) -> JobQueue:
    """The server's job queue, which ``create_app`` puts on ``app.state.gateway``."""
    queue: JobQueue = request.app.state.gateway
    return queue
