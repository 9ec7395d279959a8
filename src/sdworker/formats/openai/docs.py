"""OpenAPI request bodies of the OpenAI Images API routes, for ``/docs`` (documentation only:
the routes read their bodies themselves, JSON or multipart)."""

from __future__ import annotations

from typing import Any

from sdworker.formats.openai.request import MAX_N, OUTPUT_FORMATS, RESPONSE_FORMATS
from sdworker.formats.openapi import FAMILY_FIELDS

_COMMON: dict[str, Any] = {
    "model": {
        "type": "string",
        "description": "a baked model, an alias or its hub id (default: the default model)",
    },
    "n": {"type": "integer", "minimum": 1, "maximum": MAX_N, "default": 1},
    "size": {"type": "string", "example": "512x512", "description": "WIDTHxHEIGHT or auto"},
    "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "url"},
    "output_format": {"type": "string", "enum": sorted(set(OUTPUT_FORMATS)), "default": "png"},
    "quality": {"type": "string", "description": "accepted, no effect"},
    "style": {"type": "string", "description": "accepted, no effect"},
    "user": {"type": "string", "description": "accepted, no effect"},
    "negative_prompt": {"type": "string"},
    "seed": {"type": "integer", "minimum": 0, "description": "image i uses seed + i"},
    "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 500},
    "guidance_scale": {"type": "number", "minimum": 0, "maximum": 30},
    "scheduler": {"type": "string", "example": "DPM++ 2M Karras"},
    **FAMILY_FIELDS,
}
_PROMPT = {"prompt": {"type": "string"}}
_STRENGTH = {"strength": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}}
_FILE = {"type": "string", "format": "binary"}


def _object(properties: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


def _body(
    properties: dict[str, Any], files: dict[str, Any], required: tuple[str, ...]
) -> dict[str, Any]:
    """JSON (images as base64, data: or http(s) URLs) and multipart (images as files)."""
    images = {name: {"type": "string", "description": "base64, a data: URL or an http(s) URL"}
              for name in files}  # fmt: skip
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _object({**properties, **images}, required)},
                "multipart/form-data": {"schema": _object({**properties, **files}, required)},
            },
        }
    }


GENERATIONS = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _object({**_PROMPT, **_COMMON}, ("prompt",)),
                "example": {
                    "prompt": "a lighthouse",
                    "n": 2,
                    "size": "512x512",
                    "response_format": "b64_json",
                },
            }
        },
    }
}
EDITS = _body(
    {**_PROMPT, **_COMMON, **_STRENGTH},
    {"image": _FILE, "mask": {**_FILE, "description": "transparent where to edit"}},
    ("prompt", "image"),
)
VARIATIONS = _body({**_COMMON, **_STRENGTH, **_PROMPT}, {"image": _FILE}, ("image",))
BODIES = {"generations": GENERATIONS, "edits": EDITS, "variations": VARIATIONS}
