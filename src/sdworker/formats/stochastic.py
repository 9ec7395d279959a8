"""Stochastic model API: ``submit`` → ``responseUrl`` + ``queuePosition``, then polling.

The images are handed back as ``generatedImages[].presigned_url``: the S3 URL when workers
upload, else a file the local endpoint serves (the route stores each image once per job).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import field_validator

from sdworker.core.errors import InvalidInput, ModelNotFound, Problem, SdworkerError
from sdworker.core.jobs import Failure, JobGateway, JobView, Status
from sdworker.core.media import CONTENT_TYPES, EXTENSIONS
from sdworker.formats import auth
from sdworker.formats import openapi as api
from sdworker.formats.base import Decoded, FormatContext, Models, failure_of, http_status
from sdworker.formats.http import outputs_of, read_json
from sdworker.formats.modelref import resolve, unknown_model
from sdworker.formats.validation import (
    FormatBody,
    LaxFloat,
    LaxInt,
    Prompt,
    Scheduler,
    Text,
    refuse,
    validate,
)
from sdworker.formats.web import FormatRoute, Refusal, refusal

SUBMIT = "/v1/modelApi/submit/{model:path}"
RESULT = "/v1/modelApi/inference/{job_id}"

#: params key → native key
PARAMS: dict[str, str] = {
    "img_height": "height",
    "img_width": "width",
    "num_inference_steps": "num_inference_steps",
    "guidance_scale": "guidance_scale",
    "seed": "seed",
    "negative_prompt": "negative_prompt",
    "num_images": "num_images",
    # the native input's own spelling of num_images: a refusal names it as the client did,
    # and both given is refused rather than one silently winning
    "num_images_per_prompt": "num_images_per_prompt",
    "scheduler": "scheduler",
}
NATIVE_TO_STOCHASTIC: dict[str, str] = {
    **{v: f"params.{k}" for k, v in PARAMS.items()},
    "model": "model",
}
STATUS: dict[Status, str] = {
    Status.IN_QUEUE: "queued",
    Status.IN_PROGRESS: "processing",
    Status.COMPLETED: "completed",
    Status.FAILED: "failed",
    Status.CANCELLED: "cancelled",
    Status.TIMED_OUT: "failed",
}


class Params(FormatBody):
    """Generation parameters; ranges are the native input's, checked by the job."""

    img_height: LaxInt | None = None
    img_width: LaxInt | None = None
    num_inference_steps: LaxInt | None = None
    guidance_scale: LaxFloat | None = None
    seed: LaxInt | None = None
    negative_prompt: Text | None = None
    num_images: LaxInt | None = None
    num_images_per_prompt: LaxInt | None = None
    scheduler: Scheduler | None = None


class StochasticBody(FormatBody):
    """``{"prompt", "params"}``."""

    prompt: Prompt
    params: Params

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, value: Any) -> Any:
        # the API takes an array for text models; an image request is one prompt
        if isinstance(value, list):
            if len(value) != 1:
                raise refuse("one_prompt", "must be one prompt (a string or a one-element array)")
            return value[0]
        return value


class StochasticFormat:
    """The Stochastic model API."""

    name = "stochastic"
    names: Mapping[str, str] = NATIVE_TO_STOCHASTIC
    media_type: str | None = None

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[StochasticBody]:
        """``{"prompt", "params"}`` → a native input for the model the URL names (``where``'s
        ``model``). With uploads on, the worker uploads and the S3 URL is the
        ``presigned_url``; otherwise the images come back inline and the endpoint serves them.
        """
        model = where.get("model", "")
        name = resolve(models.manifests or [], model) if models.manifests is not None else model
        if name is None:
            raise ModelNotFound(unknown_model(models.manifests or [], model))
        parsed, problems = validate(StochasticBody, body)
        if problems or parsed is None:
            raise InvalidInput(problems)
        native: dict[str, Any] = {"prompt": parsed.prompt, "model": name}
        if models.uploads:
            native["upload"] = True
        for key, value in parsed.params.model_dump(exclude_none=True).items():
            native[PARAMS[key]] = value
        return Decoded([native], parsed)

    def encode(
        self, decoded: Decoded[Any], outputs: list[dict[str, Any]], execution_ms: int
    ) -> dict[str, Any]:
        """The finished request, for outputs that carry their ``url``."""
        urls = [str(o.get("url", "")) for o in outputs]
        return {
            "success": True,
            "data": {
                "status": "completed",
                "generatedImages": [{"presigned_url": u} for u in urls],
            },
        }

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        """``success: false`` with the message and the bad fields; a non-2xx status, so the
        documented loop's ``raise_for_status()`` ends it."""
        status = (
            410 if failure.code == "cancelled" else http_status(failure, client=400, not_found=404)
        )
        return status, error_body(failure.message, failure.problems)

    def router(self, ctx: FormatContext) -> APIRouter:
        """Submit and poll; auth by the ``apiKey`` header."""
        return _router(self, ctx)


