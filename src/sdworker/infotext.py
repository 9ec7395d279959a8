"""Generation parameters as AUTOMATIC1111 writes them ("infotext"), torch-free.

The same text goes into each PNG's ``parameters`` chunk and into the A1111 dialect's ``info``,
so tools that read A1111 images read ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
    extra: Mapping[str, Any] | None = None,
) -> str:
    """``prompt\\nNegative prompt: ...\\nSteps: 20, Sampler: ..., CFG scale: 7, Seed: ...``."""
    fields: dict[str, Any] = {
        "Steps": steps,
        "Sampler": sampler,
        "CFG scale": _num(guidance_scale),
        "Seed": seed,
        "Size": f"{width}x{height}",
    }
    if model_hash:
        fields["Model hash"] = model_hash
    fields["Model"] = model_name
    fields.update(extra or {})
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields.items() if v is not None))
    return "\n".join(lines)


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _quote(value: Any) -> str:
    text = str(value)
    # A1111 quotes values that would break its comma-separated parsing
    if any(c in text for c in ',:\n"'):
        return '"' + text.replace('"', '\\"').replace("\n", "\\n") + '"'
    return text
