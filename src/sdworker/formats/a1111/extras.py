"""``/sdapi/v1/extra-single-image``: A1111's "Extras" upscale of one image, as the native
upscale-only job (``{"image", "upscale": {"scale", "width", "height", "upscaler"}}``).

``resize_mode`` 0 scales by ``upscaling_resize``, 1 resizes to ``upscaling_resize_w`` x
``upscaling_resize_h``. ``upscaler_1`` is one of ``/upscalers``; A1111's "None" leaves the
image as it is, so no job runs. Face restoration and a second upscaler are refused unless
off: this server has neither.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.settings import MAX_SIDE, MIN_SIDE
from sdworker.formats.a1111.hires import IMAGE_UPSCALERS
from sdworker.formats.a1111.pnginfo import decode_image_field, is_image
from sdworker.formats.validation import (
    FormatBody,
    LaxBool,
    LaxFloat,
    LaxInt,
    Text,
    default_only,
    refuse,
    validate,
)

#: native field → A1111's, for failures of the upscale job
EXTRAS_NAMES = {
    "image": "image",
    "upscale.scale": "upscaling_resize",
    "upscale.width": "upscaling_resize_w",
    "upscale.height": "upscaling_resize_h",
    "upscale.upscaler": "upscaler_1",
}
_OFF: dict[str, tuple[Any, ...]] = {
    "gfpgan_visibility": (0, 0.0),
    "codeformer_visibility": (0, 0.0),
    "extras_upscaler_2_visibility": (0, 0.0),
}


class ExtrasBody(FormatBody):
    """``ExtrasSingleImageRequest`` as this server takes it (A1111's defaults)."""

    inert = frozenset({"show_extras_results", "codeformer_weight", "upscale_first"})

    image: Text
    resize_mode: LaxInt = Field(default=0, ge=0, le=1)
    upscaling_resize: LaxFloat = Field(default=2.0, ge=1, le=4)
    upscaling_resize_w: LaxInt = Field(default=512, ge=MIN_SIDE, le=MAX_SIDE)
    upscaling_resize_h: LaxInt = Field(default=512, ge=MIN_SIDE, le=MAX_SIDE)
    upscaling_crop: LaxBool = True
    upscaler_1: Text = "None"
    upscaler_2: Text = "None"
    gfpgan_visibility: Any = None
    codeformer_visibility: Any = None
    extras_upscaler_2_visibility: Any = None

    @field_validator("upscaler_1", "upscaler_2")
    @classmethod
    def _upscaler(cls, value: str) -> str:
        name = next((n for n in IMAGE_UPSCALERS if n.casefold() == value.strip().casefold()), None)
        if name is None:
            have = ", ".join(IMAGE_UPSCALERS)
            raise refuse("unknown_upscaler", f"is not an upscaler this server has (it has: {have})")
        return name

    @field_validator(*_OFF)
    @classmethod
    def _off(cls, value: Any, info: ValidationInfo) -> Any:
        return default_only(_OFF, value, info.field_name)


@dataclass(frozen=True)
class Extras:
    """A checked extras request: the native job to run (None: the image is the answer)."""

    image: str
    job: dict[str, Any] | None
    html_info: str


def parse_extras(body: Any) -> Extras:
    """Check an extras body; raise :class:`InvalidInput` naming A1111's fields."""
    parsed, problems = validate(ExtrasBody, body)
    if parsed is not None and parsed.upscaler_2 != "None":
        problems.append(_second_upscaler(parsed.upscaler_2))
    if problems or parsed is None:
        raise InvalidInput(problems)
    data = decode_image_field(parsed.image)
    if not is_image(data):
        raise InvalidInput.one(
            "image", "is not a PNG, JPEG, WebP, GIF or BMP image", has_value=False
        )
    image = base64.b64encode(data).decode("ascii")
    if parsed.upscaler_1 == "None":
        return Extras(image, None, "")
    upscale: dict[str, Any] = {"scale": parsed.upscaling_resize, "width": None, "height": None}
    if parsed.resize_mode == 1:
        upscale.update(width=parsed.upscaling_resize_w, height=parsed.upscaling_resize_h)
        info = f"Postprocess upscale to: {parsed.upscaling_resize_w}x{parsed.upscaling_resize_h}"
    else:
        info = f"Postprocess upscale by: {parsed.upscaling_resize:g}"
    upscale["upscaler"] = IMAGE_UPSCALERS[parsed.upscaler_1]
    job = {"image": image, "upscale": upscale, "output_format": "png", "upload": False}
    return Extras(image, job, f"<p>{info}, Postprocess upscaler: {parsed.upscaler_1}</p>")


def _second_upscaler(name: str) -> Problem:
    return Problem("upscaler_2", "a second upscaler is not supported here; leave it 'None'", name)


def answer(extras: Extras, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """A1111's ``{"html_info", "image"}``."""
    image = next((o["image"] for o in outputs if "image" in o), extras.image)
    return {"html_info": extras.html_info, "image": image}
