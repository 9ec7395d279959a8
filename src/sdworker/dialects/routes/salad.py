"""Salad Inference Endpoints: an async task per request, polled at its ``resultUrl``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sdworker.dialects import openapi as api
from sdworker.dialects import salad
from sdworker.dialects.routes.common import DialectContext, job_error, outputs_of, read_json
from sdworker.errors import InvalidInput
from sdworker.server.gateway import Status

PATH = "/api/beta/organizations/{organization}/inference-endpoints/{endpoint}"


def _problem(
    status: int, title: str, detail: str, error: InvalidInput | None = None
) -> JSONResponse:
    """Salad's API errors are RFC 9457 problem details; bad fields go under ``errors``."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if error is not None:
        errors: dict[str, list[str]] = {}
        for p in error.problems:
            errors.setdefault(p.field, []).append(str(p))
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def salad_router(ctx: DialectContext) -> APIRouter:
    """``POST`` a task, ``GET`` its result; auth by the ``Salad-Api-Key`` header."""
    router = APIRouter(tags=["Salad"])

    def denied(request: Request) -> JSONResponse | None:
        headers = request.headers
        if ctx.authorised(headers.get("salad-api-key"), headers.get("authorization")):
            return None
        return _problem(401, "Unauthorized", "missing or wrong Salad-Api-Key header")

    @router.post(
        PATH,
        status_code=202,
        dependencies=[api.SALAD_KEY],
        openapi_extra=api.SALAD_TASK,
    )
    async def create_task(request: Request, organization: str, endpoint: str) -> JSONResponse:
        """Queue a ``{"modelInputs", "callInputs"}`` task: 202 ``{"requestId", "resultUrl"}``."""
        if (no := denied(request)) is not None:
            return no
        try:
            native = salad.parse(
                await read_json(request),
                manifests=ctx.manifests(),
                default_model=ctx.registry.default_name,
                endpoint_name=endpoint,
            )
        except InvalidInput as exc:
            return _problem(400, "Bad Request", str(exc), exc)
        view = await ctx.gateway(request).submit(native)
        base = str(request.url.replace(query="")).rstrip("/")
        return JSONResponse(
            {"requestId": view.id, "resultUrl": f"{base}/{view.id}"}, status_code=202
        )

    @router.get(
        PATH + "/{request_id}", dependencies=[api.SALAD_KEY], openapi_extra=api.SALAD_RESULT
    )
    async def get_result(
        request: Request, organization: str, endpoint: str, request_id: str
    ) -> JSONResponse:
        """``pending`` until done, then ``success`` with ``modelOutputs`` or ``failed``."""
        if (no := denied(request)) is not None:
            return no
        view = await ctx.gateway(request).get(request_id)
        if view is None:
            return _problem(404, "Not Found", f"no request {request_id!r} (unknown or expired)")
        body: dict[str, Any] = {"requestId": view.id}
        if not view.status.is_terminal():
            body["status"] = "pending"
        elif view.status is Status.COMPLETED:
            body["status"] = "success"
            body["modelOutputs"] = salad.model_outputs(outputs_of(view), view.execution_time_ms)
        else:
            _, message = job_error(view, salad.NATIVE_TO_SALAD)
            body["status"] = "failed"
            body["error"] = message
            body["modelOutputs"] = {
                "$error": {"code": view.status.value.lower(), "message": message}
            }
        return JSONResponse(body)

    return router
