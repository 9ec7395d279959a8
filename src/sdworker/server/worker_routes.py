"""The routes the ``runpod`` SDK's worker loop talks to (what RunPod's job API is in production).

job-take and job-stop are long polls: they answer as soon as there is work (or a stop), or
204 after ``worker_poll_s``. Results arrive form-encoded, but the body is a JSON string.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from sdworker.server.deps import app_queue
from sdworker.server.errors import EndpointError

WORKER_PREFIX = "/_worker"


async def require_worker_token(request: Request, token: str = "") -> None:
    expected: str = request.app.state.worker_token
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise EndpointError(401, "unknown worker token")


async def _payload(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise EndpointError(400, f"job result is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise EndpointError(400, "job result must be a JSON object")
    return payload


async def job_take(request: Request, worker_id: str) -> Response:
    settings = request.app.state.settings
    jobs = await app_queue(request).take(worker_id, 1, settings.worker_poll_s)
    return JSONResponse(jobs[0]) if jobs else Response(status_code=204)


async def job_take_batch(request: Request, worker_id: str, batch_size: int = 1) -> Response:
    settings = request.app.state.settings
    jobs = await app_queue(request).take(worker_id, max(1, batch_size), settings.worker_poll_s)
    return JSONResponse(jobs) if jobs else Response(status_code=204)


async def job_stop(request: Request, worker_id: str) -> Response:
    settings = request.app.state.settings
    ids = await app_queue(request).stop_signals(worker_id, settings.worker_poll_s)
    return JSONResponse({"jobsToStop": ids}) if ids else Response(status_code=204)


async def job_done(
    request: Request, worker_id: str, job_id: str, isStream: str = "false"
) -> Response:
    payload = await _payload(request)
    await app_queue(request).report(job_id, worker_id, payload, is_stream=isStream == "true")
    return Response(status_code=200)


async def job_stream(request: Request, worker_id: str, job_id: str) -> Response:
    await app_queue(request).stream_chunk(job_id, worker_id, await _payload(request))
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
    router.add_api_route("/job-done/{worker_id}/{job_id}", job_done, methods=["POST"])
    router.add_api_route("/job-stream/{worker_id}/{job_id}", job_stream, methods=["POST"])
    router.add_api_route("/ping/{worker_id}", ping, methods=["GET"])
    return router
