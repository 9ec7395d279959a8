"""Naming baked models the ways other services do: aliases, A1111 titles and hashes, hub ids,
file names. Every format resolves a model name here, so each honours the same aliases (the
registry puts them on the manifests, :mod:`sdworker.core.models`)."""

from __future__ import annotations

import re

from sdworker.core.manifest import Manifest

_TITLE = re.compile(r"^(?P<name>.*?)\s*\[(?P<hash>[0-9a-fA-F]{8,64})\]$")
_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".bin")


def strip_ref(ref: str) -> tuple[str, str | None]:
    """``"v1-5.safetensors [6ce0161689]"`` → ``("v1-5", "6ce0161689")``."""
    ref = ref.strip()
    hash_part: str | None = None
    match = _TITLE.match(ref)
    if match:
        ref, hash_part = match.group("name"), match.group("hash").lower()
    ref = ref.replace("\\", "/").rsplit("/", 1)[-1] if ref.endswith(_EXTENSIONS) else ref
    for ext in _EXTENSIONS:
        if ref.endswith(ext):
            ref = ref[: -len(ext)]
            break
    return ref, hash_part


def resolve(manifests: list[Manifest], ref: str) -> str | None:
    """The baked model ``ref`` names: its name, an alias, A1111 title or file name, hash, or
    hub id."""
    if not ref or not ref.strip():
        return None
    by_name = {m.name: m for m in manifests}
    if ref in by_name:
        return ref
    by_alias = {alias: m.name for m in manifests for alias in m.aliases}
    if ref.strip() in by_alias:
        return by_alias[ref.strip()]
    name, hash_part = strip_ref(ref)
    if name in by_name:
        return name
    lowered = ref.strip().lower()
    for manifest in manifests:
        sha = manifest.sha256.lower()
        if sha and (
            lowered in (sha, sha[:10], sha[:8]) or (hash_part and sha.startswith(hash_part))
        ):
            return manifest.name
    for manifest in manifests:
        source = hub_id(manifest)
        if source and (lowered == source.lower() or lowered == source.rsplit("/", 1)[-1].lower()):
            return manifest.name
    return None


def hub_id(manifest: Manifest) -> str:
    """The hub id (or folder) the model was baked from, as a client names it: a bake from the
    hub records ``hub:black-forest-labs/FLUX.1-schnell@main``, and a client sends
    ``black-forest-labs/FLUX.1-schnell``."""
    source = manifest.source.strip().rstrip("/")
    kind, sep, ref = source.partition(":")
    if sep and kind == "hub":
        return ref.rsplit("@", 1)[0]
    return source


def find_manifest(manifests: list[Manifest], name: str | None) -> Manifest | None:
    """The manifest of the baked model called exactly ``name`` (None when there is none)."""
    return next((m for m in manifests if m.name == name), None)


def a1111_title(manifest: Manifest) -> str:
    """The ``title`` A1111 shows: ``"name.safetensors [hash10]"`` (no brackets when unhashed)."""
    if manifest.short_hash:
        return f"{manifest.name}.safetensors [{manifest.short_hash}]"
    return f"{manifest.name}.safetensors"
