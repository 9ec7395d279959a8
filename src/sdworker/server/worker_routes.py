"""The routes the ``runpod`` SDK's worker loop talks to (what RunPod's job API is in production).

job-take and job-stop are long polls: they answer as soon as there is work (or a stop), or
204 after ``worker_poll_s``. Results arrive form-encoded, but the body is a JSON string.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from sdworker.core import strictjson
from sdworker.server.deps import app_queue
from sdworker.server.errors import EndpointError

WORKER_PREFIX = "/_worker"

log = logging.getLogger(__name__)


async def require_worker_token(request: Request, token: str = "") -> None:
    expected: str = request.app.state.worker_token
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise EndpointError(401, "unknown worker token")


class _Unreadable(ValueError):
    """A worker's post the endpoint cannot store; ``progress`` when it was only an update."""

    def __init__(self, reason: str, *, progress: bool) -> None:
        super().__init__(reason)
        self.progress = progress


async def _payload(request: Request) -> dict[str, Any]:
    """The post's JSON object, strict: a NaN or a lone surrogate stored would break every
    later read of the job."""
    raw = await request.body()
    try:
        payload = strictjson.loads(raw, root="result")
    except strictjson.NotJson as exc:
        raise _Unreadable(str(exc), progress=_is_progress(raw)) from exc
    if not isinstance(payload, dict):
        raise _Unreadable("the result must be a JSON object", progress=False)
    return payload


def _is_progress(raw: bytes) -> bool:
    """Whether an unreadable post was a progress update (losing one of those fails nothing)."""
    try:
        loose = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(loose, dict) and loose.get("status") == "IN_PROGRESS"


def _holding(job_in_progress: str | None) -> bool | None:
    return None if job_in_progress is None else job_in_progress != "0"


async def job_take(
    request: Request, worker_id: str, job_in_progress: str | None = None
) -> Response:
    settings = request.app.state.settings
    jobs = await app_queue(request).take(
        worker_id, 1, settings.worker_poll_s, holding=_holding(job_in_progress)
    )
    return JSONResponse(jobs[0]) if jobs else Response(status_code=204)


async def job_take_batch(
    request: Request, worker_id: str, batch_size: int = 1, job_in_progress: str | None = None
) -> Response:
    settings = request.app.state.settings
    jobs = await app_queue(request).take(
        worker_id,
        min(max(1, batch_size), 64),
        settings.worker_poll_s,
        holding=_holding(job_in_progress),
    )
    return JSONResponse(jobs) if jobs else Response(status_code=204)


async def job_stop(request: Request, worker_id: str) -> Response:
    settings = request.app.state.settings
    ids = await app_queue(request).stop_signals(worker_id, settings.worker_poll_s)
    return JSONResponse({"jobsToStop": ids}) if ids else Response(status_code=204)


async def job_interrupt(request: Request, worker_id: str) -> Response:
    """The local endpoint's interrupt channel (not RunPod's): jobs to end early, keeping
    their images. Polled by the worker's own listener, never by the SDK."""
    settings = request.app.state.settings
    ids = await app_queue(request).interrupt_signals(worker_id, settings.worker_poll_s)
    return JSONResponse({"jobsToInterrupt": ids}) if ids else Response(status_code=204)


async def job_done(
    request: Request, worker_id: str, job_id: str, isStream: str = "false"
) -> Response:
    queue = app_queue(request)
    try:
        payload = await _payload(request)
    except _Unreadable as exc:
        if exc.progress:
            log.warning("job %s: dropped an unreadable progress update: %s", job_id, exc)
        else:
            # the job must end: its worker will not send this result in another form
            queue.refuse_result(job_id, worker_id, str(exc))
        raise EndpointError(400, f"unreadable job result: {exc}") from exc
    await queue.report(job_id, worker_id, payload, is_stream=isStream == "true")
    return Response(status_code=200)


async def job_stream(request: Request, worker_id: str, job_id: str) -> Response:
    try:
        payload = await _payload(request)
    except _Unreadable as exc:
        log.warning("job %s: dropped an unreadable stream chunk: %s", job_id, exc)
        raise EndpointError(400, f"unreadable stream chunk: {exc}") from exc
    await app_queue(request).stream_chunk(job_id, worker_id, payload)
    return Response(status_code=200)


async def ping(request: Request, worker_id: str) -> Response:
    app_queue(request).worker_seen(worker_id)
    return Response(status_code=200)


def worker_router() -> APIRouter:
    """Routes under ``/_worker``, guarded by the per-server worker token, hidden from the docs."""
    router = APIRouter(
        prefix=WORKER_PREFIX,
        dependencies=[Depends(require_worker_token)],
        include_in_schema=False,
    )
    router.add_api_route("/job-take/{worker_id}", job_take, methods=["GET"])
    router.add_api_route("/job-take-batch/{worker_id}", job_take_batch, methods=["GET"])
    router.add_api_route("/job-stop/{worker_id}", job_stop, methods=["GET"])
    router.add_api_route("/job-interrupt/{worker_id}", job_interrupt, methods=["GET"])
    router.add_api_route("/job-done/{worker_id}/{job_id}", job_done, methods=["POST"])
    router.add_api_route("/job-stream/{worker_id}/{job_id}", job_stream, methods=["POST"])
    router.add_api_route("/ping/{worker_id}", ping, methods=["GET"])
    return router
