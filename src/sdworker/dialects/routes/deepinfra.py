"""DeepInfra inference API: synchronous by default, or answered at a ``webhook``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from sdworker.dialects import deepinfra
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

log = logging.getLogger(__name__)

PATH = "/v1/inference/{model:path}"
WEBHOOK_ATTEMPTS = 3
#: seconds between webhook attempts (a module value, so tests can shrink it)
WEBHOOK_BACKOFF_S = 10.0
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


def deepinfra_router(ctx: DialectContext) -> APIRouter:
    """Auth by ``Authorization: bearer <key>``."""
    router = APIRouter(tags=["DeepInfra"])
    tasks: set[asyncio.Task[None]] = set()

    @router.post(PATH)
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
        if webhook:
            task = asyncio.create_task(
                _deliver(gateway, view.id, webhook, ctx.settings.dialect_wait_s)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return JSONResponse(
                {"request_id": view.id, "inference_status": deepinfra.status_block("queued", 0)}
            )
        wait_s = ctx.settings.dialect_wait_s
        finished = await wait_finished(gateway, view.id, wait_s)
        if finished is not None and not finished.status.is_terminal():
            await gateway.cancel(view.id)
        status, body = _answer(finished, wait_s)
        return JSONResponse(body, status_code=status)

    return router


async def _deliver(gateway: JobGateway, job_id: str, url: str, wait_s: float) -> None:
    """Wait for the job, then POST DeepInfra's answer to the webhook (with retries)."""
    status, body = _answer(await wait_finished(gateway, job_id, wait_s), wait_s)
    if status != 200:
        body.setdefault("request_id", job_id)
        body["inference_status"] = deepinfra.status_block("failed", 0)
    async with httpx.AsyncClient(timeout=30.0) as client:
        for attempt in range(WEBHOOK_ATTEMPTS):
            try:
                response = await client.post(url, json=body)
                if response.status_code < 400:
                    return
            except httpx.HTTPError as exc:
                log.warning("webhook %s for %s failed: %s", url, job_id, exc)
            if attempt + 1 < WEBHOOK_ATTEMPTS:
                await asyncio.sleep(WEBHOOK_BACKOFF_S)
    log.warning("webhook %s for %s gave up after %d attempts", url, job_id, WEBHOOK_ATTEMPTS)
