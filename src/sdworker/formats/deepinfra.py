"""DeepInfra inference API: one synchronous call (or a webhook) with JSON or form fields.

Form bodies (``curl -F``) carry every value as text, so the fields are typed by the body
model; an uploaded ``image`` file arrives base64-encoded. The ranges are DeepInfra's own
(``num_images`` 1-4, ``num_inference_steps`` 1-512, ``guidance_scale`` 0-20).

The model is the URL's path: a baked model's name or alias, the hub id it was baked from, or
DeepInfra's own name for that model (``black-forest-labs/FLUX-1-schnell`` is FLUX.1 schnell,
``stabilityai/sd3.5`` SD 3.5 Large, :data:`DEEPINFRA_MODELS`). DeepInfra's SD 3.5 models take
an ``aspect_ratio`` in place of a size: it becomes about the model's native pixel count at
that ratio, each side a multiple of what the model's family takes.

The ``deepinfra`` package's ``TextToImage`` sends its ``TextToImageRequest`` fields, every one
present (``null`` when unset): ``num_outputs``, ``mask`` and ``prompt_strength`` are other
spellings of ``num_images``, ``mask_image`` and ``strength``; ``refine``, ``high_noise_frac``
and ``refine_steps`` run the SDXL refiner (Replicate's names); ``apply_watermark`` is accepted
and has no effect (no watermark is ever added).
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field, ValidationInfo, field_validator

from sdworker.core.errors import InvalidInput, ModelNotFound
from sdworker.core.input import ModelFacts
from sdworker.core.jobs import Failure
from sdworker.core.media import CONTENT_TYPES
from sdworker.core.netguard import UrlRefused, check_url
from sdworker.core.schema import SEED_LIMIT
from sdworker.core.settings import MAX_SIDE, MIN_SIDE
from sdworker.formats import auth
from sdworker.formats import openapi as api
from sdworker.formats.base import Decoded, Format, FormatContext, Models, Queued, http_status
from sdworker.formats.modelref import resolve
from sdworker.formats.pipeline import Pipeline
from sdworker.formats.refiner import REFINE, refiner_fields
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
from sdworker.formats.web import FormatRoute, Refusal

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
#: DeepInfra's model paths, where they are not the hub id of the model they serve → that hub
#: id (a model baked from it answers to DeepInfra's path too)
DEEPINFRA_MODELS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^black-forest-labs/FLUX-1-(.+)$", re.I), r"black-forest-labs/FLUX.1-\1"),
    (re.compile(r"^stabilityai/sd3\.5$", re.I), "stabilityai/stable-diffusion-3.5-large"),
    (re.compile(r"^stabilityai/sd3\.5-(.+)$", re.I), r"stabilityai/stable-diffusion-3.5-\1"),
    (re.compile(r"^stability-ai/sdxl$", re.I), "stabilityai/stable-diffusion-xl-base-1.0"),
)
_RATIO = re.compile(r"^\s*(\d{1,2})\s*:\s*(\d{1,2})\s*$")
#: the widest ``aspect_ratio`` taken, either way (DeepInfra's widest is 21:9)
MAX_RATIO = 4.0
#: a model of this native side rounds an ``aspect_ratio`` size to 1/16th of it (64 pixels at
#: 1024, as Stability's own SD 3 sizes are: 1344x768 for 16:9)
_GRAIN_PARTS = 16


class DeepInfraBody(FormatBody):
    """The documented input fields (plus ``mask_image`` and ``scheduler``)."""

    prompt: Prompt
    negative_prompt: Text | None = None
    image: Text | None = None
    mask_image: Text | None = None
    num_images: LaxInt | None = Field(default=None, ge=1, le=MAX_IMAGES)
    num_inference_steps: LaxInt | None = Field(default=None, ge=1, le=512)
    guidance_scale: LaxFloat | None = Field(default=None, ge=0, le=20)
    strength: LaxFloat | None = Field(default=None, ge=0, le=1)
    width: LaxInt | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE)
    height: LaxInt | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE)
    seed: LaxInt | None = Field(default=None, ge=0, lt=SEED_LIMIT)
    #: DeepInfra's SD 3.5 models: the shape, in place of ``width`` and ``height``
    aspect_ratio: Text | None = None
    use_compel: LaxBool | None = None
    lora: Text | None = None
    webhook: Text | None = None
    scheduler: Scheduler | None = None
    # the T5 families' own (SD 3.x, FLUX.1), as the native input takes them
    max_sequence_length: LaxInt | None = None
    true_cfg_scale: LaxFloat | None = None
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

    @field_validator("aspect_ratio")
    @classmethod
    def _ratio(cls, value: str, info: ValidationInfo) -> str:
        if value:
            parse_ratio(value)
            # width and height come first in the body model, so they are in info.data
            if any(info.data.get(side) is not None for side in ("width", "height")):
                raise refuse("two_sizes", "give aspect_ratio or width and height, not both")
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


_NOT_NATIVE = {
    "webhook", "lora", "refine", "high_noise_frac", "refine_steps", "apply_watermark",
    "aspect_ratio",
}  # fmt: skip


def parse_ratio(value: str) -> tuple[int, int]:
    """``"16:9"`` → ``(16, 9)``; raises the validation error ``aspect_ratio`` shows."""
    match = _RATIO.match(value)
    width, height = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not width or not height or not 1 / MAX_RATIO <= width / height <= MAX_RATIO:
        raise refuse(
            "aspect_ratio",
            f"must be WIDTH:HEIGHT, such as 16:9, at most {MAX_RATIO:g}:1 either way",
        )
    return width, height


def ratio_size(ratio: tuple[int, int], facts: ModelFacts | None) -> tuple[int, int]:
    """The size an ``aspect_ratio`` asks of the model: about its native pixel count at that
    ratio, each side rounded to a grain that is a multiple of what its family takes (a model
    not known here is taken as a 1024-pixel one of 16-pixel multiples)."""
    native_w, native_h, multiple = 1024, 1024, 16
    if facts is not None:
        native_w, native_h = facts.native_width, facts.native_height
        multiple = facts.family.size.multiple
    grain = max(multiple, min(native_w, native_h) // _GRAIN_PARTS // multiple * multiple)
    area, (w, h) = native_w * native_h, ratio

    def side(value: float) -> int:
        rounded = max(grain, round(value / grain) * grain)
        return min(max(rounded, math.ceil(MIN_SIDE / grain) * grain), MAX_SIDE // grain * grain)

    return side(math.sqrt(area * w / h)), side(math.sqrt(area * h / w))


def model_named(models: Models, path: str) -> str:
    """The baked model the URL's ``path`` names: as every format reads a name (an alias, the
    hub id it was baked from...), else as DeepInfra names the model that hub id is
    (:data:`DEEPINFRA_MODELS`). :class:`ModelNotFound` when none does."""
    if models.manifests is None:
        return path
    candidates = [path] + [p.sub(hub, path) for p, hub in DEEPINFRA_MODELS if p.match(path)]
    for candidate in candidates:
        name = resolve(models.manifests, candidate)
        if name is not None:
            return name
    raise ModelNotFound(models.unknown_message(path))


def _native(parsed: DeepInfraBody, model: str, facts: ModelFacts | None) -> dict[str, Any]:
    """The native input of a valid body, for the baked ``model`` (``facts``: what is known
    of it)."""
    given = parsed.model_dump(exclude_none=True, exclude=_NOT_NATIVE)
    # empty texts are "not given" (a form sends every field it has, even blank)
    native: dict[str, Any] = {"model": model, "upload": False}
    for key, value in given.items():
        if value != "":
            native[OTHER_SPELLINGS.get(key, key)] = value
    if parsed.aspect_ratio:
        native["width"], native["height"] = ratio_size(parse_ratio(parsed.aspect_ratio), facts)
    if parsed.lora:
        native["lora"] = [{"name": parsed.lora, "scale": 1.0}]
    native.update(
        refiner_fields(
            parsed.refine, parsed.high_noise_frac, parsed.refine_steps, parsed.num_inference_steps
        )
    )
    return native


class DeepInfraFormat(Format[DeepInfraBody]):
    """The DeepInfra inference API: one synchronous call, or an answer at once and the result
    POSTed to the request's ``webhook``."""

    name = "deepinfra"
    names = NATIVE_TO_DEEPINFRA
    forms = True

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[DeepInfraBody]:
        """DeepInfra fields → a native input for the model the URL names (``where``'s
        ``model``); the request keeps its ``webhook``."""
        name = model_named(models, where.get("model", ""))
        parsed, problems = validate(DeepInfraBody, body)
        if problems or parsed is None:
            raise InvalidInput(problems)
        native = _native(parsed, name, models.facts(name))
        return Decoded([native], parsed, webhook=parsed.webhook or None)

    def encode(
        self, decoded: Decoded[Any], outputs: list[dict[str, Any]], execution_ms: int
    ) -> dict[str, Any]:
        """DeepInfra's answer; its ``request_id`` is the job's (empty inside a RunPod job)."""
        request_id = decoded.job_ids[0] if decoded.job_ids else ""
        return response(request_id, outputs, execution_ms)

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        """FastAPI's validation shape (DeepInfra is a FastAPI service): one entry per bad
        field; other failures as ``{"detail": {"error": message}}``."""
        status = http_status(failure, client=422, not_found=404)
        return status, error_body(failure.message, failure)

    def accepted(self, decoded: Decoded[DeepInfraBody], queued: Queued) -> tuple[int, Any]:
        """A call with a ``webhook``, answered at once: its ``request_id``, ``queued``."""
        return 200, {"request_id": queued.job_id, "inference_status": status_block("queued", 0)}

    def webhook_body(self, decoded: Decoded[DeepInfraBody], status: int, body: Any) -> Any:
        """The answer a synchronous call would get; a failed one says ``failed`` and names
        the request."""
        if status != 200:
            body.setdefault("request_id", decoded.job_ids[0])
            body["inference_status"] = status_block("failed", 0)
        return body


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


def deepinfra_router(ctx: FormatContext) -> APIRouter:
    """One inference per call; auth by ``Authorization: bearer <key>``. A ``webhook`` answer
    is POSTed by the server's webhook sender (``ctx.webhooks``); when the app shuts down,
    webhook answers still waiting for their job are cancelled."""
    pipe = Pipeline(DEEPINFRA, ctx)
    denied = Refusal(401, error_body("missing or wrong 'Authorization: bearer <key>' header"))
    router = APIRouter(
        tags=["DeepInfra"],
        lifespan=pipe.lifespan,
        route_class=FormatRoute,
        dependencies=[Depends(auth.bearer(ctx.settings, denied))],
    )

    @router.post(PATH, openapi_extra=api.DEEPINFRA_INFERENCE)
    async def inference(request: Request, model: str) -> Response:
        """Run one inference; with ``webhook`` answer at once and POST the result there."""
        return await pipe(request, model=model)

    return router
