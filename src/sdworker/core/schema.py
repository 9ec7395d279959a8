"""The job ``input`` as a pydantic model of docs/api.md, and the validated :class:`Request`.

The model holds each field's own rule (its type and range); the rules that span fields, or
depend on the model a request names, are :mod:`sdworker.core.input`'s, which turns an input
into a :class:`Request` (:func:`sdworker.core.input.parse_input`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sdworker.core import schedulers
from sdworker.core.fieldtypes import LooseBool, Number, Text
from sdworker.core.resize import HiresInput, UpscaleInput
from sdworker.core.settings import MAX_SIDE, MIN_SIDE, SIDE_STEP
from sdworker.core.spellings import spellings
from sdworker.families import Family
from sdworker.families.stable import STANDARD

SEED_LIMIT = 2**32
MAX_IMAGES = 8
#: what a request does: a family's generation mode, or an upscale-only job (no generation)
Mode = Literal["txt2img", "img2img", "inpaint", "edit", "upscale"]
#: the modes that denoise the input image from ``strength`` of the way (the others take all
#: ``num_inference_steps``)
STRENGTH_MODES: tuple[Mode, ...] = ("img2img", "inpaint")
#: the refiner's strength when it refines a finished image and the input gives none
#: (worker-sdxl's default)
REFINER_STRENGTH = 0.3


class LoraRef(BaseModel):
    """One LoRA to apply for this request only: a baked or volume LoRA by ``name``, or a file
    to fetch by ``url`` or ``hub`` id (and ``file``); exactly one of the three."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, min_length=1)
    url: Text | None = Field(default=None, min_length=1)
    hub: Text | None = Field(default=None, min_length=1)
    #: the file in the hub repository (its one weights file when left out)
    file: Text | None = Field(default=None, min_length=1)
    #: the file's sha256, checked before it is used
    sha256: Text | None = None
    #: a secret for the download (a CivitAI or hub token): used, never logged or stored
    token: Text | None = Field(
        default=None, min_length=1, repr=False, json_schema_extra={"writeOnly": True}
    )
    scale: Number = Field(default=1.0, ge=0.0, le=2.0)

    @property
    def by_reference(self) -> bool:
        """Whether the LoRA is fetched (a URL or hub id) rather than named."""
        return self.url is not None or self.hub is not None


def _lora_item(value: Any) -> Any:
    """A LoRA given as text: a URL to fetch, or a baked or volume LoRA's name."""
    if isinstance(value, str):
        return (
            {"url": value} if value.lower().startswith(("http://", "https://")) else {"name": value}
        )
    return value


#: a PNG text chunk's keyword: 1-79 Latin-1 printable characters, no edge or double spaces
_PNG_KEYWORD = re.compile(r"^(?! )(?!.*  )[ -~\xa1-\xff]{1,79}(?<! )$")
#: the most text chunks, and characters in all, an input's PNGs may carry
PNG_TEXT_KEYS = 8
PNG_TEXT_CHARS = 1_000_000


def _png_text(value: dict[str, str]) -> dict[str, str]:
    if len(value) > PNG_TEXT_KEYS:
        raise PydanticCustomError("png_text", f"must have at most {PNG_TEXT_KEYS} keys")
    for key in value:
        if not _PNG_KEYWORD.match(key):
            raise PydanticCustomError(
                "png_text",
                "keys must be PNG keywords: 1-79 Latin-1 printable characters, "
                "no leading, trailing or double spaces",
            )
    if sum(len(k) + len(t) for k, t in value.items()) > PNG_TEXT_CHARS:
        raise PydanticCustomError("png_text", f"must hold at most {PNG_TEXT_CHARS} characters")
    return value


def _lora_list(value: Any) -> Any:
    if isinstance(value, str | dict):
        return [_lora_item(value)]
    if isinstance(value, list):
        return [_lora_item(v) for v in value]
    return value


