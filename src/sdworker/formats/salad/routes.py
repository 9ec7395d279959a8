"""Salad's HTTP routes: a task is queued (202 with its ``resultUrl``) and polled there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from sdworker.core.errors import SdworkerError
from sdworker.core.jobs import Failure, Status
from sdworker.formats import auth
from sdworker.formats import openapi as api
from sdworker.formats.base import FormatContext
from sdworker.formats.http import outputs_of, read_json
from sdworker.formats.salad import error_output, model_outputs, problem_details
from sdworker.formats.web import FormatRoute, Refusal, refusal

if TYPE_CHECKING:
    from sdworker.formats.salad import SaladFormat

PATH = "/api/beta/organizations/{organization}/inference-endpoints/{endpoint}"


def salad_router(fmt: SaladFormat, ctx: FormatContext) -> APIRouter:
    """``POST`` a task, ``GET`` its result; auth by the ``Salad-Api-Key`` header."""
    denied = problem_details(401, "missing or wrong Salad-Api-Key header")
    check = auth.header_or_bearer(
        ctx.settings, "Salad-Api-Key", Refusal(401, denied, media_type=fmt.media_type)
    )
    router = APIRouter(tags=["Salad"], route_class=FormatRoute, dependencies=[Depends(check)])

    @router.post(PATH, status_code=202, openapi_extra=api.SALAD_TASK)
    async def create_task(request: Request, organization: str, endpoint: str) -> JSONResponse:
        """Queue a ``{"modelInputs", "callInputs"}`` task: 202 ``{"requestId", "resultUrl"}``."""
        try:
            body = await read_json(request, ctx.body_limit)
            decoded = fmt.decode(body, ctx.models(), endpoint=endpoint)
        except SdworkerError as exc:
            raise refusal(fmt, Failure.of(exc)) from None
        view = await ctx.gateway(request).submit(decoded.inputs[0])
        base = str(request.url.replace(query="")).rstrip("/")
        return JSONResponse(
            {"requestId": view.id, "resultUrl": f"{base}/{view.id}"}, status_code=202
        )

    @router.get(PATH + "/{request_id}")
    async def get_result(
        request: Request, organization: str, endpoint: str, request_id: str
    ) -> JSONResponse:
        """``pending`` until done, then ``success`` with ``modelOutputs`` or ``failed``."""
        view = await ctx.gateway(request).get(request_id)
        if view is None:
            gone = f"no request {request_id!r} (unknown or expired)"
            raise Refusal(404, problem_details(404, gone), media_type=fmt.media_type)
        body: dict[str, Any] = {"requestId": view.id}
        if not view.status.is_terminal():
            body["status"] = "pending"
        elif view.status is Status.COMPLETED:
            body["status"] = "success"
            body["modelOutputs"] = model_outputs(outputs_of(view), view.execution_time_ms)
        else:
            failure = view.failure.renamed(fmt.names)
            if view.status is not Status.FAILED:
                failure = Failure(view.status.value.lower(), failure.message)
            body["status"] = "failed"
            body["error"] = failure.message
            body["modelOutputs"] = error_output(failure)
        return JSONResponse(body)

    return router
