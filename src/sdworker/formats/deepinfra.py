"""DeepInfra inference API: one synchronous call (or a webhook) with JSON or form fields.

Form bodies (``curl -F``) carry every value as text, so the fields are typed by the body
model; an uploaded ``image`` file arrives base64-encoded. The ranges are DeepInfra's own
(``num_images`` 1-4, ``num_inference_steps`` 1-512, ``guidance_scale`` 1-20).

The ``deepinfra`` package's ``TextToImage`` sends its ``TextToImageRequest`` fields, every one
present (``null`` when unset): ``num_outputs``, ``mask`` and ``prompt_strength`` are other
spellings of ``num_images``, ``mask_image`` and ``strength``; ``refine``, ``high_noise_frac``
and ``refine_steps`` run the SDXL refiner (Replicate's names); ``apply_watermark`` is accepted
and has no effect (no watermark is ever added).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationInfo, field_validator

from sdworker.core.errors import InvalidInput, ModelNotFound, SdworkerError
from sdworker.core.jobs import Failure, JobGateway, JobView
from sdworker.core.media import CONTENT_TYPES
from sdworker.core.netguard import UrlRefused, check_url
from sdworker.core.schema import SEED_LIMIT
from sdworker.core.settings import MAX_SIDE, MIN_SIDE
from sdworker.formats import auth
from sdworker.formats import openapi as api
from sdworker.formats.base import (
    Decoded,
    FormatContext,
    Models,
    WebhookSend,
    failure_of,
    http_status,
)
from sdworker.formats.http import is_form, outputs_of, read_form, read_json, wait_finished
from sdworker.formats.modelref import resolve, unknown_model
from sdworker.formats.validation import (
    FormatBody,
    LaxBool,
    LaxFloat,
    LaxInt,
    Prompt,
    Scheduler,
    Text,
    refuse,
    validate,
)
from sdworker.formats.web import FormatRoute, Refusal, refusal

PATH = "/v1/inference/{model:path}"
MAX_IMAGES = 4
#: the native names DeepInfra spells its own way
NATIVE_TO_DEEPINFRA: dict[str, str] = {
    "num_images_per_prompt": "num_images",
    "refiner_inference_steps": "refine_steps",
}
#: ``TextToImageRequest``'s spellings → the documented fields they stand for
OTHER_SPELLINGS: dict[str, str] = {
    "num_outputs": "num_images",
    "mask": "mask_image",
    "prompt_strength": "strength",
}
#: ``refine`` values: no refiner, the ensemble of experts, or a refining pass after the base
REFINE = ("no_refiner", "expert_ensemble_refiner", "base_image_refiner")
#: the refining pass's steps when neither ``refine_steps`` nor ``num_inference_steps`` is given
DEFAULT_REFINE_STEPS = 25


class DeepInfraBody(FormatBody):
    """The documented input fields (plus ``mask_image`` and ``scheduler``)."""

    prompt: Prompt
    negative_prompt: Text | None = None
    image: Text | None = None
    mask_image: Text | None = None
    num_images: LaxInt | None = Field(default=None, ge=1, le=MAX_IMAGES)
    num_inference_steps: LaxInt | None = Field(default=None, ge=1, le=512)
    guidance_scale: LaxFloat | None = Field(default=None, ge=1, le=20)
    strength: LaxFloat | None = Field(default=None, ge=0, le=1)
    width: LaxInt | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE)
    height: LaxInt | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE)
    seed: LaxInt | None = Field(default=None, ge=0, lt=SEED_LIMIT)
    use_compel: LaxBool | None = None
    lora: Text | None = None
    webhook: Text | None = None
    scheduler: Scheduler | None = None
    # the deepinfra package's TextToImageRequest
    num_outputs: LaxInt | None = Field(default=None, ge=1, le=MAX_IMAGES)
    mask: Text | None = None
    prompt_strength: LaxFloat | None = Field(default=None, ge=0, le=1)
    refine: Text | None = None
    high_noise_frac: LaxFloat | None = Field(default=None, gt=0, lt=1)
    refine_steps: LaxInt | None = Field(default=None, ge=1, le=512)
    apply_watermark: LaxBool | None = None

    @field_validator("refine")
    @classmethod
    def _refine(cls, value: str) -> str:
        if value and value not in REFINE:
            raise refuse("refine", f"must be one of {', '.join(REFINE)}")
        return value

    @field_validator(*OTHER_SPELLINGS)
    @classmethod
    def _one_spelling(cls, value: Any, info: ValidationInfo) -> Any:
        # the documented field comes first in the body model, so it is in info.data
        field = OTHER_SPELLINGS[str(info.field_name)]
        if value not in (None, "") and info.data.get(field) not in (None, ""):
            raise refuse("two_spellings", f"give {field} or {info.field_name}, not both")
        return value

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # the same rule as every webhook (the sender checks the address when it posts)
        if value:
            try:
                check_url(value)
            except UrlRefused as exc:
                raise refuse("url", str(exc)) from None
        return value


_NOT_NATIVE = {"webhook", "lora", "refine", "high_noise_frac", "refine_steps", "apply_watermark"}


def _native(parsed: DeepInfraBody, model: str) -> dict[str, Any]:
    """The native input of a valid body, for the baked ``model``."""
    given = parsed.model_dump(exclude_none=True, exclude=_NOT_NATIVE)
    # empty texts are "not given" (a form sends every field it has, even blank)
    native: dict[str, Any] = {"model": model, "upload": False}
    for key, value in given.items():
        if value != "":
            native[OTHER_SPELLINGS.get(key, key)] = value
    if parsed.lora:
        native["lora"] = [{"name": parsed.lora, "scale": 1.0}]
    if parsed.refine == "expert_ensemble_refiner":
        native["high_noise_frac"] = parsed.high_noise_frac or 0.8
        if parsed.refine_steps:
            native["refiner_inference_steps"] = parsed.refine_steps
    elif parsed.refine == "base_image_refiner":
        native["refiner_inference_steps"] = (
            parsed.refine_steps or parsed.num_inference_steps or DEFAULT_REFINE_STEPS
        )
    return native


class DeepInfraFormat:
    """The DeepInfra inference API."""

    name = "deepinfra"
    names: Mapping[str, str] = NATIVE_TO_DEEPINFRA
    media_type: str | None = None

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[DeepInfraBody]:
        """DeepInfra fields → a native input for the model the URL names (``where``'s
        ``model``); the request keeps its ``webhook``."""
        model = where.get("model", "")
        name = resolve(models.manifests or [], model) if models.manifests is not None else model
        if name is None:
            raise ModelNotFound(unknown_model(models.manifests or [], model))
        parsed, problems = validate(DeepInfraBody, body)
        if problems or parsed is None:
            raise InvalidInput(problems)
        return Decoded([_native(parsed, name)], parsed)

    def encode(
        self, decoded: Decoded[Any], outputs: list[dict[str, Any]], execution_ms: int
    ) -> dict[str, Any]:
        """DeepInfra's answer (its ``request_id`` is left to the route)."""
        return response("", outputs, execution_ms)

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        """FastAPI's validation shape (DeepInfra is a FastAPI service): one entry per bad
        field; other failures as ``{"detail": {"error": message}}``."""
        status = http_status(failure, client=422, not_found=404)
        return status, error_body(failure.message, failure)

    def router(self, ctx: FormatContext) -> APIRouter:
        """One inference per call; auth by ``Authorization: bearer <key>``."""
        return _router(self, ctx)


