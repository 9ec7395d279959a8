"""A request's LoRAs, resolved: each entry of its ``lora`` list becomes the file it names (a
baked or volume LoRA by name, or a URL or hub file fetched into the disk cache), checked
against the model's family before any model loads. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sdworker.core.assetfetch import AssetFetcher, AssetRefused, Reference, public_url
from sdworker.core.assets import LORA, Asset, AssetRegistry
from sdworker.core.errors import InvalidInput, Problem
from sdworker.families import Family, label

if TYPE_CHECKING:
    from sdworker.core.schema import LoraRef

#: one LoRA of a request and its scale; a request's LoRA set is a tuple of these
LoraUse = tuple[str, float]
LoraSet = tuple[LoraUse, ...]


@dataclass(frozen=True)
class AppliedLora:
    """One LoRA of a request: its file, its scale, and the entry that asked for it."""

    asset: Asset
    scale: float
    #: the entry as messages name it (``lora[1]``)
    field: str

    @property
    def key(self) -> str:
        """Its identity for the adapters on a model (changes when the file does)."""
        return self.asset.key

    def described(self) -> str:
        """``LoRA 'ink'``, or ``LoRA lora[1] (https://host/ink.safetensors)``."""
        if self.asset.source in ("baked", "volume"):
            return f"LoRA {self.asset.name!r}"
        return f"LoRA {self.field} ({self.asset.name})"


def lora_set(loras: Sequence[AppliedLora]) -> LoraSet:
    """A request's LoRAs as a set key: order kept, a LoRA given twice has its scales added;
    a LoRA at scale 0 changes nothing, so the request is served as the plain model."""
    merged: dict[str, float] = {}
    for lora in loras:
        merged[lora.key] = merged.get(lora.key, 0.0) + float(lora.scale)
    return tuple((key, scale) for key, scale in merged.items() if scale != 0.0)


def resolve(
    refs: Sequence[LoraRef],
    registry: AssetRegistry,
    fetcher: AssetFetcher,
    *,
    family: Family,
    model: str,
    max_bytes: int,
) -> tuple[AppliedLora, ...]:
    """Each entry's file (fetching those given by URL or hub id), or :class:`InvalidInput`
    naming every entry that cannot be used and why: a refused or unknown file, one made for
    another family than the model's."""
    applied: list[AppliedLora] = []
    problems: list[Problem] = []
    for i, ref in enumerate(refs):
        try:
            asset = _asset_of(ref, registry, fetcher, max_bytes)
        except AssetRefused as exc:
            problems.append(_refusal(i, ref, exc))
            continue
        if asset is None:
            continue  # a name the input rules refused already
        if asset.family is not None and asset.family != family.lora_key:
            field = _field(i, ref, "url" if ref.url else "hub" if ref.hub else "name")
            rule = f"is made for {label(asset.family)} models; model {model!r} is {family.label}"
            problems.append(Problem(field, rule, _shown(ref)))
            continue
        applied.append(AppliedLora(asset, float(ref.scale), f"lora[{i}]"))
    if problems:
        raise InvalidInput(problems)
    return tuple(applied)


def _asset_of(
    ref: LoraRef, registry: AssetRegistry, fetcher: AssetFetcher, max_bytes: int
) -> Asset | None:
    if ref.name is not None:
        found = registry.find(LORA, ref.name)
        if found is not None and found.refused is not None:
            raise AssetRefused(f"{found.described()} {found.refused}", "name")
        return found
    reference = Reference(ref.url, ref.hub, ref.file, _sha(ref.sha256), ref.token)
    return fetcher.fetch(LORA, reference, max_bytes=max_bytes)


def _sha(value: str | None) -> str | None:
    return value.strip().lower() if value is not None else None


def _field(index: int, ref: LoraRef, part: str) -> str:
    return f"lora[{index}].{part}"


def _shown(ref: LoraRef) -> str:
    """The entry's value as an error may show it (never a secret)."""
    if ref.url is not None:
        return public_url(ref.url)
    if ref.hub is not None:
        return ref.hub if ref.file is None else f"{ref.hub} {ref.file}"
    return ref.name or ""


def _refusal(index: int, ref: LoraRef, exc: AssetRefused) -> Problem:
    part = exc.part
    value: str | None = {
        "url": _shown(ref),
        "hub": ref.hub,
        "file": ref.file,
        "sha256": ref.sha256,
        "name": ref.name,
    }.get(part)
    if value is None:
        return Problem(_field(index, ref, part), str(exc), has_value=False)
    return Problem(_field(index, ref, part), str(exc), value)
