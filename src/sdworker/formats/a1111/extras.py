"""``/sdapi/v1/extra-single-image``: A1111's "Extras" upscale of one image, as the native
upscale-only job (``{"image", "upscale": {"scale", "width", "height", "upscaler"}}``).

``resize_mode`` 0 scales by ``upscaling_resize``; 1 scales to cover ``upscaling_resize_w`` x
``upscaling_resize_h`` keeping the aspect ratio and, with ``upscaling_crop``, centres the
result on a canvas of exactly that size, as A1111 does. ``upscaler_1`` is one of ``/upscalers``; A1111's "None" leaves the
image as it is, so no job runs. Face restoration and a second upscaler are refused unless
off: this server has neither.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from PIL import Image
from pydantic import Field, ValidationInfo, field_validator

from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.jobs import Failure
from sdworker.core.settings import MAX_SIDE
from sdworker.formats.a1111.answer import error_body
from sdworker.formats.a1111.hires import IMAGE_UPSCALERS
from sdworker.formats.a1111.pnginfo import decode_image_field, is_image
from sdworker.formats.base import Decoded, Format, Models, http_status
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
    upscaling_resize: LaxFloat = Field(default=2.0, ge=1, le=8)
    upscaling_resize_w: LaxInt = Field(default=512, ge=1, le=4 * MAX_SIDE)
    upscaling_resize_h: LaxInt = Field(default=512, ge=1, le=4 * MAX_SIDE)
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
    """A checked extras request: the native job to run (None: the image is the answer), and
    the canvas its result is centred on (A1111's ``upscaling_crop``), if any."""

    image: str
    job: dict[str, Any] | None
    html_info: str
    canvas: tuple[int, int] | None = None


def _size(data: bytes) -> tuple[int, int]:
    """The image's width and height, read from its header (no pixel is decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:
        rule = "is not a PNG, JPEG, WebP, GIF or BMP image Pillow can read"
        raise InvalidInput.one("image", rule, has_value=False) from None
    return width, height


def parse_extras(body: Any) -> Extras:
    """Check an extras body; raise :class:`InvalidInput` naming A1111's fields."""
    parsed, problems = validate(ExtrasBody, body)
    if parsed is not None and parsed.upscaler_2 != "None":
        problems.append(_second_upscaler(parsed.upscaler_2))
    if problems or parsed is None:
        raise InvalidInput(problems)
    data = decode_image_field(parsed.image)
    if not is_image(data):
        rule = "is not a PNG, JPEG, WebP, GIF or BMP image"
        raise InvalidInput.one("image", rule, has_value=False)
    width, height = _size(data)
    image = base64.b64encode(data).decode("ascii")
    if parsed.upscaler_1 == "None":
        return Extras(image, None, "")
    upscale: dict[str, Any] = {"scale": parsed.upscaling_resize, "width": None, "height": None}
    canvas = None
    if parsed.resize_mode == 1:
        # as A1111: scale to cover the size asked, keeping the aspect, then (crop) centre the
        # result on a canvas of exactly that size
        target = (parsed.upscaling_resize_w, parsed.upscaling_resize_h)
        by = max(target[0] / width, target[1] / height)
        size = {"width": max(1, int(width * by)), "height": max(1, int(height * by))}
        upscale.update(scale=min(max(by, 1.0), 8.0), **size)
        canvas = target if parsed.upscaling_crop else None
        info = f"Postprocess upscale to: {target[0]}x{target[1]}"
    else:
        info = f"Postprocess upscale by: {parsed.upscaling_resize:g}"
    upscale["upscaler"] = IMAGE_UPSCALERS[parsed.upscaler_1]
    job = {"image": image, "upscale": upscale, "output_format": "png", "upload": False}
    html = f"<p>{info}, Postprocess upscaler: {parsed.upscaler_1}</p>"
    return Extras(image, job, html, canvas)


def _second_upscaler(name: str) -> Problem:
    return Problem("upscaler_2", "a second upscaler is not supported here; leave it 'None'", name)


def _on_canvas(b64: str, canvas: tuple[int, int]) -> str:
    """The image centred on a black canvas of ``canvas`` size (A1111's crop), as PNG base64."""
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        if image.size == canvas:
            return b64
        framed = Image.new("RGB", canvas)
        framed.paste(image, (canvas[0] // 2 - image.width // 2, canvas[1] // 2 - image.height // 2))
    buf = io.BytesIO()
    framed.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def answer(extras: Extras, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """A1111's ``{"html_info", "image"}``."""
    image = next((o["image"] for o in outputs if "image" in o), extras.image)
    if extras.canvas is not None and outputs:
        image = _on_canvas(image, extras.canvas)
    return {"html_info": extras.html_info, "image": image}


class ExtrasFormat(Format[Extras]):
    """``extra-single-image`` as a format of its own: its body, its answer, A1111's errors."""

    name = "a1111-extras"
    names = EXTRAS_NAMES

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[Extras]:
        """The native upscale job (none when the upscaler is "None": the image is the answer)."""
        extras = parse_extras(body)
        return Decoded([extras.job] if extras.job is not None else [], extras)

    def encode(
        self, decoded: Decoded[Extras], outputs: list[dict[str, Any]], execution_ms: int
    ) -> dict[str, Any]:
        """A1111's ``{"html_info", "image"}``."""
        return answer(decoded.request, outputs)

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        """As every A1111 route: 422 for what the client can fix."""
        return http_status(failure, client=422), error_body(failure)
