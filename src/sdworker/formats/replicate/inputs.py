"""The inputs of cog-flux and cog-sdxl (the predictors behind ``black-forest-labs/flux-*`` and
``stability-ai/sdxl``), read into the native input.

Each of their names maps to a native field, or is refused by name when this server cannot do
what it asks; a few are accepted with no effect, and say so here:

* ``aspect_ratio`` picks cog-flux's size table (1 megapixel: ``16:9`` is 1344x768), with
  ``megapixels`` ``"1"`` or ``"0.25"`` (half each side). The table is for models whose native
  side is 1024 (FLUX.1, SDXL, SD 3.x); a model with another native side gets the same shapes
  at its own area (an SD 1.5 model's ``1:1`` is 512x512), each side a multiple of 16.
  ``"custom"`` takes ``width`` and ``height`` (cog-flux's hotswap predictor); cog-sdxl's
  ``width``/``height`` need no ``aspect_ratio``.
* with an ``image`` and no ``mask`` (img2img), the image's own size is the output's, as in
  both predictors: ``aspect_ratio``, ``megapixels``, ``width`` and ``height`` have no effect.
  ``megapixels: "match_input"`` says the same.
* ``guidance`` (cog-flux) and ``guidance_scale`` (cog-sdxl, hotswap) are the native
  ``guidance_scale`` (FLUX.1's distilled guidance on FLUX models); give one.
* ``go_fast`` is accepted and has no effect per request: cog-flux's fp8 weights and
  ``torch.compile`` are this deployment's choice here (``SDWORKER_COMPILE`` and the settings of
  docs/performance.md), made once for every request. ``apply_watermark`` is accepted and has
  no effect: no watermark is ever added.
* ``disable_safety_checker: true`` turns the checker off; ``false`` keeps the deployment's
  default (on where the model ships a checker).
* ``seed`` is the native seed: 0 is seed 0 (cog-flux reads 0 as "random"; leave it out).
* ``lora_weights`` and ``extra_lora`` are the native ``lora`` list with ``lora_scale`` and
  ``extra_lora_scale``; without a LoRA, ``lora_scale`` has no effect (as in cog-sdxl).
* ``refine``, ``high_noise_frac`` and ``refine_steps`` run the SDXL refiner
  (:mod:`sdworker.formats.refiner`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from sdworker.core import schedulers
from sdworker.core.errors import Problem
from sdworker.core.rules import SAMPLERS_ROUTE, unknown_name
from sdworker.core.settings import MIN_SIDE
from sdworker.formats.refiner import REFINE, refiner_fields
from sdworker.formats.validation import (
    FormatBody,
    LaxBool,
    LaxFloat,
    LaxInt,
    Prompt,
    Text,
    refuse,
)

#: cog-flux's ``ASPECT_RATIOS``: (width, height) at 1 megapixel
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
CUSTOM = "custom"
#: the native side the table is drawn for
TABLE_SIDE = 1024
#: the side multiple of a size read from the table at another native side
SIZE_STEP = 16
MEGAPIXELS = ("1", "0.25", "match_input")
#: ``output_format`` → the native one
OUTPUT_FORMATS: dict[str, str] = {"webp": "webp", "jpg": "jpeg", "jpeg": "jpeg", "png": "png"}
#: cog-sdxl's scheduler names the native input does not know → the native name
SCHEDULERS: dict[str, str] = {"HeunDiscrete": "Heun", "KarrasDPM": "DPM++ 2M Karras"}
#: their inputs this server cannot honour, and why (each is refused by name)
UNSUPPORTED: dict[str, str] = {
    "replicate_weights": "is not supported here: Replicate's trained weights cannot be "
    "loaded; bake the model (sdworker bake) or pass a LoRA as lora_weights",
    "hf_api_token": "is not supported here: this server downloads nothing with a token",
    "civitai_api_token": "is not supported here: this server downloads nothing with a token",
    "control_image": "is not supported here (cog-flux's canny and depth predictors)",
    "redux_image": "is not supported here (cog-flux's redux predictors)",
}
#: their names → the native ones, where only the name differs
RENAMED: dict[str, str] = {
    "mask": "mask_image",
    "prompt_strength": "strength",
    "num_outputs": "num_images",
    "output_quality": "output_quality",
    "negative_prompt": "negative_prompt",
    "image": "image",
    "num_inference_steps": "num_inference_steps",
    "seed": "seed",
    "scheduler": "scheduler",
}


def _megapixels(value: Any) -> Any:
    """``"1"``, ``"0.25"``, ``"match_input"``; the numbers 1 and 0.25 are those too."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value in (1, 0.25):
        return "1" if value == 1 else "0.25"
    return value