class GenerateInput(BaseModel):
    """The native job input, field for field as docs/api.md lists it.

    ``num_inference_steps``, ``guidance_scale`` and ``strength`` default to Stable Diffusion's
    values here; a request gets its model's own (its family's, or those baked with it) for
    any of them it leaves out."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    #: required unless ``upscale`` is given (checked across fields, as "is required")
    prompt: Text = ""
    negative_prompt: Text = ""
    model: Text | None = None
    image: Text | None = None
    mask_image: Text | None = None
    strength: Number = Field(default=STANDARD.strength, gt=0.0, le=1.0)
    width: StrictInt | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_STEP)
    height: StrictInt | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_STEP)
    num_inference_steps: StrictInt = Field(default=STANDARD.num_inference_steps, ge=1, le=500)
    guidance_scale: Number = Field(default=STANDARD.guidance_scale, ge=0.0, le=30.0)
    num_images: StrictInt = Field(default=1, ge=1, le=MAX_IMAGES)
    seed: StrictInt | None = Field(default=None, ge=0, lt=SEED_LIMIT)
    scheduler: Text | None = None
    safety_checker: LooseBool | None = None
    output_format: Literal["png", "jpeg", "webp"] = "png"
    #: JPEG and WebP quality (0-100; PNG is lossless and ignores it); None: the encoder's own
    output_quality: StrictInt | None = Field(default=None, ge=0, le=100)
    lora: Annotated[list[LoraRef] | None, BeforeValidator(_lora_list)] = None
    use_compel: LooseBool = False
    upload: LooseBool | None = None
    clip_skip: StrictInt | None = Field(default=None, ge=1, le=12)
    #: the scale of a LoRA given by name (RunPod SD v1's ``lora`` + ``lora_scale``)
    lora_scale: Number | None = Field(default=None, ge=0.0, le=2.0)
    #: SDXL refiner (worker-sdxl): its steps, and the fraction of the schedule the base runs
    refiner_inference_steps: StrictInt | None = Field(default=None, ge=1, le=500)
    high_noise_frac: Number | None = Field(default=None, gt=0.0, lt=1.0)
    #: A1111's hires fix (txt2img only), and the upscale-only job
    hires: HiresInput | None = None
    upscale: UpscaleInput | None = None
    #: tokens of the prompt the T5 encoder reads (SD 3.x, FLUX.1)
    max_sequence_length: StrictInt | None = Field(default=None, ge=1, le=512)
    #: FLUX.1's true classifier-free guidance, which a negative prompt needs (above 1)
    true_cfg_scale: Number | None = Field(default=None, ge=1.0, le=30.0)
    #: text chunks (keyword -> text) each PNG result carries instead of the A1111
    #: ``parameters`` (ComfyUI's ``prompt``, the workflow the image came from)
    png_text: Annotated[dict[str, Text], AfterValidator(_png_text)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _scale_loras(cls, data: Any) -> Any:
        """``lora_scale`` scales each LoRA that gives no scale of its own."""
        scale = data.get("lora_scale") if isinstance(data, dict) else None
        if not isinstance(scale, int | float) or isinstance(scale, bool) or not 0 <= scale <= 2:
            return data
        items = _lora_list(data.get("lora"))
        if isinstance(items, list):
            items = [
                {**item, "scale": item.get("scale", scale)} if isinstance(item, dict) else item
                for item in items
            ]
            data = {**data, "lora": items}
        return data

    @classmethod
    def known_names(cls) -> list[str]:
        """Every field name an input may hold: the native ones and the other spellings."""
        return list(INPUT_FIELDS)

    @property
    def refined(self) -> bool:
        """Whether the SDXL refiner runs after the base."""
        return self.refiner_inference_steps is not None or self.high_noise_frac is not None

    @property
    def refiner_strength(self) -> float:
        """How far the refiner re-noises a finished txt2img image: the ``strength`` given,
        else the refiner's own default."""
        given = "strength" in self.model_fields_set and self.image is None
        return self.strength if given else REFINER_STRENGTH


#: fields of the input (native names and the other spellings), for messages and for dialects
INPUT_FIELDS: tuple[str, ...] = (*GenerateInput.model_fields, *spellings())


@dataclass(frozen=True)
class Request:
    """A validated generation request: every default resolved, ready for the generator."""

    input: GenerateInput
    model: str
    mode: Mode
    width: int | None  # None for img2img/inpaint without explicit size: the image's own size
    height: int | None
    seed: int
    scheduler: schedulers.SchedulerSpec | None
    family: Family
    #: native field -> how the client spelled it, for fields not spelled natively
    spelled: dict[str, str] = field(default_factory=dict)
    #: the hires pass's (width, height): the size of the images returned
    hires_size: tuple[int, int] | None = None
    #: the hires pass's scheduler, when it names its own
    hires_scheduler: schedulers.SchedulerSpec | None = None
    #: the LoRAs it applies, each resolved to its file (baked, volume, or fetched):
    #: :class:`sdworker.core.loras.AppliedLora`, filled in when the request is prepared
    loras: tuple[Any, ...] = ()

    def field_name(self, native: str) -> str:
        """The field ``native`` as the client spelled it (errors name it so)."""
        return self.spelled.get(native, native)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.input.num_images)]
