"""The OpenAI Images API's request bodies, and what each becomes as native inputs.

``generations`` is JSON; ``edits`` and ``variations`` are multipart forms (as the ``openai``
package sends them: its uploaded files arrive base64-encoded, see
:func:`sdworker.formats.http.read_form`) or JSON with the images as base64 or URLs.

Fields with no meaning for Stable Diffusion are accepted and have no effect (``quality``,
``style``, ``user``, ``safety_identifier``, ``moderation``, ``output_compression``) or
accepted only at the value that matches what we do (``background``, ``stream``). Beside
OpenAI's fields every body takes the Stable Diffusion ones a client may send through the
package's ``extra_body``: ``negative_prompt``, ``seed``, ``num_inference_steps``,
``guidance_scale``, ``scheduler`` (and ``strength`` for edits and variations), and the fields
only some model families take (``use_compel``, ``clip_skip``; ``max_sequence_length``,
``true_cfg_scale``), refused naming the family where they do not apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from sdworker.core.input import ModelFacts
from sdworker.core.input.family import described
from sdworker.core.schema import SEED_LIMIT
from sdworker.core.settings import MAX_SIDE, MIN_SIDE, SIDE_STEP
from sdworker.formats.validation import (
    FormatBody,
    LaxBool,
    LaxFloat,
    LaxInt,
    Prompt,
    Scheduler,
    Text,
    default_only,
    refuse,
)

#: the response header that lists each image's seed, in order
SEEDS_HEADER = "x-sdworker-seeds"
Kind = Literal["generations", "edits", "variations"]
#: the most images one request may ask for (the native ``num_images`` limit)
MAX_N = 8
RESPONSE_FORMATS = ("url", "b64_json")
#: OpenAI's ``output_format`` → the native one
OUTPUT_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "webp": "webp"}
QUALITIES = ("auto", "standard", "hd", "low", "medium", "high")
STYLES = ("vivid", "natural")
#: the prompt of a variation, which OpenAI's API does not take (a body may give its own)
VARIATION_PROMPT = "a variation of this image"
#: how far a variation departs from its image, unless the body says
VARIATION_STRENGTH = 0.6
#: an edit repaints its masked area from noise, unless the body says
EDIT_STRENGTH = 1.0
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")
#: values accepted only because they are what this server does anyway
_DEFAULT_ONLY: dict[str, tuple[Any, ...]] = {
    "background": ("auto", "opaque"),
    "stream": (False,),
    "partial_images": (0,),
}


def parse_size(
    value: str, facts: ModelFacts | None = None, *, shape_only: bool = False
) -> tuple[int, int] | None:
    """``"512x768"`` → ``(512, 768)``; ``"auto"`` → None (the model's native size). Raises
    the validation error the ``size`` field shows: each side a multiple of what the model's
    family takes (``facts``; 8 where the model is not known, 16 for SD 3.x and FLUX.1), or
    with ``shape_only`` (the body's own check, before the model is known) any number of
    pixels in range."""
    if value.strip().lower() == "auto":
        return None
    match = _SIZE.match(value)
    if not match:
        raise refuse("size", "must be WIDTHxHEIGHT, such as 512x512, or auto")
    width, height = int(match.group(1)), int(match.group(2))
    step = facts.family.size.multiple if facts is not None else SIDE_STEP
    step = 1 if shape_only else step
    who = described(facts) if facts is not None else "this model"
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE or side % step:
            raise refuse(
                "size",
                f"{who} cannot make {width}x{height}: each side must be a multiple of "
                f"{step} from {MIN_SIDE} to {MAX_SIDE}",
            )
    return width, height


class ImagesBody(FormatBody):
    """What every Images API body takes."""

    inert: ClassVar[frozenset[str]] = frozenset(
        {"quality", "style", "user", "safety_identifier", "moderation", "output_compression"}
    )

    prompt: Prompt
    model: Text | None = None
    n: LaxInt | None = Field(default=None, ge=1, le=MAX_N)
    size: Text | None = None
    response_format: Text | None = None
    output_format: Text | None = None
    background: Text | None = None
    stream: LaxBool | None = None
    partial_images: LaxInt | None = None
    # Stable Diffusion's own, through the client's extra_body
    negative_prompt: Text | None = None
    seed: LaxInt | None = Field(default=None, ge=0, lt=SEED_LIMIT)
    num_inference_steps: LaxInt | None = Field(default=None, ge=1, le=500)
    guidance_scale: LaxFloat | None = Field(default=None, ge=0, le=30)
    scheduler: Scheduler | None = None
    # the fields of some families only (refused, naming the family, on the others)
    use_compel: LaxBool | None = None
    clip_skip: LaxInt | None = None
    max_sequence_length: LaxInt | None = None
    true_cfg_scale: LaxFloat | None = None

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        parse_size(value, shape_only=True)
        return value

    @field_validator("response_format")
    @classmethod
    def _response_format(cls, value: str) -> str:
        if value not in RESPONSE_FORMATS:
            raise refuse("response_format", f"must be one of {', '.join(RESPONSE_FORMATS)}")
        return value

    @field_validator("output_format")
    @classmethod
    def _output_format(cls, value: str) -> str:
        if value.lower() not in OUTPUT_FORMATS:
            raise refuse("output_format", "must be png, jpeg or webp")
        return value.lower()

    @field_validator(*_DEFAULT_ONLY)
    @classmethod
    def _default_only(cls, value: Any, info: ValidationInfo) -> Any:
        return default_only(_DEFAULT_ONLY, value, info.field_name)


class GenerationBody(ImagesBody):
    """``POST /v1/images/generations``."""


class EditBody(ImagesBody):
    """``POST /v1/images/edits``: ``image`` and ``mask`` (transparent where to paint)."""

    image: Text
    mask: Text | None = None
    strength: LaxFloat | None = Field(default=None, gt=0, le=1)
    input_fidelity: Text | None = None


class VariationBody(ImagesBody):
    """``POST /v1/images/variations``: ``image``; the prompt is optional here."""

    prompt: Prompt = VARIATION_PROMPT
    image: Text
    strength: LaxFloat | None = Field(default=None, gt=0, le=1)


BODIES: dict[str, type[ImagesBody]] = {
    "generations": GenerationBody,
    "edits": EditBody,
    "variations": VariationBody,
}


@dataclass(frozen=True)
class ImagesRequest:
    """What answering needs to remember of a request."""

    kind: str
    response_format: str
    size: str | None
    output_format: str


#: the body's Stable Diffusion fields, the native input's own
PASSED = (
    "negative_prompt", "seed", "num_inference_steps", "guidance_scale", "scheduler",
    "use_compel", "clip_skip", "max_sequence_length", "true_cfg_scale",
)  # fmt: skip


def native_input(
    parsed: ImagesBody, model: str | None, uploads: bool, facts: ModelFacts | None = None
) -> dict[str, Any]:
    """The native input of a valid body, for the baked ``model`` (None: the default model;
    ``facts``: what is known of it, whose family's size rule ``size`` keeps).

    A ``url`` answer is uploaded by the worker when a bucket is configured; otherwise the
    image comes back inline and the endpoint serves it."""
    native: dict[str, Any] = {"prompt": parsed.prompt, "num_images": parsed.n or 1}
    if model is not None:
        native["model"] = model
    size = parse_size(parsed.size, facts) if parsed.size else None
    if size is not None:
        native["width"], native["height"] = size
    if parsed.output_format:
        native["output_format"] = OUTPUT_FORMATS[parsed.output_format]
    for key in PASSED:
        value = getattr(parsed, key)
        if value is not None and value != "":
            native[key] = value
    native["upload"] = uploads and (parsed.response_format or "url") == "url"
    return native


def request_of(kind: str, parsed: ImagesBody) -> ImagesRequest:
    """What the answer needs of ``parsed``."""
    return ImagesRequest(
        kind,
        parsed.response_format or "url",
        parsed.size if parsed.size and parsed.size.strip().lower() != "auto" else None,
        OUTPUT_FORMATS[parsed.output_format or "png"],
    )
