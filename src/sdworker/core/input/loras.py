"""The rules of the ``lora`` entries: each names one LoRA (a baked or volume one by ``name``,
or a file by ``url`` or ``hub`` id), once, made for the model's family, with its reference
parts well formed. What only the file can tell (its format, size, tensors, sha256) is checked
when the request is prepared (:func:`sdworker.core.loras.resolve`), before any model loads.
"""

from __future__ import annotations

import re

from sdworker.core import netguard, secrets
from sdworker.core.assetfetch import hub_file_problem, hub_id_problem, public_url
from sdworker.core.errors import Problem
from sdworker.core.input.context import Draft
from sdworker.core.schema import LoraRef
from sdworker.families import label

SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
#: the parts of an entry that name the LoRA: exactly one is given
SOURCES = ("name", "url", "hub")


def loras(draft: Draft) -> list[Problem]:
    """Every entry's problems, in order."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, ref in enumerate(draft.input.lora or []):
        given = [part for part in SOURCES if getattr(ref, part) is not None]
        if len(given) != 1:
            what = "has none" if not given else f"has {' and '.join(given)}"
            rule = f"must give one of name, url or hub ({what})"
            problems.append(Problem(f"lora[{i}]", rule, has_value=False))
            continue
        if ref.name is not None:
            problems.extend(_named(draft, i, ref.name, seen))
        else:
            problems.extend(_reference(i, ref))
        problems.extend(_parts(i, ref))
    return problems


def _named(draft: Draft, index: int, name: str, seen: set[str]) -> list[Problem]:
    catalog = draft.context.loras
    field = f"lora[{index}].name"
    if name in seen:
        # scales of a repeated name would add up past the 0-2 rule
        return [Problem(field, "is listed twice (give one scale)", name)]
    seen.add(name)
    refused = catalog.refusal(name)
    if refused is not None:
        return [Problem(field, refused, name)]
    if not catalog.knows(name):
        known = ", ".join(catalog.names()) or "none"
        rule = f"unknown LoRA (give a baked or volume LoRA's name, or url or hub); LoRAs: {known}"
        return [Problem(field, rule, name)]
    if draft.model is None:
        return []
    made_for = catalog.family(name)
    fits = draft.model.family.lora_key
    if made_for is None or made_for == fits:
        return []
    rule = (
        f"is made for {label(made_for)} models; model {draft.model.name!r} is "
        f"{draft.model.family.label}"
    )
    return [Problem(field, rule, name)]


def _reference(index: int, ref: LoraRef) -> list[Problem]:
    if ref.url is not None:
        try:
            netguard.check_url(ref.url)
        except netguard.UrlRefused as exc:
            return [Problem(f"lora[{index}].url", str(exc), public_url(ref.url))]
        return []
    assert ref.hub is not None
    found = hub_id_problem(ref.hub)
    return [Problem(f"lora[{index}].hub", found, ref.hub)] if found else []


def _parts(index: int, ref: LoraRef) -> list[Problem]:
    """``file``, ``sha256`` and ``token``: well formed, and only where they mean something."""
    problems = []
    if ref.file is not None:
        found = hub_file_problem(ref.file) if ref.hub is not None else "only applies with hub"
        if found:
            problems.append(Problem(f"lora[{index}].file", found, ref.file))
    if ref.sha256 is not None:
        if not ref.by_reference:
            problems.append(
                Problem(f"lora[{index}].sha256", "only applies with url or hub", ref.sha256)
            )
        elif not SHA256.match(ref.sha256.strip()):
            rule = "must be a sha256 (64 hexadecimal digits)"
            problems.append(Problem(f"lora[{index}].sha256", rule, ref.sha256))
    if ref.token is not None and not ref.by_reference:
        problems.append(
            Problem(f"lora[{index}].token", "only applies with url or hub", has_value=False)
        )
    for part in ("token", "url"):
        if secrets.withheld(getattr(ref, part)):
            rule = "lost its secret: the endpoint restarted with this job queued; send it again"
            problems.append(Problem(f"lora[{index}].{part}", rule, has_value=False))
    return problems
