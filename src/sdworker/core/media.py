"""What a result image is called outside the process: content types and A1111's infotext.

Torch-free and Pillow-free, so request formats (which may import only ``core``) describe
images exactly as the encoder writes them: one content type table, one infotext writer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: the output formats and their MIME types
CONTENT_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
#: file name extensions by format
EXTENSIONS: dict[str, str] = {"png": "png", "jpeg": "jpg", "webp": "webp"}

#: A1111 writes no ``Schedule type`` for its default
_DEFAULT_SCHEDULE = "automatic"


def infotext(
    *,
    prompt: str,
    negative_prompt: str,
    steps: int,
    sampler: str,
    guidance_scale: float,
    seed: int,
    width: int,
    height: int,
    model_name: str,
    model_hash: str = "",
    schedule_type: str | None = None,
    distilled_guidance: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """``prompt\\nNegative prompt: ...\\nSteps: 20, Sampler: Euler a, Schedule type: Karras,
    CFG scale: 7, Seed: 1, Size: 512x512, Model hash: ..., Model: ..., Clip skip: 2``.

    The fields come in A1111's order; ``extra`` (e.g. ``Denoising strength``, ``Clip skip``)
    follows ``Model`` in the order given, and a None value is left out. A guidance-distilled
    model's guidance (FLUX.1's) follows ``CFG scale`` as ``Distilled CFG Scale``, as Forge
    writes it; ``guidance_scale`` is then its true CFG scale. The same text goes into
    each PNG's ``parameters`` chunk and into the A1111 format's ``info``, so one image never
    has two infotexts.
    """
    fields: dict[str, Any] = {"Steps": steps, "Sampler": sampler}
    if schedule_type and schedule_type.casefold() != _DEFAULT_SCHEDULE:
        fields["Schedule type"] = schedule_type
    fields["CFG scale"] = _num(guidance_scale)
    if distilled_guidance is not None:
        fields["Distilled CFG Scale"] = _num(distilled_guidance)
    fields.update({"Seed": seed, "Size": f"{width}x{height}"})
    if model_hash:
        fields["Model hash"] = model_hash
    fields["Model"] = model_name
    fields.update(extra or {})
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields.items() if v is not None))
    return "\n".join(lines)


def hires_fields(
    *,
    scale: float,
    resize: tuple[int, int] | None,
    steps: int | None,
    upscaler: str,
    sampler: str | None = None,
    schedule: str | None = None,
    prompt: str | None = None,
    negative_prompt: str | None = None,
) -> dict[str, Any]:
    """A hires fix's infotext entries, in A1111's order and form: ``Hires resize`` is the
    size asked (``96x0`` when only the width was), else ``Hires upscale``; the sampler,
    schedule type and prompts are given only where they are the second pass's own (None is
    left out). ``Denoising strength`` is the caller's: A1111 writes it before ``Clip skip``."""
    fields: dict[str, Any] = {
        "Hires sampler": sampler,
        "Hires prompt": prompt,
        "Hires negative prompt": negative_prompt,
        "Hires schedule type": schedule,
    }
    if resize is not None:
        fields["Hires resize"] = f"{resize[0]}x{resize[1]}"
    else:
        fields["Hires upscale"] = scale
    fields["Hires steps"] = steps
    fields["Hires upscaler"] = upscaler
    return fields


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _quote(value: Any) -> str:
    text = str(_num(value) if isinstance(value, float) else value)
    # as A1111's ``quote``: only what would break its comma-separated parsing is quoted
    if any(c in text for c in ",:\n"):
        return json.dumps(text, ensure_ascii=False)
    return text