def response(
    request_id: str, outputs: list[dict[str, Any]], runtime_ms: int | None
) -> dict[str, Any]:
    """DeepInfra's answer: data-URL images, NSFW flags, the first seed, ``inference_status``."""
    images: list[str | None] = []
    for o in outputs:
        if "image" in o:
            mime = CONTENT_TYPES.get(str(o.get("format", "png")), "image/png")
            images.append(f"data:{mime};base64,{o['image']}")
        else:
            images.append(o.get("url"))
    return {
        "images": images,
        "nsfw_content_detected": [bool(o.get("nsfw_content_detected")) for o in outputs],
        "seed": outputs[0].get("seed") if outputs else None,
        "request_id": request_id,
        "inference_status": status_block("succeeded", runtime_ms),
    }


def status_block(status: str, runtime_ms: int | None) -> dict[str, Any]:
    """DeepInfra's ``inference_status``."""
    return {
        "status": status,
        "runtime_ms": int(runtime_ms or 0),
        "cost": 0.0,
        "tokens_generated": 0,
        "tokens_input": 0,
    }


def error_body(message: str, failure: Failure | None = None) -> dict[str, Any]:
    """``detail`` as a list of bad fields (``loc``, ``msg``, ``type``) or ``{"error": ...}``."""
    if failure is not None and failure.problems:
        return {
            "detail": [
                {"loc": ["body", *p.field.split(".")], "msg": str(p), "type": "value_error"}
                for p in failure.problems
            ]
        }
    return {"detail": {"error": message}}


