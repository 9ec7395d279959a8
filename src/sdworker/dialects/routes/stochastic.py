"""Stochastic model API: submit, then poll ``responseUrl`` until ``generatedImages`` appear."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urljoin

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sdworker.dialects import openapi as api
from sdworker.dialects import stochastic
from sdworker.dialects.modelref import resolve
from sdworker.dialects.routes.common import (
    DialectContext,
    invalid_problems,
    job_error,
    outputs_of,
    read_json,
)
from sdworker.errors import InvalidInput
from sdworker.imageio import CONTENT_TYPES
from sdworker.server.gateway import JobGateway, JobView, Status

SUBMIT = "/v1/modelApi/submit/{model:path}"
RESULT = "/v1/modelApi/inference/{job_id}"


def _fail(status: int, message: str, error: InvalidInput | None = None) -> JSONResponse:
    problems = error.problems if error is not None else None
    return JSONResponse(stochastic.error_body(message, problems), status_code=status)


def stochastic_router(ctx: DialectContext, urls: dict[str, list[str]] | None = None) -> APIRouter:
    """Auth by the ``apiKey`` header. Image URLs are made once per job and then reused.

    ``urls`` (job id → its image URLs) is the cache; each submit drops the entries of jobs
    the queue has forgotten, so it holds no more than the jobs the queue still keeps.
    """
    router = APIRouter(tags=["Stochastic"])
    urls = {} if urls is None else urls

    async def prune(gateway: JobGateway) -> None:
        for job_id in list(urls):
            if await gateway.get(job_id) is None:
                urls.pop(job_id, None)

    def denied(request: Request) -> JSONResponse | None:
        headers = request.headers
        if ctx.authorised(headers.get("apikey"), headers.get("authorization")):
            return None
        return _fail(401, "missing or wrong apiKey header")

    @router.post(SUBMIT, dependencies=[api.STOCHASTIC_KEY], openapi_extra=api.STOCHASTIC_SUBMIT)
    async def submit(request: Request, model: str) -> JSONResponse:
        """Queue a request: ``{"success", "data": {"id", "responseUrl", "queuePosition"}}``."""
        if (no := denied(request)) is not None:
            return no
        name = resolve(ctx.manifests(), model)
        if name is None:
            names = ", ".join(ctx.registry.names()) or "none"
            return _fail(404, f"unknown model {model!r}; available: {names}")
        try:
            native = stochastic.parse(await read_json(request), model=name, upload=ctx.has_bucket)
        except InvalidInput as exc:
            return _fail(400, str(exc), exc)
        gateway = ctx.gateway(request)
        await prune(gateway)
        view = await gateway.submit(native)
        position = await gateway.queue_position(view.id)
        url = str(request.url_for("stochastic_result", job_id=view.id))
        return JSONResponse(stochastic.submitted(view.id, url, position))

    @router.get(
        RESULT,
        name="stochastic_result",
        dependencies=[api.STOCHASTIC_KEY],
        openapi_extra=api.STOCHASTIC_RESULT,
    )
    async def result(request: Request, job_id: str) -> JSONResponse:
        """The request's state; ``generatedImages`` with fetchable URLs once it is done."""
        if (no := denied(request)) is not None:
            return no
        gateway = ctx.gateway(request)
        view = await gateway.get(job_id)
        if view is None:
            urls.pop(job_id, None)
            return _fail(404, f"no request {job_id!r} (unknown or expired)")
        if view.status is Status.COMPLETED:
            if job_id not in urls:
                urls[job_id] = await _image_urls(gateway, view, str(request.base_url))
            return JSONResponse(stochastic.result(job_id, view.status, urls[job_id]))
        if view.status.is_terminal():
            client_fault, message = job_error(view, stochastic.NATIVE_TO_STOCHASTIC)
            # a non-2xx answer, so the documented loop's raise_for_status() ends it
            if client_fault:
                return _fail(400, message, InvalidInput(invalid_problems(message)))
            return _fail(410 if view.status is Status.CANCELLED else 500, message)
        position = await gateway.queue_position(job_id)
        return JSONResponse(stochastic.result(job_id, view.status, None, position))

    return router


async def _image_urls(gateway: JobGateway, view: JobView, base_url: str) -> list[str]:
    """Each image's URL: the S3 one when the worker uploaded it, else a served file (at the
    address the client used, unless the server has an explicit public URL)."""
    found: list[str] = []
    for index, out in enumerate(outputs_of(view)):
        if out.get("url"):
            found.append(str(out["url"]))
            continue
        fmt = str(out.get("format") or "png")
        data: Any = out.get("image") or ""
        name = f"{view.id}-{index}.{'jpg' if fmt == 'jpeg' else fmt}"
        url = await gateway.store_file(
            view.id, name, base64.b64decode(data), CONTENT_TYPES.get(fmt, "image/png")
        )
        found.append(urljoin(base_url, url))
    return found
