"""Other services' spellings of the native input's fields: ONE table, used by :func:`respell`.

Clients of RunPod's "Stable Diffusion v1" endpoint and of worker-sdxl send their own names for
fields the native input already has (``num_outputs``, ``init_image``, ``image_url``...). Each is
renamed to its native field before validation, and remembered, so an error names the field as
the client spelled it. Two spellings of one field in one input are an error: which value was
meant cannot be guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sdworker.core.errors import Problem

#: native field -> the other spellings accepted for it (and who sends them), as
#: docs/formats/runpod-workers.md lists them
FIELD_SPELLINGS: dict[str, tuple[str, ...]] = {
    "num_images": ("num_images_per_prompt", "num_outputs"),  # diffusers; RunPod SD v1
    "image": ("init_image", "image_url"),  # RunPod SD v1; worker-sdxl
    "mask_image": ("mask",),  # RunPod SD v1
    "strength": ("prompt_strength",),  # RunPod SD v1
    "safety_checker": ("nsfw",),  # RunPod SD v1: nsfw true means no checker
}


def _nsfw(value: Any) -> Any:
    """``nsfw: true`` (NSFW allowed) turns the checker off; ``false``, the SD v1 endpoint's
    default, asks for nothing beyond the default (the configured checker behaviour)."""
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        value = value.strip().lower() == "true"
    if value is True:
        return False
    if value is False:
        return None
    return value  # left for validation to refuse, named as the client spelled it


#: spellings whose value needs translating, not only renaming
_CONVERT: dict[str, Callable[[Any], Any]] = {"nsfw": _nsfw}

_NATIVE_OF: dict[str, str] = {
    spelling: native for native, spellings in FIELD_SPELLINGS.items() for spelling in spellings
}


def spellings() -> list[str]:
    """Every non-native spelling accepted (for the list of known fields)."""
    return list(_NATIVE_OF)


@dataclass
class Respelled:
    """An input with its fields under their native names, and how the client spelled them."""

    data: dict[str, Any]
    #: native name -> the spelling the client used, for fields not spelled natively
    spelled: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def name(self, native: str) -> str:
        """``native`` as the client spelled it."""
        return self.spelled.get(native, native)


def respell(raw: dict[str, Any]) -> Respelled:
    """Rename every accepted spelling in ``raw`` to its native field (translating values where
    the meaning differs); two spellings of one field are a problem named by the later one."""
    out = Respelled(dict(raw))
    for key, value in raw.items():
        native = _NATIVE_OF.get(key)
        if native is None:
            continue
        del out.data[key]
        if native in out.data:
            first = out.spelled.get(native, native)
            out.problems.append(Problem(key, f"give {first} or {key}, not both", value))
            continue
        out.data[native] = _CONVERT[key](value) if key in _CONVERT else value
        out.spelled[native] = key
    return out


def rename_field(name: str, spelled: dict[str, str]) -> str:
    """A field path from validation (``num_images``, ``lora[0].name``) with its first part as
    the client spelled it."""
    head, sep, rest = name.partition(".")
    base, bracket, index = head.partition("[")
    return spelled.get(base, base) + bracket + index + sep + rest
