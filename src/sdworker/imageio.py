"""Images in and out: decoding input images (base64, data URL, http URL) and encoding results."""

from __future__ import annotations

import base64
import binascii
import io
import re
import urllib.request
from dataclasses import dataclass

from PIL import Image, PngImagePlugin

from sdworker.errors import ImageFetchError, InvalidInput

FORMATS = ("png", "jpeg", "webp")
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
#: file name extensions by format
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
_DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,", re.ASCII)
_MAX_FETCH_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class EncodedImage:
    """One result image as bytes, before it becomes base64 or an uploaded object."""

    data: bytes
    format: str
    seed: int
    nsfw: bool | None = None

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


def decode_image(value: str, field: str, *, timeout_s: float = 30.0) -> Image.Image:
    """Decode a base64 string, a ``data:image/...;base64,`` URL, or fetch an http(s) URL."""
    if value.startswith(("http://", "https://")):
        raw = _fetch(value, field, timeout_s)
    else:
        payload = _DATA_URL.sub("", value, count=1)
        try:
            raw = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput.one(field, "is not valid base64", value) from exc
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except Exception as exc:  # PIL raises many types for bad data
        raise InvalidInput.one(field, "is not a decodable image", value) from exc
    return image


def _fetch(url: str, field: str, timeout_s: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            data: bytes = response.read(_MAX_FETCH_BYTES + 1)
    except Exception as exc:
        raise ImageFetchError(f"{field}: could not fetch {url}: {exc}") from exc
    if len(data) > _MAX_FETCH_BYTES:
        raise ImageFetchError(f"{field}: {url} is larger than {_MAX_FETCH_BYTES} bytes")
    return data


def encode_image(
    image: Image.Image, fmt: str, *, seed: int, parameters: str | None, nsfw: bool | None = None
) -> EncodedImage:
    """Encode one image; PNGs carry ``parameters`` in a tEXt chunk as AUTOMATIC1111 writes it."""
    buf = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        if parameters:
            info.add_text("parameters", parameters)
        image.save(buf, format="PNG", pnginfo=info, compress_level=1)
    elif fmt == "jpeg":
        image.convert("RGB").save(buf, format="JPEG", quality=92)
    elif fmt == "webp":
        image.save(buf, format="WEBP", quality=92)
    else:  # validation rejects this before any work; keep the guard for direct callers
        raise InvalidInput.one("output_format", f"must be one of {', '.join(FORMATS)}", fmt)
    return EncodedImage(buf.getvalue(), fmt, seed, nsfw)