DEEPINFRA = DeepInfraFormat()


def _answer(view: JobView | None, wait_s: float) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for a job as it stands after waiting."""
    failure = failure_of(view, wait_s)
    if failure is None and view is not None:
        return 200, response(view.id, outputs_of(view), view.execution_time_ms)
    assert failure is not None
    return DEEPINFRA.encode_error(failure.renamed(DEEPINFRA.names))


def _router(fmt: DeepInfraFormat, ctx: FormatContext) -> APIRouter:
    """A ``webhook`` answer is POSTed by the server's webhook sender (``ctx.webhooks``). When
    the app shuts down, requests still waiting for their job are cancelled."""
    waiting: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)

    denied = Refusal(401, error_body("missing or wrong 'Authorization: bearer <key>' header"))
    check = auth.bearer(ctx.settings, denied)
    router = APIRouter(
        tags=["DeepInfra"],
        lifespan=lifespan,
        route_class=FormatRoute,
        dependencies=[Depends(check)],
    )

    @router.post(PATH, openapi_extra=api.DEEPINFRA_INFERENCE)
    async def inference(request: Request, model: str) -> JSONResponse:
        """Run one inference; with ``webhook`` answer at once and POST the result there."""
        try:
            limit = ctx.body_limit
            body = await (
                read_form(request, limit) if is_form(request) else read_json(request, limit)
            )
            decoded = fmt.decode(body, ctx.models(), model=model)
        except SdworkerError as exc:
            raise refusal(fmt, Failure.of(exc)) from None
        gateway = ctx.gateway(request)
        view = await gateway.submit(decoded.inputs[0])
        webhook = decoded.request.webhook
        if webhook:
            send = ctx.webhooks(request)
            task = asyncio.create_task(_answer_at(webhook, gateway, view.id, ctx.wait_s, send))
            waiting.add(task)
            task.add_done_callback(waiting.discard)
            return JSONResponse(
                {"request_id": view.id, "inference_status": status_block("queued", 0)}
            )
        finished = await wait_finished(gateway, view.id, ctx.wait_s)
        if finished is not None and not finished.status.is_terminal():
            await gateway.cancel(view.id)
        status, answer = _answer(finished, ctx.wait_s)
        return JSONResponse(answer, status_code=status)

    return router


async def _answer_at(
    url: str, gateway: JobGateway, job_id: str, wait_s: float, send: WebhookSend
) -> None:
    """Wait for the job, then hand DeepInfra's answer to ``send`` (which retries)."""
    finished = await wait_finished(gateway, job_id, wait_s)
    if finished is not None and not finished.status.is_terminal():
        await gateway.cancel(job_id)
    status, body = _answer(finished, wait_s)
    if status != 200:
        body.setdefault("request_id", job_id)
        body["inference_status"] = status_block("failed", 0)
    send(url, body)
