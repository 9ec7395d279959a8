"""Stochastic model API: ``submit`` → ``responseUrl`` + ``queuePosition``, then polling.

The images are handed back as ``generatedImages[].presigned_url``: the S3 URL when workers
upload, else a file the local endpoint serves (the route stores each image once per job).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import field_validator

from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.jobs import Failure, JobGateway, JobView, Status
from sdworker.formats import auth
from sdworker.formats import openapi as api
from sdworker.formats.base import (
    Decoded,
    Format,
    FormatContext,
    Models,
    Queued,
    failure_of,
    http_status,
)
from sdworker.formats.pipeline import Pipeline, with_urls
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
from sdworker.formats.web import FormatRoute, Refusal

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


class StochasticFormat(Format[StochasticBody]):
    """The Stochastic model API: a request is queued and polled at its ``responseUrl``."""

    name = "stochastic"
    names = NATIVE_TO_STOCHASTIC
    answers = "queued"

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[StochasticBody]:
        """``{"prompt", "params"}`` → a native input for the model the URL names (``where``'s
        ``model``). With uploads on, the worker uploads and the S3 URL is the
        ``presigned_url``; otherwise the images come back inline and the endpoint serves them.
        """
        name = models.resolve(where.get("model", ""))
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

    def accepted(self, decoded: Decoded[StochasticBody], queued: Queued) -> tuple[int, Any]:
        """``{"success", "data": {"id", "responseUrl", "queuePosition"}}``."""
        return 200, submitted(queued.job_id, queued.status_url or "", queued.position)


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


class ImageUrls:
    """Each finished job's image URLs, made once and then reused (``urls``: job id → its
    URLs). Entries of jobs the queue has forgotten are dropped at each submit, so it holds no
    more than the jobs the queue still keeps."""

    def __init__(self, urls: dict[str, list[str]] | None = None) -> None:
        self.urls: dict[str, list[str]] = {} if urls is None else urls

    async def prune(self, gateway: JobGateway) -> None:
        """Forget the jobs the queue no longer keeps."""
        for job_id in list(self.urls):
            if await gateway.get(job_id) is None:
                self.urls.pop(job_id, None)

    async def of(self, gateway: JobGateway, view: JobView, base_url: str) -> list[str]:
        """The finished job's image URLs (its files stored the first time)."""
        if view.id not in self.urls:
            outputs = await with_urls(gateway, view, base_url)
            self.urls[view.id] = [str(o["url"]) for o in outputs]
        return self.urls[view.id]


def stochastic_router(ctx: FormatContext, urls: dict[str, list[str]] | None = None) -> APIRouter:
    """Submit and poll; auth by the ``apiKey`` header. ``urls`` holds the image URLs made
    for finished jobs (see :class:`ImageUrls`)."""
    images = ImageUrls(urls)
    denied = Refusal(401, error_body("missing or wrong apiKey header"))
    check = auth.header_or_bearer(ctx.settings, "apiKey", denied)
    router = APIRouter(tags=["Stochastic"], route_class=FormatRoute, dependencies=[Depends(check)])
    pipe = Pipeline(STOCHASTIC, ctx)

    @router.post(SUBMIT, openapi_extra=api.STOCHASTIC_SUBMIT)
    async def submit(request: Request, model: str) -> Response:
        """Queue a request: ``{"success", "data": {"id", "responseUrl", "queuePosition"}}``."""
        await images.prune(ctx.gateway(request))

        def result_url(job_id: str) -> str:
            return str(request.url_for("stochastic_result", job_id=job_id))

        return await pipe(request, status_url=result_url, model=model)

    @router.get(RESULT, name="stochastic_result")
    async def poll(request: Request, job_id: str) -> JSONResponse:
        """The request's state; ``generatedImages`` with fetchable URLs once it is done."""
        gateway = ctx.gateway(request)
        view = await gateway.get(job_id)
        if view is None:
            images.urls.pop(job_id, None)
            raise pipe.not_found(job_id)
        if view.status is Status.COMPLETED:
            found = await images.of(gateway, view, str(request.base_url))
            return JSONResponse(result(job_id, view.status, found))
        failure = failure_of(view, ctx.wait_s)
        if view.status.is_terminal() and failure is not None:
            raise pipe.refuse(failure.renamed(STOCHASTIC.names))
        position = await gateway.queue_position(job_id)
        return JSONResponse(result(job_id, view.status, None, position))

    return router
