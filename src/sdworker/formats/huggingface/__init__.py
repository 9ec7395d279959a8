"""Hugging Face's text-to-image task: ``huggingface_hub.InferenceClient(...).text_to_image``.

The client posts ``{"inputs": PROMPT, "parameters": {...}}`` to a URL it is given unchanged:
``/hf/models/{model}`` here (the model resolves as every format's does: a baked name, an
alias, the hub id it was baked from), or the root ``POST /``, as an Inference Endpoint serves
it (the default model). One call waits for its image and answers with the image's bytes, in
the type its ``Accept`` header asks for (``image/png``, which the client sends, ``image/jpeg``
or ``image/webp``). Errors come as HF's ``{"error": message}``, which the client raises with
the message in it (``BadRequestError`` for a 400), each bad field named
``parameters.width``.

``parameters`` are the ones HF's ``TextToImageParameters`` lists; ``scheduler`` is a diffusers
class name (or any name the native input takes). ``options`` (``wait_for_model``,
``use_cache``, which older clients send) is accepted and has no effect.

Inside a RunPod job, the same body is an envelope (:mod:`sdworker.runpod.envelopes`); the
job's output is then the native one (``[{"image": base64, "seed"}]``): a job's output is JSON.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from sdworker.core.errors import InvalidInput
from sdworker.core.jobs import Failure
from sdworker.core.media import CONTENT_TYPES
from sdworker.formats.base import Decoded, Format, Models, Raw, http_status
from sdworker.formats.openai import SEEDS_HEADER
from sdworker.formats.validation import (
    FormatBody,
    LaxFloat,
    LaxInt,
    Prompt,
    Scheduler,
    Text,
    validate,
)

#: the native fields HF's ``parameters`` carry, by the same names
PARAMETERS = (
    "negative_prompt",
    "height",
    "width",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "scheduler",
)
NATIVE_TO_HF: dict[str, str] = {
    **{name: f"parameters.{name}" for name in PARAMETERS},
    "prompt": "inputs",
}
#: ``Accept`` media types → the native ``output_format``; the first is the default
ACCEPTED: dict[str, str] = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}
_WILDCARDS = ("*/*", "image/*")


class HFParameters(FormatBody):
    """``TextToImageParameters``; the ranges are the native input's, checked by the job."""

    negative_prompt: Text | None = None
    height: LaxInt | None = None
    width: LaxInt | None = None
    num_inference_steps: LaxInt | None = None
    guidance_scale: LaxFloat | None = None
    seed: LaxInt | None = None
    scheduler: Scheduler | None = None


class HFBody(FormatBody):
    """The task's body: the prompt as ``inputs``, the rest as ``parameters``."""

    inputs: Prompt
    parameters: HFParameters = Field(default_factory=HFParameters)
    inert = frozenset({"options"})


@dataclass(frozen=True)
class HFRequest:
    """What answering needs: the media type the image is sent in."""

    media_type: str


def media_type(accept: str | None) -> str:
    """The image type an ``Accept`` header asks for (PNG when it names none, or any); one
    that names only types no image comes in is refused, naming the header."""
    if not accept or not accept.strip():
        return "image/png"
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept.split(",")):
        kind, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, index, kind.lower()))
    for _, _, kind in sorted(ranked):
        if kind in ACCEPTED:
            return kind
        if kind in _WILDCARDS:
            return "image/png"
    raise InvalidInput.one(
        "Accept", f"must accept one of {', '.join(ACCEPTED)} (the image's type)", accept
    )


class HuggingFaceFormat(Format[HFRequest]):
    """HF's text-to-image task: one synchronous call answered with the image's bytes."""

    name = "huggingface"
    names = NATIVE_TO_HF

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[HFRequest]:
        """``{"inputs", "parameters"}`` → one native input for the model ``where["model"]``
        names (the default one when it names none), in the type ``where["accept"]`` asks."""
        parsed, problems = validate(HFBody, body)
        try:
            kind = media_type(where.get("accept"))
        except InvalidInput as exc:
            problems += exc.problems
            kind = "image/png"
        if problems or parsed is None:
            raise InvalidInput(problems)
        native: dict[str, Any] = {"prompt": parsed.inputs, "output_format": ACCEPTED[kind]}
        native.update(parsed.parameters.model_dump(exclude_none=True))
        if where.get("model"):
            native["model"] = models.resolve(where["model"])
        # the answer is the image itself: never an upload
        native["upload"] = False
        return Decoded([native], HFRequest(kind))

    def encode(
        self, decoded: Decoded[HFRequest], outputs: list[dict[str, Any]], execution_ms: int
    ) -> Raw:
        """The (one) image's bytes, in the type asked for."""
        image = base64.b64decode(str(outputs[0].get("image") or "")) if outputs else b""
        kind = CONTENT_TYPES.get(str(outputs[0].get("format"))) if outputs else None
        return Raw(image, kind or decoded.request.media_type)

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        """HF's ``{"error": message}``: 400 for a bad request (as HF's inference toolkit
        answers), 404 for an unknown model, 5xx only for our own faults."""
        return http_status(failure, client=400, not_found=404), error_body(failure.message)

    def headers(self, decoded: Decoded[HFRequest], outputs: list[dict[str, Any]]) -> dict[str, str]:
        """``x-sdworker-seeds``: the image's seed (HF's answer has no room for it)."""
        return {SEEDS_HEADER: ",".join(str(o.get("seed")) for o in outputs)}


def error_body(message: str) -> dict[str, Any]:
    """HF's error shape, which ``huggingface_hub`` reads into its exception's message."""
    return {"error": message}


def is_task(raw: Mapping[str, Any]) -> bool:
    """Whether a RunPod job's ``input`` is this task's body (``inputs``, and ``parameters``
    and ``options`` at most): no native input has an ``inputs`` key."""
    return "inputs" in raw and set(raw) <= {"inputs", "parameters", "options"}


HUGGINGFACE = HuggingFaceFormat()
