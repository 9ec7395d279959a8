"""DeepInfra inference API: synchronous by default, or answered at a ``webhook``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from sdworker.dialects import deepinfra
from sdworker.dialects import openapi as api
from sdworker.dialects.modelref import resolve
from sdworker.dialects.routes.common import (
    DialectContext,
    invalid_problems,
    job_error,
    outputs_of,
    read_json,
    wait_finished,
)
from sdworker.errors import InvalidInput
from sdworker.server.gateway import JobGateway, JobView, Status
from sdworker.server.webhooks import WebhookSender

PATH = "/v1/inference/{model:path}"
_NAMES = {"num_images_per_prompt": "num_images"}


def _fail(status: int, message: str, error: InvalidInput | None = None) -> JSONResponse:
    problems = error.problems if error is not None else None
    return JSONResponse(deepinfra.error_body(message, problems), status_code=status)


async def _read_body(request: Request) -> Any:
    """JSON, or form fields as ``curl -F`` sends them (files become base64 text)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return await read_json(request)
    fields: dict[str, Any] = {}
    async with request.form() as form:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                fields[key] = deepinfra.file_to_b64(await value.read())
            else:
                fields[key] = value
    return fields


def _answer(view: JobView | None, wait_s: float) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for a job as it stands after waiting."""
    if view is None:
        return 500, deepinfra.error_body("the request expired before it was read")
    if view.status is Status.COMPLETED:
        return 200, deepinfra.response(view.id, outputs_of(view), view.execution_time_ms)
    if not view.status.is_terminal():
        return 504, deepinfra.error_body(f"inference did not finish within {wait_s:g} s")
    client_fault, message = job_error(view, _NAMES)
    if client_fault:
        return 422, deepinfra.error_body(message, invalid_problems(message))
    return 500, deepinfra.error_body(message)


def deepinfra_router(ctx: DialectContext, webhooks: WebhookSender | None = None) -> APIRouter:
    """Auth by ``Authorization: bearer <key>``.

    A ``webhook`` answer is POSTed by ``webhooks`` (default: a :class:`WebhookSender` with the
    endpoint's ``webhook_retries``/``webhook_interval_s``). When the app shuts down, requests
    still waiting for their job are cancelled and deliveries in flight get the sender's grace.
    """
    sender = webhooks or WebhookSender(
        retries=ctx.settings.webhook_retries, interval_s=ctx.settings.webhook_interval_s
    )
    waiting: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            await sender.close()

    router = APIRouter(tags=["DeepInfra"], lifespan=lifespan)

    @router.post(PATH, openapi_extra=api.DEEPINFRA_INFERENCE)
    async def inference(request: Request, model: str) -> JSONResponse:
        """Run one inference; with ``webhook`` answer at once and POST the result there."""
        if not ctx.authorised(request.headers.get("authorization")):
            return _fail(401, "missing or wrong 'Authorization: bearer <key>' header")
        name = resolve(ctx.manifests(), model)
        if name is None:
            names = ", ".join(ctx.registry.names()) or "none"
            return _fail(404, f"unknown model {model!r}; available: {names}")
        try:
            native, webhook = deepinfra.parse(await _read_body(request), model=name)
        except InvalidInput as exc:
            return _fail(422, str(exc), exc)
        gateway = ctx.gateway(request)
        view = await gateway.submit(native)
        wait_s = ctx.settings.dialect_wait_s
        if webhook:
            task = asyncio.create_task(_answer_at(webhook, gateway, view.id, wait_s, sender))
            waiting.add(task)
            task.add_done_callback(waiting.discard)
            return JSONResponse(
                {"request_id": view.id, "inference_status": deepinfra.status_block("queued", 0)}
            )
        finished = await wait_finished(gateway, view.id, wait_s)
        if finished is not None and not finished.status.is_terminal():
            await gateway.cancel(view.id)
        status, body = _answer(finished, wait_s)
        return JSONResponse(body, status_code=status)

    return router


async def _answer_at(
    url: str, gateway: JobGateway, job_id: str, wait_s: float, sender: WebhookSender
) -> None:
    """Wait for the job, then hand DeepInfra's answer to ``sender`` (which retries)."""
    finished = await wait_finished(gateway, job_id, wait_s)
    if finished is not None and not finished.status.is_terminal():
        await gateway.cancel(job_id)
    status, body = _answer(finished, wait_s)
    if status != 200:
        body.setdefault("request_id", job_id)
        body["inference_status"] = deepinfra.status_block("failed", 0)
    sender.send(url, body)