def submitted(job_id: str, response_url: str, position: int | None) -> dict[str, Any]:
    """The answer to ``submit``; the documented shape writes the position as a string."""
    return {
        "success": True,
        "data": {"id": job_id, "responseUrl": response_url, "queuePosition": str(position or 0)},
    }


def result(
    job_id: str, status: Status, urls: list[str] | None, position: int | None = None
) -> dict[str, Any]:
    """The answer to polling ``responseUrl``: ``generatedImages`` only once the job is done."""
    data: dict[str, Any] = {"id": job_id, "status": STATUS[status]}
    if status is Status.IN_QUEUE:
        data["queuePosition"] = str(position or 0)
    if urls is not None:
        data["generatedImages"] = [{"presigned_url": u} for u in urls]
    return {"success": True, "data": data}


def error_body(message: str, problems: tuple[Problem, ...] | list[Problem] = ()) -> dict[str, Any]:
    """Stochastic's failure answer: ``success: false`` with the message and the bad fields."""
    body: dict[str, Any] = {"success": False, "message": message}
    if problems:
        body["errors"] = [{"field": p.field, "message": str(p)} for p in problems]
    return body


STOCHASTIC = StochasticFormat()


def _router(
    fmt: StochasticFormat, ctx: FormatContext, urls: dict[str, list[str]] | None = None
) -> APIRouter:
    """Image URLs are made once per job and then reused: ``urls`` (job id → its image URLs)
    is the cache; each submit drops the entries of jobs the queue has forgotten, so it holds
    no more than the jobs the queue still keeps."""
    cache: dict[str, list[str]] = {} if urls is None else urls
    denied = Refusal(401, error_body("missing or wrong apiKey header"))
    check = auth.header_or_bearer(ctx.settings, "apiKey", denied)
    router = APIRouter(tags=["Stochastic"], route_class=FormatRoute, dependencies=[Depends(check)])

    async def prune(gateway: JobGateway) -> None:
        for job_id in list(cache):
            if await gateway.get(job_id) is None:
                cache.pop(job_id, None)

    @router.post(SUBMIT, openapi_extra=api.STOCHASTIC_SUBMIT)
    async def submit(request: Request, model: str) -> JSONResponse:
        """Queue a request: ``{"success", "data": {"id", "responseUrl", "queuePosition"}}``."""
        try:
            body = await read_json(request, ctx.body_limit)
            decoded = fmt.decode(body, ctx.models(), model=model)
        except SdworkerError as exc:
            raise refusal(fmt, Failure.of(exc)) from None
        gateway = ctx.gateway(request)
        await prune(gateway)
        view = await gateway.submit(decoded.inputs[0])
        position = await gateway.queue_position(view.id)
        url = str(request.url_for("stochastic_result", job_id=view.id))
        return JSONResponse(submitted(view.id, url, position))

    @router.get(RESULT, name="stochastic_result")
    async def poll(request: Request, job_id: str) -> JSONResponse:
        """The request's state; ``generatedImages`` with fetchable URLs once it is done."""
        gateway = ctx.gateway(request)
        view = await gateway.get(job_id)
        if view is None:
            cache.pop(job_id, None)
            raise Refusal(404, error_body(f"no request {job_id!r} (unknown or expired)"))
        if view.status is Status.COMPLETED:
            if job_id not in cache:
                cache[job_id] = await _image_urls(gateway, view, str(request.base_url))
            return JSONResponse(result(job_id, view.status, cache[job_id]))
        if view.status.is_terminal():
            failure = failure_of(view, ctx.wait_s)
            assert failure is not None  # terminal and not completed
            raise refusal(fmt, failure.renamed(fmt.names))
        position = await gateway.queue_position(job_id)
        return JSONResponse(result(job_id, view.status, None, position))

    return router


def stochastic_router(ctx: FormatContext, urls: dict[str, list[str]] | None = None) -> APIRouter:
    """The Stochastic routes with an explicit URL cache (see :func:`_router`)."""
    return _router(STOCHASTIC, ctx, urls)


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
        name = f"{view.id}-{index}.{EXTENSIONS.get(fmt, fmt)}"
        url = await gateway.store_file(
            view.id, name, base64.b64decode(data), CONTENT_TYPES.get(fmt, "image/png")
        )
        found.append(urljoin(base_url, url))
    return found
