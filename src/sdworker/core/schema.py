"""The job ``input``: a pydantic model of docs/api.md, and validation into a request.

:func:`parse_input` reports every bad field at once, each with its rule and the value received,
before anything touches a model. Cross-field rules (mask needs image, the pixel budget, known
model, scheduler and LoRA names) run even when other fields failed, so one round trip shows all.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)

from sdworker.core import schedulers
from sdworker.core.aliases import how_to_alias
from sdworker.core.compat import compat_problems
from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.fieldtypes import LooseBool, Number, Text
from sdworker.core.resize import (
    HiresInput,
    UpscaleInput,
    hires_problems,
    hires_size,
    upscale_problems,
)
from sdworker.core.rules import SAMPLERS_ROUTE, field_name, rule_message, unknown_name
from sdworker.core.settings import MAX_SIDE, MIN_SIDE, SIDE_STEP
from sdworker.core.spellings import rename_field, respell, spellings

SEED_LIMIT = 2**32
MAX_IMAGES = 8
Mode = Literal["txt2img", "img2img", "inpaint", "upscale"]


class LoraRef(BaseModel):
    """One LoRA to apply for this request only."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1)
    scale: Number = Field(default=1.0, ge=0.0, le=2.0)


def _lora_list(value: Any) -> Any:
    if isinstance(value, str):
        return [{"name": value}]
    if isinstance(value, list):
        return [{"name": v} if isinstance(v, str) else v for v in value]
    if isinstance(value, dict):
        return [value]
    return value