def _one_of(choices: tuple[str, ...] | list[str]) -> Any:
    def check(value: str) -> str:
        if value not in choices:
            raise refuse("choice", f"must be one of {', '.join(choices)}")
        return value

    return check


def _scheduler(value: str) -> str:
    native = SCHEDULERS.get(value, value)
    if schedulers.resolve(native) is None:
        names = [*SCHEDULERS, *schedulers.valid_names()]
        raise refuse("unknown_scheduler", unknown_name("scheduler", value, names, SAMPLERS_ROUTE))
    return native


AspectRatio = Annotated[Text, AfterValidator(_one_of([*ASPECT_RATIOS, CUSTOM]))]
Megapixels = Annotated[Text, BeforeValidator(_megapixels), AfterValidator(_one_of(MEGAPIXELS))]
OutputFormat = Annotated[Text, AfterValidator(_one_of(tuple(OUTPUT_FORMATS)))]
Refine = Annotated[Text, AfterValidator(_one_of(REFINE))]
#: a cog-sdxl or native scheduler name, read as the native one
CogScheduler = Annotated[Text, AfterValidator(_scheduler)]


class ReplicateInput(FormatBody):
    """A prediction's ``input``: cog-flux's and cog-sdxl's names. Ranges are the native
    input's, checked by the job (a problem there names the field as given here)."""

    prompt: Prompt
    negative_prompt: Text | None = None
    image: Text | None = None
    mask: Text | None = None
    prompt_strength: LaxFloat | None = None
    aspect_ratio: AspectRatio | None = None
    megapixels: Megapixels | None = None
    width: LaxInt | None = None
    height: LaxInt | None = None
    num_outputs: LaxInt | None = None
    num_inference_steps: LaxInt | None = None
    guidance: LaxFloat | None = None
    guidance_scale: LaxFloat | None = None
    seed: LaxInt | None = None
    scheduler: CogScheduler | None = None
    output_format: OutputFormat | None = None
    output_quality: LaxInt | None = None
    disable_safety_checker: LaxBool | None = None
    go_fast: LaxBool | None = None
    lora_weights: Text | None = None
    lora_scale: LaxFloat | None = None
    extra_lora: Text | None = None
    extra_lora_scale: LaxFloat | None = None
    refine: Refine | None = None
    high_noise_frac: LaxFloat | None = None
    refine_steps: LaxInt | None = None
    apply_watermark: LaxBool | None = None
    # refused by name (UNSUPPORTED): any value, never shown (two of them are secrets)
    replicate_weights: Any = None
    hf_api_token: Any = None
    civitai_api_token: Any = None
    control_image: Any = None
    redux_image: Any = None


@dataclass
class NativeInput:
    """An input read: the native fields, the problems found across fields, and each native
    field's name as the client gave it (for the job's own refusals)."""

    fields: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)

    def put(self, native: str, value: Any, given: str) -> None:
        self.fields[native] = value
        self.names[native] = f"{PREFIX}{given}"

    def refuse(self, given: str, rule: str, value: Any = None, has_value: bool = False) -> None:
        self.problems.append(Problem(f"{PREFIX}{given}", rule, value, has_value))


#: where the input sits in a prediction's body
PREFIX = "input."


