"""``/sdapi/v1/png-info``: the generation parameters a PNG carries, read from its text chunks.

The chunks are read straight from the file (``tEXt``, ``zTXt`` and ``iTXt``) without decoding
a pixel, with caps on how many chunks and how much text a file may hold, so a hostile file
costs little. The ``parameters`` chunk is the infotext this server and A1111 both write;
:func:`parse_infotext` reads it into A1111's ``parameters`` dictionary.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import zlib
from typing import Any

from sdworker.core.errors import InvalidInput

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: the most chunks read, and the most text one chunk (inflated) or all of them may hold
MAX_CHUNKS = 10_000
MAX_CHUNK_TEXT = 1024 * 1024
MAX_TEXT = 4 * 1024 * 1024
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
#: image kinds that carry no PNG text chunks: their answer is empty, as A1111's for no info
_OTHER_IMAGES = (b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
#: ``Key: value`` pairs of an infotext's last line; a value is quoted when it has a comma
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def _bad(message: str, value: Any = None) -> InvalidInput:
    return InvalidInput.one("image", message, value, has_value=value is not None)


def decode_image_field(value: Any) -> bytes:
    """The bytes of an ``image`` field: base64, with or without a ``data:`` URL prefix."""
    if not isinstance(value, str) or not value.strip():
        raise _bad("must be a base64 image (or a data: URL)")
    text = value.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("is not valid base64") from None


def is_image(data: bytes) -> bool:
    """Whether ``data`` starts as a PNG, JPEG, WebP, GIF or BMP file does."""
    webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return data.startswith(PNG_SIGNATURE) or data.startswith(_OTHER_IMAGES) or webp


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_CHUNK_TEXT)
    except zlib.error:
        raise _bad("has a compressed text chunk that does not inflate") from None
    if inflater.unconsumed_tail:
        raise _bad(f"has a text chunk over {MAX_CHUNK_TEXT} bytes")
    return out


def _text_chunk(kind: bytes, data: bytes) -> tuple[str, str]:
    """One text chunk's keyword and text."""
    keyword, sep, rest = data.partition(b"\0")
    if not sep:
        raise _bad(f"has a {kind.decode()} chunk without a keyword")
    if kind == b"tEXt":
        return keyword.decode("latin-1"), rest.decode("latin-1")
    if kind == b"zTXt":
        return keyword.decode("latin-1"), _inflate(rest[1:]).decode("latin-1")
    compressed = rest[:1] == b"\1"
    _language, _, rest = rest[2:].partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    raw = _inflate(text) if compressed else text
    return keyword.decode("latin-1"), raw.decode("utf-8", "replace")


def png_text(data: bytes) -> dict[str, str]:
    """The text chunks of a PNG file, by keyword; raises :class:`InvalidInput` on ``image``
    for a file that is not a well-formed PNG or holds too much text."""
    if not data.startswith(PNG_SIGNATURE):
        raise _bad("is not a PNG image")
    texts: dict[str, str] = {}
    pos, total = len(PNG_SIGNATURE), 0
    for _ in range(MAX_CHUNKS):
        if pos + 8 > len(data):
            raise _bad("is a truncated PNG (no IEND chunk)")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) < length:
            raise _bad("is a truncated PNG")
        if kind == b"IEND":
            return texts
        if kind in _TEXT_CHUNKS:
            keyword, text = _text_chunk(kind, body)
            total += len(text)
            if total > MAX_TEXT:
                raise _bad(f"holds more than {MAX_TEXT} bytes of text")
            texts.setdefault(keyword, text)
        pos += 12 + length
    raise _bad(f"has more than {MAX_CHUNKS} chunks")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            unquoted = json.loads(value)
            return unquoted if isinstance(unquoted, str) else value
        except ValueError:
            return value
    return value


def parse_infotext(text: str) -> dict[str, Any]:
    """A1111's reading of an infotext: ``Prompt``, ``Negative prompt`` and each ``Key: value``
    of the last line (``Size: 512x768`` as ``Size-1``/``Size-2``), values as written."""
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for raw in lines:
        line = raw.strip()
        if line.startswith("Negative prompt:"):
            negative.append(line[len("Negative prompt:") :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    params: dict[str, Any] = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, raw_value in _PARAM.findall(last):
        value = _unquote(raw_value.strip())
        size = _SIZE.match(value)
        if size:
            params[f"{key}-1"], params[f"{key}-2"] = size.group(1), size.group(2)
        else:
            params[key] = value
    params.setdefault("Clip skip", "1")
    return params


def png_info(body: Any) -> dict[str, Any]:
    """``POST /sdapi/v1/png-info``: ``{"info", "items", "parameters"}`` of ``body["image"]``."""
    if not isinstance(body, dict):
        raise InvalidInput.one("body", "must be a JSON object", body)
    unknown = sorted(set(body) - {"image"})
    if unknown:
        rule = "is not a known field (png-info takes image)"
        raise InvalidInput.one(unknown[0], rule, has_value=False)
    data = decode_image_field(body.get("image"))
    if not is_image(data):
        raise _bad("is not a PNG, JPEG, WebP, GIF or BMP image")
    texts = png_text(data) if data.startswith(PNG_SIGNATURE) else {}
    info = texts.pop("parameters", "")
    return {"info": info, "items": texts, "parameters": parse_infotext(info) if info else {}}
