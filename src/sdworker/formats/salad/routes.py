"""Salad's HTTP routes: a task is queued (202 with its ``resultUrl``) and polled there."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from sdworker.core.jobs import Failure, JobView, Status
from sdworker.formats import auth
from sdworker.formats import openapi as api
from sdworker.formats.base import FormatContext
from sdworker.formats.pipeline import Pipeline, outputs_of
from sdworker.formats.salad import SALAD, error_output, model_outputs, problem_details
from sdworker.formats.web import FormatRoute, Refusal

PATH = "/api/beta/organizations/{organization}/inference-endpoints/{endpoint}"


def salad_router(ctx: FormatContext) -> APIRouter:
    """``POST`` a task, ``GET`` its result; auth by the ``Salad-Api-Key`` header."""
    denied = problem_details(401, "missing or wrong Salad-Api-Key header")
    check = auth.header_or_bearer(
        ctx.settings, "Salad-Api-Key", Refusal(401, denied, media_type=SALAD.media_type)
    )
    router = APIRouter(tags=["Salad"], route_class=FormatRoute, dependencies=[Depends(check)])
    pipe = Pipeline(SALAD, ctx)

    @router.post(PATH, status_code=202, openapi_extra=api.SALAD_TASK)
    async def create_task(request: Request, organization: str, endpoint: str) -> Response:
        """Queue a ``{"modelInputs", "callInputs"}`` task: 202 ``{"requestId", "resultUrl"}``."""
        base = str(request.url.replace(query="")).rstrip("/")
        return await pipe(request, status_url=lambda job_id: f"{base}/{job_id}", endpoint=endpoint)

    @router.get(PATH + "/{request_id}")
    async def get_result(
        request: Request, organization: str, endpoint: str, request_id: str
    ) -> JSONResponse:
        """``pending`` until done, then ``success`` with ``modelOutputs`` or ``failed``."""
        return JSONResponse(task_status(await pipe.job(request, request_id)))

    return router


def task_status(view: JobView) -> dict[str, Any]:
    """A task as its result URL shows it."""
    body: dict[str, Any] = {"requestId": view.id}
    if not view.status.is_terminal():
        body["status"] = "pending"
    elif view.status is Status.COMPLETED:
        body["status"] = "success"
        body["modelOutputs"] = model_outputs(outputs_of(view), view.execution_time_ms)
    else:
        failure = view.failure.renamed(SALAD.names)
        if view.status is not Status.FAILED:
            failure = Failure(view.status.value.lower(), failure.message)
        body["status"] = "failed"
        body["error"] = failure.message
        body["modelOutputs"] = error_output(failure)
    return body
