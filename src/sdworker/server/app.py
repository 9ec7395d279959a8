"""The app factory: routes, the durable queue and (optionally) the worker processes."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from fastapi import APIRouter, FastAPI

from sdworker import __version__
from sdworker.core.settings import Settings
from sdworker.server import docs, playground
from sdworker.server.clock import Clock
from sdworker.server.errors import EndpointError, endpoint_error_handler
from sdworker.server.limits import BodyLimitMiddleware
from sdworker.server.queue import JobQueue
from sdworker.server.routes import endpoint_router, files_router, sdk_test_router
from sdworker.server.supervisor import WorkerSupervisor
from sdworker.server.worker_routes import WORKER_PREFIX, worker_router

DESCRIPTION = """RunPod serverless in a box: the hosted endpoint's API
(`/v2/{endpoint_id}/run`, `/runsync`, `/status`, `/stream`, `/cancel`, `/retry`, `/purge-queue`,
`/health`) over a durable SQLite queue, served to the `runpod` SDK's own worker loop.
A playground page at `/` drives the same API from a browser."""


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    workers: int | None = None,
    handler_path: Path | None = None,
    public_url: str | None = None,
    worker_url: str | None = None,
    extra_routers: Sequence[APIRouter] = (),
    worker_log: Path | None = None,
) -> FastAPI:
    """Build the endpoint.

    ``workers`` worker processes (default ``settings.workers``; 0 for none, as unit tests
    use) run ``handler_path`` (default ``settings.handler_path``; when neither is set, the
    packaged worker ``python -m sdworker.worker``) and reach the server at ``worker_url``
    (default ``public_url``, else ``http://127.0.0.1:8000``). An explicit
    ``public_url`` prefixes result-file URLs; without one they follow the address each client
    used. ``app.state.gateway`` (the queue) and ``app.state.settings`` are set for every router.
    """
    count = settings.workers if workers is None else workers
    handler = handler_path or settings.handler_path
    base_url = (worker_url or public_url or "http://127.0.0.1:8000").rstrip("/")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        queue = JobQueue(settings, clock=clock, public_url=public_url)
        app.state.gateway = queue
        # the request formats answer webhooks (DeepInfra's) through the queue's own sender
        app.state.send_webhook = queue.webhooks.send
        await queue.start()
        supervisor = None
        if count > 0:
            supervisor = WorkerSupervisor(
                queue,
                handler_path=handler,
                count=count,
                base_url=base_url + WORKER_PREFIX,
                token=app.state.worker_token,
                log_file=worker_log,
                backoff_s=settings.worker_backoff_s,
                backoff_max_s=settings.worker_backoff_max_s,
            )
            await supervisor.start()
        app.state.supervisor = supervisor
        try:
            yield
        finally:
            if supervisor is not None:
                await supervisor.close()
            await queue.close()

    app = FastAPI(
        title="sdworker local endpoint",
        description=DESCRIPTION,
        version=__version__,
        lifespan=lifespan,
        # served by docs_router instead, behind the API key
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.worker_token = secrets.token_urlsafe(24)
    app.add_exception_handler(EndpointError, endpoint_error_handler)
    app.add_middleware(BodyLimitMiddleware, limit=settings.runsync_body_limit_bytes)
    app.include_router(endpoint_router())
    app.include_router(files_router())
    app.include_router(worker_router())
    app.include_router(docs.docs_router())
    app.include_router(playground.playground_router())
    docs.mount_assets(app)
    playground.mount_assets(app)
    for router in extra_routers:
        app.include_router(router)
    # last, so the dialects' own /run-like paths (if any) win over the SDK test server's
    app.include_router(sdk_test_router())
    return app
