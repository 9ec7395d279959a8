"""DeepInfra inference API: one synchronous call (or a webhook) with JSON or form fields.

Pure translation. Form bodies (``curl -F``) carry every value as text, so each field is
converted to its type here; an uploaded ``image`` file arrives already base64-encoded.
"""

from __future__ import annotations

import base64
from typing import Any

from sdworker.core.errors import Problem
from sdworker.core.settings import MAX_SIDE, MIN_SIDE
from sdworker.formats.fields import FieldReader
from sdworker.output.imageio import CONTENT_TYPES

FIELDS = (
    "prompt", "negative_prompt", "image", "mask_image", "num_images", "num_inference_steps",
    "guidance_scale", "strength", "width", "height", "seed", "use_compel", "lora", "webhook",
    "scheduler",
)  # fmt: skip
MAX_IMAGES = 4


def parse(body: Any, *, model: str) -> tuple[dict[str, Any], str | None]:
    """DeepInfra fields → (native input, webhook URL or None), checked in DeepInfra's ranges."""
    r = FieldReader(body)
    r.unknown(FIELDS)
    native: dict[str, Any] = {"model": model, "upload": False}
    prompt = r.string("prompt", required=True)
    if prompt is not None:
        native["prompt"] = prompt
    for key in ("negative_prompt", "image", "mask_image", "scheduler"):
        text = r.string(key)
        if text:
            native[key] = text
    ints = {
        "num_images": r.integer("num_images", lo=1, hi=MAX_IMAGES),
        "num_inference_steps": r.integer("num_inference_steps", lo=1, hi=512),
        "width": r.integer("width", lo=MIN_SIDE, hi=MAX_SIDE),
        "height": r.integer("height", lo=MIN_SIDE, hi=MAX_SIDE),
        "seed": r.integer("seed", lo=0, hi=2**32 - 1),
    }
    floats = {
        "guidance_scale": r.number("guidance_scale", lo=1, hi=20),
        "strength": r.number("strength", lo=0, hi=1),
    }
    native.update({k: v for k, v in {**ints, **floats}.items() if v is not None})
    compel = r.boolean("use_compel")
    if compel is not None:
        native["use_compel"] = compel
    lora = r.string("lora")
    if lora:
        native["lora"] = [{"name": lora, "scale": 1.0}]
    webhook = r.string("webhook")
    if webhook and not webhook.startswith(("http://", "https://")):
        r.bad("webhook", "must be an http(s) URL", webhook)
    r.raise_if_bad()
    return native, webhook or None


def response(
    request_id: str, outputs: list[dict[str, Any]], runtime_ms: int | None
) -> dict[str, Any]:
    """DeepInfra's answer: data-URL images, NSFW flags, the first seed, ``inference_status``."""
    images: list[str | None] = []
    for o in outputs:
        if "image" in o:
            mime = CONTENT_TYPES.get(str(o.get("format", "png")), "image/png")
            images.append(f"data:{mime};base64,{o['image']}")
        else:
            images.append(o.get("url"))
    return {
        "images": images,
        "nsfw_content_detected": [bool(o.get("nsfw_content_detected")) for o in outputs],
        "seed": outputs[0].get("seed") if outputs else None,
        "request_id": request_id,
        "inference_status": status_block("succeeded", runtime_ms),
    }


def status_block(status: str, runtime_ms: int | None) -> dict[str, Any]:
    return {
        "status": status,
        "runtime_ms": int(runtime_ms or 0),
        "cost": 0.0,
        "tokens_generated": 0,
        "tokens_input": 0,
    }


def error_body(message: str, problems: list[Problem] | None = None) -> dict[str, Any]:
    """FastAPI's validation shape (DeepInfra is a FastAPI service): one entry per bad field."""
    if problems:
        return {
            "detail": [
                {"loc": ["body", *p.field.split(".")], "msg": str(p), "type": "value_error"}
                for p in problems
            ]
        }
    return {"detail": {"error": message}}


def file_to_b64(data: bytes) -> str:
    """An uploaded ``-F image=@file.png`` as the base64 text native input takes."""
    return base64.b64encode(data).decode("ascii")
