"""The model families sdworker serves, one object each: SD 1.x, SD 2.x, SDXL, SD 3.x and
FLUX.1 (with its Fill and Kontext models). See :mod:`.base` for what a family declares.

Adding a family is adding its module and one entry to :data:`FAMILIES`; the rest of the
worker asks the family and never tests its name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sdworker.families import flux, sd1, sd2, sd3, sdxl
from sdworker.families.base import FAMILY_FIELDS, Family, Mode, ModelConfigs

__all__ = ["FAMILIES", "FAMILY_FIELDS", "Family", "Mode", "ModelConfigs", "UnknownFamily"]

#: every family, the most specific first: a folder is the first family that recognises it
FAMILIES: tuple[Family, ...] = (
    flux.FILL,
    flux.KONTEXT,
    flux.FAMILY,
    sd3.FAMILY,
    sdxl.FAMILY,
    sd2.FAMILY,
    sd1.FAMILY,
)
_BY_NAME = {family.name: family for family in FAMILIES}


class UnknownFamily(LookupError):
    """A family name no module declares (a manifest from a newer sdworker, say)."""


def get(name: str) -> Family:
    """The family called ``name``; :class:`UnknownFamily` when there is none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise UnknownFamily(f"unknown model family {name!r} (known: {known})") from None


def names() -> list[str]:
    """Every family's name."""
    return sorted(_BY_NAME)


def recognise(configs: ModelConfigs) -> Family | None:
    """The family of the diffusers folder whose configs these are, or None."""
    return next((f for f in FAMILIES if f.recognises(configs)), None)


def lora_family(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """The family a LoRA file was made for, from its tensor names and shapes, or None.

    A family's markers decide first (SDXL's second text encoder, FLUX.1's blocks); failing
    those, the width of the text the UNet's cross-attention reads tells SD 1.x from SD 2.x."""
    for family in FAMILIES:
        if family.lora.matches(shapes):
            return family.lora_key
    by_width = {f.lora.context_width: f.lora_key for f in FAMILIES if f.lora.context_width}
    for key, shape in shapes.items():
        flat = key.replace("_", ".")
        down = any(part in key for part in ("lora_A", "lora_down", "lora.down"))
        if "attn2.to.k" in flat and down and len(shape) >= 2:
            return by_width.get(int(shape[1]))
    return None


def label(name: str) -> str:
    """How messages name the family called ``name`` (the name itself when unknown)."""
    family = _BY_NAME.get(name)
    return family.label if family else name


def scheduler_classes() -> tuple[str, ...]:
    """Every scheduler class some family runs on, each once, in the families' order."""
    found = dict.fromkeys(c for f in reversed(FAMILIES) for c in f.schedulers)
    return tuple(found)
