"""OpenAI's edit masks → ours.

OpenAI marks the area to edit with transparency: a mask (or, without one, the image itself)
whose fully transparent pixels (alpha 0) are to be repainted. The native ``mask_image`` is
white where to paint. A mask with no alpha channel is taken as ours already (white = paint).

Images are checked from their header before a pixel is decoded (format, declared size), as
the worker checks its inputs.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from sdworker.core.errors import InvalidInput

_FORMATS = ("PNG", "JPEG", "WEBP")


def _open(data: str, field: str, max_pixels: int) -> Any:
    """The image of base64 ``data``, header read and checked, pixels not yet decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput.one(field, "is not a PNG, JPEG or WebP file", has_value=False) from None
    try:
        image = Image.open(io.BytesIO(raw))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        raise InvalidInput.one(field, "is not a PNG, JPEG or WebP file", has_value=False) from None
    if image.format not in _FORMATS:
        raise InvalidInput.one(field, "must be a PNG, JPEG or WebP file", image.format)
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidInput.one(
            field, f"declares {width}x{height} pixels, more than {max_pixels}", has_value=False
        )
    return image


def _alpha(image: Any, field: str) -> Any | None:
    """The alpha band of ``image`` (None when it has none), decoded."""
    try:
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        if "A" not in image.getbands():
            return None
        return image.getchannel("A")
    except Exception:  # whatever a decoder raises on a client's bytes is the client's
        raise InvalidInput.one(field, "is truncated or damaged", has_value=False) from None


def _white_where_clear(alpha: Any) -> str:
    """A PNG mask, white where ``alpha`` is 0 and black elsewhere, base64-encoded."""
    mask = alpha.point(lambda a: 255 if a == 0 else 0).convert("L")
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def native_mask(image: str, mask: str | None, max_pixels: int, required: bool = True) -> str | None:
    """The native ``mask_image`` for an edit of base64 ``image`` with OpenAI's ``mask``.

    Without a mask the image's own transparent pixels are the area to edit; an image with
    none is refused on ``mask`` (None where a mask is not ``required``: a model that edits
    by instruction reads the whole image). A mask must have the image's size."""
    picture = _open(image, "image", max_pixels)
    if mask is None:
        alpha = _alpha(picture, "image")
        if alpha is None or alpha.getextrema()[0] != 0:
            if not required:
                return None
            raise InvalidInput.one(
                "mask",
                "is required when the image has no fully transparent pixels to edit",
                has_value=False,
            )
        return _white_where_clear(alpha)
    opened = _open(mask, "mask", max_pixels)
    if opened.size != picture.size:
        raise InvalidInput.one(
            "mask",
            f"must have the image's size, {picture.size[0]}x{picture.size[1]} "
            f"(got {opened.size[0]}x{opened.size[1]})",
            has_value=False,
        )
    alpha = _alpha(opened, "mask")
    return mask if alpha is None else _white_where_clear(alpha)
