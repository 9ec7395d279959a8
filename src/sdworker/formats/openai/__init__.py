"""The OpenAI Images API (``/v1/images/generations``, ``edits``, ``variations``) and its model
list, at ``/v1/...`` and at ``/v1/openai/...`` as DeepInfra serves it.

One call waits for its job, as OpenAI's does. ``n`` images are one native job (image *i*
has seed ``seed + i``); each data item carries its ``seed`` beside ``b64_json`` or ``url``,
and the ``x-sdworker-seeds`` header lists them. Errors come in OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``, ``param`` naming the field in OpenAI's
names (a native ``width`` problem is one of ``size``).
"""

from __future__ import annotations

import time
from typing import Any

from sdworker.core.errors import InvalidInput
from sdworker.core.jobs import Failure
from sdworker.formats.base import Decoded, Format, Models, http_status
from sdworker.formats.openai.errors import error_body
from sdworker.formats.openai.mask import native_mask
from sdworker.formats.openai.request import (
    BODIES,
    EDIT_STRENGTH,
    SEEDS_HEADER,
    VARIATION_STRENGTH,
    EditBody,
    ImagesBody,
    ImagesRequest,
    VariationBody,
    native_input,
    request_of,
)
from sdworker.formats.validation import validate

#: native field → OpenAI's name, for failures of the native job
NATIVE_TO_OPENAI: dict[str, str] = {
    "num_images": "n",
    "width": "size",
    "height": "size",
    "mask_image": "mask",
}


class OpenAIFormat(Format[ImagesRequest]):
    """The OpenAI Images API: one synchronous call per request, JSON or multipart."""

    name = "openai"
    names = NATIVE_TO_OPENAI
    forms = True

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[ImagesRequest]:
        """A body of the ``where["kind"]`` endpoint (``generations``, ``edits``,
        ``variations``) → one native input."""
        kind = where.get("kind", "generations")
        parsed, problems = validate(BODIES[kind], body)
        if problems or parsed is None:
            raise InvalidInput(problems)
        # no model: the default one
        model = models.resolve(parsed.model) if parsed.model else None
        native = native_input(parsed, model, models.uploads)
        if isinstance(parsed, EditBody):
            native["image"] = parsed.image
            native["mask_image"] = _edit_mask(parsed, models.max_input_pixels)
            native["strength"] = parsed.strength or EDIT_STRENGTH
        elif isinstance(parsed, VariationBody):
            native["image"] = parsed.image
            native["strength"] = parsed.strength or VARIATION_STRENGTH
        return Decoded([native], request_of(kind, parsed))

    def encode(
        self, decoded: Decoded[ImagesRequest], outputs: list[dict[str, Any]], execution_ms: int
    ) -> dict[str, Any]:
        """OpenAI's ``ImagesResponse``; a ``url`` answer reads each output's ``url`` (the
        route stores inline images and sets it)."""
        request = decoded.request
        data: list[dict[str, Any]] = []
        for out in outputs:
            item: dict[str, Any] = {"revised_prompt": None, "seed": out.get("seed")}
            if request.response_format == "url":
                item["url"] = out.get("url")
            else:
                item["b64_json"] = out.get("image")
            data.append(item)
        answer: dict[str, Any] = {
            "created": int(time.time()),
            "data": data,
            "output_format": request.output_format,
        }
        if request.size:
            answer["size"] = request.size
        return answer

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        """OpenAI's status and ``{"error": {...}}``: 400 for bad input, 404 for an unknown
        model, 5xx only for our own faults."""
        status = http_status(failure, client=400, not_found=404)
        param = failure.problems[0].field if failure.problems else None
        if failure.code == "model_not_found":
            param, code = "model", "model_not_found"
        elif failure.code == "invalid_input":
            code = None
        else:
            code = failure.code
        return status, error_body(failure.message, status, param, code)

    def wants_urls(self, decoded: Decoded[ImagesRequest]) -> bool:
        """A ``url`` answer needs a fetchable URL for every image."""
        return decoded.request.response_format == "url"

    def headers(
        self, decoded: Decoded[ImagesRequest], outputs: list[dict[str, Any]]
    ) -> dict[str, str]:
        """``x-sdworker-seeds``: each image's seed, in order."""
        return {SEEDS_HEADER: ",".join(str(o.get("seed")) for o in outputs)}


def _edit_mask(parsed: EditBody, max_pixels: int) -> str:
    """The native mask of an edit (see :mod:`.mask`); an image or mask given as a URL is
    fetched by the worker, so its mask must already be white where to paint."""
    image, mask = _base64(parsed.image), _base64(parsed.mask) if parsed.mask else None
    if image is None or (parsed.mask and mask is None):
        if not parsed.mask:
            raise InvalidInput.one("mask", "is required when the image is a URL", has_value=False)
        return parsed.mask
    return native_mask(image, mask, max_pixels)


def _base64(value: str) -> str | None:
    """The base64 part of an uploaded file or a data URL (None for a URL to fetch)."""
    if value.startswith(("http://", "https://")):
        return None
    if value.startswith("data:"):
        return value.partition(",")[2]
    return value


OPENAI = OpenAIFormat()

__all__ = ["OPENAI", "SEEDS_HEADER", "ImagesBody", "OpenAIFormat", "error_body"]
