"""Images in and out: decoding input images (base64, data URL, http URL) and encoding results."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

from PIL import Image, PngImagePlugin

from sdworker.core.errors import ImageFetchError, InvalidInput, Problem
from sdworker.core.media import CONTENT_TYPES
from sdworker.core.netguard import FetchError, FetchPolicy, fetch
from sdworker.core.resize import PIL_FILTERS
from sdworker.core.settings import Settings

FORMATS = ("png", "jpeg", "webp")
#: JPEG and WebP quality when a request gives none
DEFAULT_QUALITY = 92
_DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,", re.ASCII)


@dataclass(frozen=True)
class EncodedImage:
    """One result image as bytes, before it becomes base64 or an uploaded object."""

    data: bytes
    format: str
    seed: int
    nsfw: bool | None = None
    #: made from the latents of a generation stopped early (an interrupt)
    interrupted: bool = False

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


#: the input image formats we decode (Pillow knows dozens; each decoder is attack surface)
INPUT_FORMATS = ("PNG", "JPEG", "WEBP")
#: how PNG and JPEG files begin (WebP: ``RIFF....WEBP``)
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


@dataclass(frozen=True)
class ImagePolicy:
    """How input images are fetched and how large they may be."""

    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    #: width x height an input image may declare; checked from its header, before decoding
    max_pixels: int = 64 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> ImagePolicy:
        return cls(
            FetchPolicy(
                allow_private=settings.allow_private_urls,
                max_bytes=settings.fetch_max_bytes,
                timeout_s=settings.fetch_timeout_s,
            ),
            settings.max_input_pixels,
        )


def decode_image(value: str, field: str, policy: ImagePolicy) -> Image.Image:
    """Decode a base64 string or a ``data:image/...;base64,`` URL, or fetch an http(s) URL
    through :mod:`sdworker.core.netguard`, then decode it through :func:`open_image`."""
    if value.startswith(("http://", "https://")):
        try:
            raw = fetch(value, policy.fetch)
        except FetchError as exc:
            raise ImageFetchError([Problem(field, f"could not be fetched: {exc}", value)]) from exc
    else:
        payload = _DATA_URL.sub("", value, count=1)
        try:
            raw = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput.one(field, "is not valid base64", value) from exc
    return open_image(raw, field, policy.max_pixels)


def open_image(raw: bytes, field: str, max_pixels: int) -> Image.Image:
    """Decode ``raw`` after checking its header: a listed format, and at most ``max_pixels``
    pixels declared, before a single pixel is decoded. A truncated or corrupt image is
    refused, never padded."""
    listed = raw.startswith(_MAGIC) or (raw[:4] == b"RIFF" and raw[8:12] == b"WEBP")
    try:
        with warnings.catch_warnings():
            # our own limit is checked below, from the same header
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw), formats=INPUT_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _too_large(field, raw, max_pixels, str(exc)) from exc
    except Exception as exc:  # PIL raises many types for bad data
        rule = (
            "is a truncated or corrupt image"
            if listed
            else f"is not a decodable image ({', '.join(INPUT_FORMATS)})"
        )
        raise InvalidInput.one(field, rule, _head(raw)) from exc
    width, height = image.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise _too_large(field, raw, max_pixels, f"{width}x{height}")
    try:
        if image.format == "PNG":
            # verify() checks every chunk's CRC and the end chunk: corruption and truncation
            Image.open(io.BytesIO(raw), formats=("PNG",)).verify()
        image.load()
    except Exception as exc:
        raise InvalidInput.one(field, "is a truncated or corrupt image", _head(raw)) from exc
    return image


def _too_large(field: str, raw: bytes, max_pixels: int, declared: str) -> InvalidInput:
    return InvalidInput.one(
        field,
        f"declares too many pixels ({declared}); input images may have at most {max_pixels} "
        "(SDWORKER_MAX_INPUT_PIXELS)",
        _head(raw),
    )


def _head(raw: bytes) -> str:
    """What a message shows of an image's bytes: never the whole payload."""
    return f"{len(raw)} bytes"


def encode_image(
    image: Image.Image,
    fmt: str,
    *,
    seed: int,
    parameters: str | None,
    nsfw: bool | None = None,
    interrupted: bool = False,
    quality: int | None = None,
    text: Mapping[str, str] | None = None,
) -> EncodedImage:
    """Encode one image; PNGs carry ``parameters`` in a tEXt chunk as AUTOMATIC1111 writes it,
    or the ``text`` chunks given instead (ComfyUI's ``prompt``), in their order. ``quality``
    is JPEG's and WebP's (default 92); PNG is lossless and has none."""
    quality = DEFAULT_QUALITY if quality is None else quality
    buf = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        chunks = dict(text) if text else {"parameters": parameters} if parameters else {}
        for keyword, value in chunks.items():
            info.add_text(keyword, value)
        image.save(buf, format="PNG", pnginfo=info, compress_level=1)
    elif fmt == "jpeg":
        image.convert("RGB").save(buf, format="JPEG", quality=quality)
    elif fmt == "webp":
        image.save(buf, format="WEBP", quality=quality)
    else:  # validation rejects this before any work; keep the guard for direct callers
        raise InvalidInput.one("output_format", f"must be one of {', '.join(FORMATS)}", fmt)
    return EncodedImage(buf.getvalue(), fmt, seed, nsfw, interrupted)


def upscale(image: Image.Image, size: tuple[int, int], upscaler: str) -> Image.Image:
    """``image`` resized to ``size`` with the named PIL filter (in RGB or RGBA: PIL resizes a
    palette image with the nearest filter whatever it is asked)."""
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling[PIL_FILTERS[upscaler]])
