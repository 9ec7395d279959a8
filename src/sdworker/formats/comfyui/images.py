"""An input image as the workflow made it: scaled (``ImageScale``, ``LatentUpscale`` of an
encoded image), its mask taken from a channel (``LoadImage``'s alpha, ``LoadImageMask``) and
grown (``VAEEncodeForInpaint``), as the native ``image`` and ``mask_image`` (white repaints).

An image the workflow uses as it is passes through untouched (the worker decodes it, with
its own checks). One that must be changed here is checked from its header first (format,
declared size) as the worker checks its inputs, and Pillow is imported only then.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any

from sdworker.core.errors import InvalidInput
from sdworker.formats.comfyui import values as v

_DATA_URL = re.compile(r"^data:[^,]*,")
_FORMATS = ("PNG", "JPEG", "WEBP")
#: ComfyUI's resampling methods, as Pillow names them
_FILTERS = {
    "nearest-exact": "NEAREST",
    "bilinear": "BILINEAR",
    "area": "BOX",
    "bicubic": "BICUBIC",
    "lanczos": "LANCZOS",
}
_CHANNELS = {"red": "R", "green": "G", "blue": "B", "alpha": "A"}


def payload(data: str) -> str:
    """The base64 of an input image, without a ``data:...,`` prefix (worker-comfyui drops
    everything up to the first comma)."""
    return _DATA_URL.sub("", data, count=1)


def _open(image: v.LoadedImage, max_pixels: int) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(payload(image.data), validate=False)
        opened = Image.open(io.BytesIO(raw))
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError):
        raise InvalidInput.one(
            image.at.field, "is not a PNG, JPEG or WebP image", image.name
        ) from None
    except Image.DecompressionBombError:
        raise InvalidInput.one(image.at.field, "declares too many pixels", image.name) from None
    width, height = opened.size
    if opened.format not in _FORMATS or width * height > max_pixels or not width or not height:
        rule = f"must be a PNG, JPEG or WebP image of at most {max_pixels} pixels"
        raise InvalidInput.one(image.at.field, rule, image.name)
    return opened


def _decoded(image: v.LoadedImage, max_pixels: int) -> Any:
    opened = _open(image, max_pixels)
    try:
        opened.load()
    except Exception:  # whatever a decoder raises on a client's bytes is the client's
        raise InvalidInput.one(image.at.field, "is truncated or damaged", image.name) from None
    return opened


def _png(image: Any) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return base64.b64encode(out.getvalue()).decode("ascii")


def _size(width: int, height: int, size: tuple[int, int]) -> tuple[int, int]:
    """``ImageScale``'s target: 0 keeps the aspect from the other side; both 0: unchanged."""
    if width == 0 and height == 0:
        return size
    if width == 0:
        return max(1, round(size[0] * height / size[1])), height
    if height == 0:
        return width, max(1, round(size[1] * width / size[0]))
    return width, height


def _scale(picture: Any, step: v.ScaledImage, max_pixels: int) -> Any:
    from PIL import Image

    width, height = _size(step.width, step.height, picture.size)
    if width * height > max_pixels:
        rule = f"makes a {width}x{height} image, more than {max_pixels} pixels"
        raise InvalidInput([step.at.at("width").problem(rule, step.width)])
    if step.crop == "center":
        # ComfyUI's center crop: the largest centred part with the target's aspect
        w, h = picture.size
        if w * height > h * width:
            cw = max(1, round(h * width / height))
            picture = picture.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))
        else:
            ch = max(1, round(w * height / width))
            picture = picture.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))
    return picture.resize((width, height), Image.Resampling[_FILTERS[step.method]])


def _pixels(image: v.PixelImage, max_pixels: int) -> Any:
    steps: list[v.ScaledImage] = []
    while isinstance(image, v.ScaledImage):
        steps.append(image)
        image = image.source
    picture = _decoded(image, max_pixels).convert("RGB")
    for step in reversed(steps):
        picture = _scale(picture, step, max_pixels)
    return picture


def _vae_crop(picture: Any) -> Any:
    """The image VAEEncode encodes: cropped (centred) to a multiple of 8 on each side."""
    w, h = picture.size
    x, y = (w % 8) // 2, (h % 8) // 2
    if w % 8 == 0 and h % 8 == 0:
        return picture
    return picture.crop((x, y, x + w // 8 * 8, y + h // 8 * 8))


def _mask(mask: v.Mask, size: tuple[int, int], grow: int, max_pixels: int) -> str:
    from PIL import Image, ImageChops, ImageFilter

    # as ComfyUI reads a mask: from the image in RGBA (no alpha: opaque, so nothing repaints)
    channel = _decoded(mask.image, max_pixels).convert("RGBA").getchannel(_CHANNELS[mask.channel])
    if mask.invert:
        channel = ImageChops.invert(channel)
    channel = channel.resize(size, Image.Resampling.BILINEAR)
    if grow:
        channel = channel.filter(ImageFilter.MaxFilter(grow // 2 * 2 + 1))
    return _png(channel)


def native_images(latent: v.ImageLatent, max_pixels: int) -> dict[str, str]:
    """The native ``image`` (and ``mask_image``) of an encoded image: passed through when the
    workflow uses it as it is, else made here."""
    if isinstance(latent.image, v.LoadedImage) and latent.mask is None:
        return {"image": latent.image.data}
    picture = _vae_crop(_pixels(latent.image, max_pixels))
    fields = {"image": _png(picture)}
    if latent.mask is not None:
        fields["mask_image"] = _mask(latent.mask, picture.size, latent.grow, max_pixels)
    return fields


__all__ = ["native_images", "payload"]
