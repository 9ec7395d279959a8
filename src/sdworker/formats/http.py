"""Reading a format's request body: JSON or form fields, with a size cap, and never a 5xx for
what a client sent."""

from __future__ import annotations

import base64
import json
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.types import Message

from sdworker.core.errors import InvalidInput, PayloadTooLarge, Problem

_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with :class:`PayloadTooLarge` past ``limit`` bytes (declared or
    streamed: a lying ``Content-Length`` does not get more read)."""
    too_large = PayloadTooLarge(
        f"payload too large: {request.url.path} accepts at most {limit} bytes"
        f" ({limit / 1024 / 1024:g} MB); upload big inputs and pass a URL instead"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > limit:
            raise too_large
    return bytes(raw)


def parse_json(raw: bytes) -> Any:
    """A JSON body; an empty one is ``{}``. Anything unreadable is an :class:`InvalidInput`
    on ``body`` (including nesting too deep for the parser)."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidInput.one("body", "is nested too deeply", has_value=False) from None
    except (ValueError, UnicodeDecodeError) as exc:
        shown = raw[:40].decode("utf-8", "backslashreplace")
        raise InvalidInput.one("body", f"is not valid JSON ({exc})", shown) from None


async def read_json(request: Request, limit: int) -> Any:
    """The JSON body, read with the size cap."""
    return parse_json(await read_body(request, limit))


def is_form(request: Request) -> bool:
    """Whether the body is form fields (``curl -F``, or url-encoded) rather than JSON."""
    return request.headers.get("content-type", "").startswith(_FORM_TYPES)


async def read_form(request: Request, limit: int) -> dict[str, Any]:
    """Form fields as ``curl -F`` sends them, read with the size cap; an uploaded file becomes
    base64 text, and ``name[]`` (the array spelling some clients use, the ``openai`` package
    among them) is ``name``. A field given twice is a problem: which one was meant is not ours
    to guess."""
    raw = await read_body(request, limit)

    async def replay() -> Message:
        return {"type": "http.request", "body": raw, "more_body": False}

    fields: dict[str, Any] = {}
    problems: list[Problem] = []
    try:
        form_request = Request(request.scope, replay)
        async with form_request.form(max_part_size=limit) as form:
            for given, value in form.multi_items():
                key = given.removesuffix("[]") or given
                if key in fields:
                    problems.append(Problem(key, "is given more than once", has_value=False))
                if isinstance(value, UploadFile):
                    fields[key] = base64.b64encode(await value.read()).decode("ascii")
                else:
                    fields[key] = value
    except (HTTPException, MultiPartException, ValueError) as exc:
        # a bad boundary, a truncated part: the client's to fix, answered in the format's shape
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or exc
        raise InvalidInput.one(
            "body", f"is not a readable form ({detail})", has_value=False
        ) from None
    if problems:
        raise InvalidInput(problems)
    return fields
