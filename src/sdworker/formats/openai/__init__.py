"""The OpenAI Images API (``/v1/images/generations``, ``edits``, ``variations``) and its model
list, at ``/v1/...`` and at ``/v1/openai/...`` as DeepInfra serves it.

One call waits for its job, as OpenAI's does. ``n`` images are one native job (image *i*
has seed ``seed + i``); each data item carries its ``seed`` beside ``b64_json`` or ``url``,
and the ``x-sdworker-seeds`` header lists them. Errors come in OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``, ``param`` naming the field in OpenAI's
names (a native ``width`` problem is one of ``size``).

The model's family shapes a request: ``size`` keeps its side rule (16-pixel multiples for SD 3.x
and FLUX.1), and on a model that edits by instruction (FLUX.1 Kontext) an edit without a mask,
of an image with no transparent area, is that instruction edit, as OpenAI's own edits are.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic_core import PydanticCustomError

from sdworker.core.errors import InvalidInput
from sdworker.core.input import ModelFacts
from sdworker.core.jobs import Failure
from sdworker.core.schema import STRENGTH_MODES
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
        facts = models.facts(model)
        try:
            native = native_input(parsed, model, models.uploads, facts)
        except PydanticCustomError as exc:
            raise InvalidInput.one("size", exc.message(), parsed.size) from None
        if isinstance(parsed, EditBody):
            native["image"] = parsed.image
            mask = _edit_mask(parsed, models.max_input_pixels, _edits(facts))
            if mask is not None:
                native["mask_image"] = mask
            _strength(native, parsed.strength, EDIT_STRENGTH, facts, mask is not None)
        elif isinstance(parsed, VariationBody):
            native["image"] = parsed.image
            _strength(native, parsed.strength, VARIATION_STRENGTH, facts, False)
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


def _edits(facts: ModelFacts | None) -> bool:
    """Whether the model edits an image by instruction (an image and a prompt, no mask)."""
    return facts is not None and facts.family.mode_for(True, False) == "edit"


def _strength(
    native: dict[str, Any],
    given: float | None,
    default: float,
    facts: ModelFacts | None,
    masked: bool,
) -> None:
    """The edit's or variation's ``strength``: the body's, else ``default`` where the model
    denoises the image from a strength (not in an instruction edit, which reads the image as
    a reference and is refused a strength by the native rules)."""
    mode = facts.family.mode_for(True, masked) if facts is not None else "img2img"
    if given is not None or mode in STRENGTH_MODES:
        native["strength"] = given or default


def _edit_mask(parsed: EditBody, max_pixels: int, edits: bool = False) -> str | None:
    """The native mask of an edit (see :mod:`.mask`); an image or mask given as a URL is
    fetched by the worker, so its mask must already be white where to paint. None on a model
    that ``edits`` by instruction, for an edit that marks no area (its whole image is read)."""
    image, mask = _base64(parsed.image), _base64(parsed.mask) if parsed.mask else None
    if image is None or (parsed.mask and mask is None):
        if not parsed.mask:
            if edits:
                return None
            raise InvalidInput.one("mask", "is required when the image is a URL", has_value=False)
        return parsed.mask
    return native_mask(image, mask, max_pixels, required=not edits)


def _base64(value: str) -> str | None:
    """The base64 part of an uploaded file or a data URL (None for a URL to fetch)."""
    if value.startswith(("http://", "https://")):
        return None
    if value.startswith("data:"):
        return value.partition(",")[2]
    return value


OPENAI = OpenAIFormat()

__all__ = ["OPENAI", "SEEDS_HEADER", "ImagesBody", "OpenAIFormat", "error_body"]
