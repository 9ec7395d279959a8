"""A1111's extra-network tags in a prompt: ``<lora:NAME:WEIGHT>`` applies a LoRA.

A1111 takes LoRAs only this way: the tag names a LoRA as ``/sdapi/v1/loras`` lists it (a
volume one by its path below ``models/loras``, without ``.safetensors``), the weight defaults
to 1, and the tag itself is taken out of the prompt before it is encoded. ``<lyco:...>`` is
the LyCORIS extension's spelling of the same. A1111's per-part weights
(``<lora:name:te=0.5:unet=1>``) are refused by name: this worker scales a LoRA as a whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sdworker.core.errors import Problem

#: ``<lora:name>``, ``<lora:name:0.8>`` (and anything else after the name, checked below)
TAG = re.compile(r"<(?:lora|lyco):([^:<>]+)((?::[^:<>]*)*)>", re.IGNORECASE)
#: the weights a tag may give (the native ``lora`` entry's scale range)
MIN_WEIGHT, MAX_WEIGHT = 0.0, 2.0


@dataclass
class Tags:
    """A prompt's LoRA tags: the prompt without them, the native ``lora`` entries, problems."""

    prompt: str
    loras: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def take(prompt: str, field_name: str = "prompt") -> Tags:
    """The LoRA tags of ``prompt`` (a LoRA tagged twice has its weights added, as in A1111)."""
    weights: dict[str, float] = {}
    problems: list[Problem] = []
    for match in TAG.finditer(prompt):
        name, rest = match.group(1).strip(), match.group(2)
        weight = _weight(rest)
        if weight is None or not name:
            rule = "a LoRA tag is <lora:NAME> or <lora:NAME:WEIGHT> (WEIGHT a number)"
            problems.append(Problem(field_name, rule, match.group(0)))
            continue
        weights[name] = weights.get(name, 0.0) + weight
    for name, weight in weights.items():
        if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
            rule = f"the weight of <lora:{name}> must be {MIN_WEIGHT:g} to {MAX_WEIGHT:g}"
            problems.append(Problem(field_name, rule, weight))
    text = TAG.sub("", prompt) if weights or problems else prompt
    loras = [{"name": name, "scale": weight} for name, weight in weights.items()]
    return Tags(text, loras, problems)


def _weight(rest: str) -> float | None:
    """The weight after the name (``:0.8``; none is 1), or None when it is not one."""
    parts = [p.strip() for p in rest.split(":")[1:]]
    if not parts or parts == [""]:
        return 1.0
    if len(parts) != 1:
        return None
    try:
        weight = float(parts[0])
    except ValueError:
        return None
    return weight if weight == weight and abs(weight) != float("inf") else None