def read_input(parsed: ReplicateInput, native_side: int | None) -> NativeInput:
    """``parsed`` as native fields (no model, no upload: the request's), for a model whose
    native side is ``native_side`` (None when unknown: the table's own sizes)."""
    out = NativeInput()
    out.put("prompt", parsed.prompt, "prompt")
    given = parsed.model_dump(exclude_none=True)
    for name, native in RENAMED.items():
        if name in given:
            out.put(native, given[name], name)
    if parsed.output_format is not None:
        out.put("output_format", OUTPUT_FORMATS[parsed.output_format], "output_format")
    if parsed.disable_safety_checker:
        out.put("safety_checker", False, "disable_safety_checker")
    _guidance(parsed, out)
    _size(parsed, out, native_side)
    _loras(parsed, out)
    refined = refiner_fields(
        parsed.refine, parsed.high_noise_frac, parsed.refine_steps, parsed.num_inference_steps
    )
    for native, value in refined.items():
        out.put(native, value, "refine_steps" if native == "refiner_inference_steps" else native)
    return out


def _guidance(parsed: ReplicateInput, out: NativeInput) -> None:
    if parsed.guidance is not None and parsed.guidance_scale is not None:
        out.refuse("guidance_scale", "give guidance or guidance_scale, not both")
    elif parsed.guidance is not None:
        out.put("guidance_scale", parsed.guidance, "guidance")
    elif parsed.guidance_scale is not None:
        out.put("guidance_scale", parsed.guidance_scale, "guidance_scale")


def _size(parsed: ReplicateInput, out: NativeInput, native_side: int | None) -> None:
    """``aspect_ratio``/``megapixels``, or ``width``/``height``, or the image's own size."""
    ratio, megapixels = parsed.aspect_ratio, parsed.megapixels
    sides = parsed.width is not None or parsed.height is not None
    if parsed.image is not None and parsed.mask is None:
        return  # img2img: the image's own size, as cog-flux's and cog-sdxl's
    if megapixels == "match_input":
        out.refuse("megapixels", "'match_input' needs an image", megapixels, True)
    elif ratio == CUSTOM or (ratio is None and megapixels is None):
        if ratio == CUSTOM and not (parsed.width and parsed.height):
            out.refuse("aspect_ratio", "'custom' needs width and height", ratio, True)
        for side in ("width", "height"):
            value = getattr(parsed, side)
            if value is not None:
                out.put(side, value, side)
    elif sides:
        out.refuse(
            "aspect_ratio",
            "give aspect_ratio or width and height, not both (they go with 'custom')",
            ratio,
            True,
        )
    else:
        width, height = table_size(ratio or "1:1", megapixels or "1", native_side)
        given = "aspect_ratio" if ratio else "megapixels"
        out.put("width", width, given)
        out.put("height", height, given)


def table_size(ratio: str, megapixels: str, native_side: int | None) -> tuple[int, int]:
    """The size of ``ratio`` in cog-flux's table at ``megapixels``, drawn at ``native_side``
    (the table's own at 1024 or unknown)."""
    width, height = ASPECT_RATIOS[ratio]
    if megapixels == "0.25":
        width, height = width // 2, height // 2
    if not native_side or native_side == TABLE_SIDE:
        return width, height
    scale = native_side / TABLE_SIDE
    return _side(width * scale), _side(height * scale)


def _side(value: float) -> int:
    return max(MIN_SIDE, round(value / SIZE_STEP) * SIZE_STEP)


def native_side(width: int, height: int) -> int:
    """The side of the square with a model's native area."""
    return round(math.sqrt(width * height))


def _loras(parsed: ReplicateInput, out: NativeInput) -> None:
    """``lora_weights`` then ``extra_lora``, each with its scale (cog-flux's default 1)."""
    loras: list[dict[str, Any]] = []
    pairs = (("lora_weights", "lora_scale"), ("extra_lora", "extra_lora_scale"))
    for name_field, scale_field in pairs:
        name = getattr(parsed, name_field)
        if not name:
            continue
        scale = getattr(parsed, scale_field)
        index = len(loras)
        loras.append({"name": name, "scale": 1.0 if scale is None else scale})
        out.names[f"lora[{index}].name"] = f"{PREFIX}{name_field}"
        out.names[f"lora[{index}].scale"] = f"{PREFIX}{scale_field}"
    if loras:
        out.fields["lora"] = loras
        out.names["lora"] = f"{PREFIX}lora_weights"