class GenerateInput(BaseModel):
    """The native job input, field for field as docs/api.md lists it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    #: required unless ``upscale`` is given (checked across fields, as "is required")
    prompt: Text = ""
    negative_prompt: Text = ""
    model: Text | None = None
    image: Text | None = None
    mask_image: Text | None = None
    strength: Number = Field(default=0.8, gt=0.0, le=1.0)
    width: StrictInt | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_STEP)
    height: StrictInt | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_STEP)
    num_inference_steps: StrictInt = Field(default=25, ge=1, le=500)
    guidance_scale: Number = Field(default=7.5, ge=0.0, le=30.0)
    num_images: StrictInt = Field(default=1, ge=1, le=MAX_IMAGES)
    seed: StrictInt | None = Field(default=None, ge=0, lt=SEED_LIMIT)
    scheduler: Text | None = None
    safety_checker: LooseBool | None = None
    output_format: Literal["png", "jpeg", "webp"] = "png"
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

    @property
    def refined(self) -> bool:
        """Whether the SDXL refiner runs after the base."""
        return self.refiner_inference_steps is not None or self.high_noise_frac is not None


#: fields of the input (native names and the other spellings), for messages and for dialects
INPUT_FIELDS: tuple[str, ...] = (*GenerateInput.model_fields, *spellings())


@dataclass(frozen=True)
class ModelFacts:
    """What validation needs to know about a model (no weights): names and sizes."""

    name: str
    native_width: int
    native_height: int
    family: str = "sd1"
    has_refiner: bool = False


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
    family: str
    #: native field -> how the client spelled it, for fields not spelled natively
    spelled: dict[str, str] = field(default_factory=dict)
    #: the hires pass's (width, height): the size of the images returned
    hires_size: tuple[int, int] | None = None
    #: the hires pass's scheduler, when it names its own
    hires_scheduler: schedulers.SchedulerSpec | None = None

    def field_name(self, native: str) -> str:
        """The field ``native`` as the client spelled it (errors name it so)."""
        return self.spelled.get(native, native)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.input.num_images)]


#: pydantic error type -> our rule, with the error's context values filled in (request formats
def parse_input(
    raw: Any,
    *,
    models: dict[str, ModelFacts],
    default_model: str | None,
    max_pixels: int,
    loras: Sequence[str] = (),
    max_prompt_chars: int = 8192,
) -> Request:
    """Validate a job ``input``; raise :class:`InvalidInput` listing every problem.

    ``max_prompt_chars`` bounds the prompt and the negative prompt: weighted prompts are
    encoded in 77-token chunks, and a prompt of tens of kilobytes would hold the GPU for
    minutes."""
    if not isinstance(raw, dict):
        raise InvalidInput.one("input", "must be a JSON object", raw)
    respelled = respell(raw)
    data = respelled.data
    problems: list[Problem] = list(respelled.problems)

    parsed: GenerateInput | None = None
    #: top-level fields that failed their own rule: the rules across fields never see them
    bad: set[str] = set()
    try:
        parsed = GenerateInput.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            if err["loc"] and isinstance(err["loc"][0], str):
                bad.add(err["loc"][0])
            name = rename_field(field_name(err["loc"]), respelled.spelled) or "input"
            missing = err["type"] == "missing"
            problems.append(
                Problem(name, rule_message(err), err.get("input"), has_value=not missing)
            )

    # one problem per field: a field that failed its own rule is not judged again across
    # fields, nor computed with (``10**400`` steps times a strength is an OverflowError)
    failed = {p.field for p in problems}
    judged = {k: v for k, v in data.items() if k not in bad}
    crossed = _cross_field(judged, models, default_model, max_pixels, loras)
    crossed += _prompt_lengths(judged, max_prompt_chars)
    renamed = [replace(p, field=rename_field(p.field, respelled.spelled)) for p in crossed]
    model = _has_refiner(raw, models, default_model)
    renamed += compat_problems(replace(respelled, data=judged), model)
    problems.extend(p for p in renamed if p.field not in failed)
    if problems or parsed is None:
        raise InvalidInput(problems)

    model_name = parsed.model or default_model
    assert model_name is not None  # _cross_field reported a missing default
    facts = models[model_name]
    mode: Mode = "inpaint" if parsed.mask_image else "img2img" if parsed.image else "txt2img"
    if parsed.upscale is not None:
        # nothing is generated: the seed is what the client gave, else 0
        return Request(
            parsed,
            model_name,
            "upscale",
            None,
            None,
            parsed.seed or 0,
            None,
            facts.family,
            respelled.spelled,
        )
    width, height = parsed.width, parsed.height
    if mode == "txt2img":
        width = width or facts.native_width
        height = height or facts.native_height
    seed = parsed.seed if parsed.seed is not None else secrets.randbelow(SEED_LIMIT - MAX_IMAGES)
    spec = schedulers.resolve(parsed.scheduler) if parsed.scheduler else None
    request = Request(
        parsed, model_name, mode, width, height, seed, spec, facts.family, respelled.spelled
    )
    return _with_hires(request)


def _with_hires(request: Request) -> Request:
    """The request with its hires size and scheduler resolved (when it asks for hires)."""
    hires = request.input.hires
    if hires is None or request.width is None or request.height is None:
        return request
    size = hires_size((request.width, request.height), hires.width, hires.height, hires.scale)
    spec = schedulers.resolve(hires.scheduler) if hires.scheduler else None
    return replace(request, hires_size=size, hires_scheduler=spec)


def _cross_field(
    data: dict[str, Any],
    models: dict[str, ModelFacts],
    default_model: str | None,
    max_pixels: int,
    loras: Sequence[str],
) -> list[Problem]:
    problems: list[Problem] = []
    prompt = data.get("prompt")
    if isinstance(prompt, str) and not prompt.strip():
        problems.append(Problem("prompt", "must not be empty", prompt))
    if "prompt" not in data and data.get("upscale") is None:
        problems.append(Problem("prompt", "is required", has_value=False))
    problems.extend(upscale_problems(data))

    model = data.get("model")
    name = model if isinstance(model, str) else default_model
    facts: ModelFacts | None = None
    if name is None:
        problems.append(Problem("model", "no model given and no default model is baked", None))
    elif name not in models:
        known = ", ".join(sorted(models)) or "none"
        hint = how_to_alias(name, sorted(models))
        problems.append(Problem("model", f"unknown model; baked models: {known}; {hint}", name))
    else:
        facts = models[name]

    image = data.get("image")
    if isinstance(image, str) and not image.strip():
        problems.append(Problem("image", "must not be empty (leave it out for txt2img)", image))
    has_image = isinstance(image, str) and bool(image.strip())
    if data.get("mask_image") is not None and not has_image:
        problems.append(Problem("mask_image", "needs image (inpainting repaints an image)", "..."))
    problems.extend(_img2img_steps(data, has_image))

    width, height = data.get("width"), data.get("height")
    if facts is not None and not has_image:
        width = width if width is not None else facts.native_width
        height = height if height is not None else facts.native_height
    if isinstance(width, int) and isinstance(height, int) and width * height > max_pixels:
        problems.append(
            Problem(
                "width",
                f"width x height must be at most {max_pixels} pixels "
                f"(SDWORKER_MAX_PIXELS); {width}x{height} is {width * height}",
                width,
            )
        )
    first = (width, height) if isinstance(width, int) and isinstance(height, int) else None
    problems.extend(hires_problems(data, first, max_pixels))

    seed, count = data.get("seed"), data.get("num_images", 1)
    if (
        isinstance(seed, int)
        and isinstance(count, int)
        and 0 <= seed < SEED_LIMIT <= seed + count - 1
    ):
        # image i uses seed + i: every returned seed must be a valid seed to replay
        problems.append(
            Problem("seed", f"seed + num_images - 1 must be less than {SEED_LIMIT}", seed)
        )

    scheduler = data.get("scheduler")
    if isinstance(scheduler, str) and schedulers.resolve(scheduler) is None:
        message = unknown_name("scheduler", scheduler, schedulers.valid_names(), SAMPLERS_ROUTE)
        problems.append(Problem("scheduler", message, scheduler))

    problems.extend(_lora_problems(data.get("lora"), loras))
    return problems


def _img2img_steps(data: dict[str, Any], has_image: bool) -> list[Problem]:
    """img2img runs the last strength x steps steps: none at all is no image."""
    strength, steps = data.get("strength", 0.8), data.get("num_inference_steps", 25)
    if not (
        has_image
        and isinstance(strength, int | float)
        and isinstance(steps, int)
        and 0 < strength <= 1
        and steps >= 1
        and int(steps * strength) < 1
    ):
        return []
    return [
        Problem(
            "strength",
            f"strength x num_inference_steps must be at least 1 (the steps img2img "
            f"runs); {strength} x {steps} is none",
            strength,
        )
    ]


def _prompt_lengths(data: dict[str, Any], limit: int) -> list[Problem]:
    problems = []
    for name in ("prompt", "negative_prompt"):
        text = data.get(name)
        if isinstance(text, str) and len(text) > limit:
            problems.append(
                Problem(
                    name,
                    f"must be at most {limit} characters (SDWORKER_MAX_PROMPT_CHARS); "
                    f"this one has {len(text)}",
                    has_value=False,
                )
            )
    return problems


def _lora_problems(value: Any, loras: Sequence[str]) -> list[Problem]:
    items = _lora_list(value)
    if not isinstance(items, list):
        return []
    problems = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name not in loras:
            known = ", ".join(sorted(loras)) or "none"
            problems.append(Problem(f"lora[{i}].name", f"unknown LoRA; baked LoRAs: {known}", name))
        elif name in seen:
            # scales of a repeated name would add up past the 0-2 rule
            problems.append(Problem(f"lora[{i}].name", "is listed twice (give one scale)", name))
        seen.add(name)
    return problems


def _has_refiner(
    raw: dict[str, Any], models: dict[str, ModelFacts], default_model: str | None
) -> tuple[str, bool] | None:
    """The model the input names (or the default) and whether it has a refiner; None when
    the model is unknown (reported on its own)."""
    model = raw.get("model")
    name = model if isinstance(model, str) else default_model
    facts = models.get(name) if name is not None else None
    return None if facts is None else (facts.name, facts.has_refiner)
