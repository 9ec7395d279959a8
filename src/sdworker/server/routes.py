"""The client routes of RunPod's serverless API (``/v2/{endpoint_id}/...``) and the SDK test
server's root routes. Failed jobs are data (a status body); HTTP codes are for protocol problems.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from sdworker.core.errors import InvalidInput, JobStateConflict
from sdworker.core.jobs import JobView, Status
from sdworker.core.netguard import UrlRefused, check_url
from sdworker.core.strictjson import NotJson, loads
from sdworker.server.auth import require_api_key, require_key_or_signature
from sdworker.server.deps import app_queue
from sdworker.server.errors import EndpointError
from sdworker.server.supervisor import WorkerSupervisor

_JOB_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["input"],
                    "properties": {
                        "input": {"type": "object"},
                        "webhook": {"type": "string"},
                        "policy": {
                            "type": "object",
                            "properties": {
                                "executionTimeout": {"type": "integer"},
                                "ttl": {"type": "integer"},
                            },
                        },
                    },
                },
                "example": {"input": {"prompt": "a photo of an astronaut riding a horse"}},
            }
        },
    }
}


async def check_endpoint(request: Request, endpoint_id: str) -> None:
    """Only the served endpoint id exists; any other answers 404 naming the one that does."""
    served = request.app.state.settings.endpoint_id
    if endpoint_id != served:
        raise EndpointError(
            404, f"endpoint {endpoint_id!r} not found; this server serves {served!r}"
        )


async def _read_job_body(request: Request, limit: int) -> dict[str, Any]:
    route = request.url.path.rsplit("/", 1)[-1]
    too_large = (
        f"payload too large: /{route} accepts at most {limit} bytes"
        f" ({limit / 1024 / 1024:g} MB); upload big inputs and pass a URL instead"
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise EndpointError(413, too_large)
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > limit:
            raise EndpointError(413, too_large)
    try:
        # strict: an input JSON cannot carry back (NaN, 1e309, a lone surrogate) is refused
        # here, naming its field, instead of making a job no worker can ever answer
        body = loads(bytes(raw))
    except NotJson as exc:
        raise EndpointError(400, str(exc)) from exc
    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        raise EndpointError(400, 'the request body must be a JSON object with an "input" object')
    return body


async def _submit(request: Request, *, sync: bool, limit: int) -> JobView:
    body = await _read_job_body(request, limit)
    webhook = body.get("webhook")
    if webhook is not None:
        if not isinstance(webhook, str):
            raise EndpointError(400, "webhook must be a URL string")
        try:
            check_url(webhook)
        except UrlRefused as exc:
            raise EndpointError(400, f"webhook: {exc}") from exc
    try:
        return await app_queue(request).submit(
            body["input"], webhook=webhook, policy=body.get("policy"), sync=sync
        )
    except InvalidInput as exc:
        raise EndpointError(400, str(exc)) from exc


async def _found(view: JobView | None, job_id: str) -> JobView:
    if view is None:
        raise EndpointError(
            404, f"job {shown_id(job_id)} not found (unknown, or its result has expired)"
        )
    return view


def shown_id(job_id: str) -> str:
    """An id as an error message may echo it: short, and text JSON can carry."""
    text = job_id if len(job_id) <= 80 else job_id[:77] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def run(request: Request) -> dict[str, Any]:
    """Queue a job; it runs in the background."""
    limit = request.app.state.settings.run_body_limit_bytes
    view = await _submit(request, sync=False, limit=limit)
    return {"id": view.id, "status": view.status.value}


def _wait_ms(wait: str | None) -> float | None:
    """``?wait=`` as RunPod reads it: whole milliseconds, held within 1000-300000."""
    if wait is None:
        return None
    digits = wait.strip()
    if not digits.isascii() or not digits.isdigit():
        raise EndpointError(
            400, f"wait: must be a whole number of milliseconds (got {shown_id(wait)!r})"
        )
    # a number with more digits than the cap is over it; int() of a huge one may be refused
    return 300_000 if len(digits) > 6 else min(max(int(digits), 1000), 300_000)


async def runsync(request: Request, wait: str | None = None) -> dict[str, Any]:
    """Queue a job and wait for it (90 s, or ``wait`` ms within 1000-300000), finished or not."""
    settings = request.app.state.settings
    # read before queueing: a bad parameter must not leave a job behind
    wait_ms = _wait_ms(wait)
    view = await _submit(request, sync=True, limit=settings.runsync_body_limit_bytes)
    wait_s = settings.runsync_wait_s if wait_ms is None else wait_ms / 1000
    final = await app_queue(request).wait(view.id, wait_s)
    return _status_body(request, final or view)


async def status(request: Request, job_id: str) -> dict[str, Any]:
    """The job's status; while it runs, ``output`` is its latest progress update, and while
    it waits for a worker that cannot start, ``reason`` says why."""
    return _status_body(request, await _found(await app_queue(request).get(job_id), job_id))


def _supervisor(request: Request) -> WorkerSupervisor | None:
    """The worker processes this server runs (None: it runs none, ``--workers 0``)."""
    return getattr(request.app.state, "supervisor", None)


def _status_body(request: Request, view: JobView) -> dict[str, Any]:
    """The status body, with ``reason`` on a queued job when no worker could start: it waits
    (its TTL still runs) and runs as soon as one does."""
    body = view.status_body()
    supervisor = _supervisor(request)
    if view.status is Status.IN_QUEUE and supervisor is not None:
        reason = supervisor.cannot_start()
        if reason is not None:
            body["reason"] = reason
    return body


async def stream(request: Request, job_id: str) -> dict[str, Any]:
    """Stream chunks produced since the last call."""
    found = await app_queue(request).stream(job_id)
    if found is None:
        await _found(None, job_id)
        raise AssertionError("unreachable")
    view, chunks = found
    return {"id": view.id, "status": view.status.value, "stream": chunks}


async def cancel(request: Request, job_id: str) -> dict[str, Any]:
    """Cancel a queued job, or interrupt a running one between denoising steps."""
    view = await _found(await app_queue(request).cancel(job_id), job_id)
    return {"id": view.id, "status": view.status.value}


async def interrupt(request: Request, job_id: str) -> dict[str, Any]:
    """A local-endpoint extension: cancel a queued job, or have a running one stop at the next
    denoising step and end COMPLETED with its images so far (the last marked interrupted)."""
    view = await _found(await app_queue(request).interrupt(job_id), job_id)
    return {"id": view.id, "status": view.status.value}


async def retry(request: Request, job_id: str) -> dict[str, Any]:
    """Requeue a FAILED or TIMED_OUT job under the same id."""
    try:
        view = await _found(await app_queue(request).retry(job_id), job_id)
    except JobStateConflict as exc:
        raise EndpointError(400, str(exc)) from exc
    return {"id": view.id, "status": view.status.value}


async def purge_queue(request: Request) -> dict[str, Any]:
    """Drop every queued job; running jobs are untouched."""
    return {"removed": await app_queue(request).purge(), "status": "completed"}


async def health(request: Request) -> dict[str, Any]:
    """Job counters and worker states: idle and running, starting (``initializing``), and
    ``unhealthy`` (they cannot start), each of those listed in ``unhealthyWorkers`` with its
    reason."""
    body = await app_queue(request).health()
    supervisor = _supervisor(request)
    if supervisor is not None:
        counts, failing = supervisor.health()
        body["workers"].update(counts)
        if failing:
            body["unhealthyWorkers"] = failing
    return body


async def result_file(request: Request, job_id: str, name: str) -> FileResponse:
    """A file a job stored (kept as long as the job's result)."""
    if await app_queue(request).get(job_id) is None:
        await _found(None, job_id)
    found = app_queue(request).files.find(job_id, name)
    if found is None:
        raise EndpointError(404, f"file {shown_id(name)} not found for job {shown_id(job_id)}")
    path, content_type = found
    return FileResponse(path, media_type=content_type)


def _get_and_post(router: APIRouter, path: str, endpoint: Any) -> None:
    # one route per method, so each gets its own OpenAPI operation id
    for method in ("GET", "POST"):
        name = f"{endpoint.__name__}_{method.lower()}"
        router.add_api_route(path, endpoint, methods=[method], name=name)


def endpoint_router() -> APIRouter:
    """``/v2/{endpoint_id}/...``: the hosted endpoint's routes."""
    router = APIRouter(
        prefix="/v2/{endpoint_id}",
        dependencies=[Depends(require_api_key), Depends(check_endpoint)],
        tags=["endpoint"],
    )
    router.add_api_route("/run", run, methods=["POST"], openapi_extra=_JOB_BODY)
    router.add_api_route("/runsync", runsync, methods=["POST"], openapi_extra=_JOB_BODY)
    _get_and_post(router, "/status/{job_id}", status)
    _get_and_post(router, "/stream/{job_id}", stream)
    router.add_api_route("/cancel/{job_id}", cancel, methods=["POST"])
    router.add_api_route("/interrupt/{job_id}", interrupt, methods=["POST"])
    router.add_api_route("/retry/{job_id}", retry, methods=["POST"])
    router.add_api_route("/purge-queue", purge_queue, methods=["POST"])
    router.add_api_route("/health", health, methods=["GET"])
    return router


def files_router() -> APIRouter:
    """``/v2/{endpoint_id}/files/...``: result files, fetchable with their signed URL alone."""
    router = APIRouter(
        prefix="/v2/{endpoint_id}",
        dependencies=[Depends(require_key_or_signature), Depends(check_endpoint)],
        tags=["endpoint"],
    )
    router.add_api_route("/files/{job_id}/{name}", result_file, methods=["GET"])
    return router


def sdk_test_router() -> APIRouter:
    """The root routes of the ``runpod`` SDK's ``--rp_serve_api`` server, for existing scripts."""
    router = APIRouter(dependencies=[Depends(require_api_key)], tags=["runpod test server"])
    router.add_api_route("/run", run, methods=["POST"], openapi_extra=_JOB_BODY)
    router.add_api_route("/runsync", runsync, methods=["POST"], openapi_extra=_JOB_BODY)
    _get_and_post(router, "/status/{job_id}", status)
    _get_and_post(router, "/stream/{job_id}", stream)
    return router
