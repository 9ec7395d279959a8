"""The manifest a bake writes beside each model: what the model is and what its files are.

Layout of ``SDWORKER_MODELS_DIR``::

    models/
      tiny/                  a diffusers folder (model_index.json, unet/, vae/, ...)
        sdworker.json        this manifest
        refiner/             an SDXL model's refiner, when baked with one (model_index.json,
                             unet/, scheduler/: it shares the base's VAE and text_encoder_2)
      loras/NAME.safetensors baked LoRA files (with NAME.json beside each)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdworker import families
from sdworker.core.errors import ModelDamaged

MANIFEST_NAME = "sdworker.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a baked model is. Written by the builder, read by the worker at start."""

    name: str
    #: the model's family (:mod:`sdworker.families`): ``sd1``, ``sdxl``, ``flux``...
    family: str
    native_width: int
    native_height: int
    default_scheduler: str
    has_safety_checker: bool
    prediction_type: str = "epsilon"
    source: str = ""
    #: sha256 of the checkpoint the model came from (or of its main weights), A1111 style
    sha256: str = ""
    files: dict[str, FileEntry] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT
    #: where the SDXL refiner baked with this model came from ("" when it has none); its UNet,
    #: scheduler and index live in the model's ``refiner/`` folder, its VAE and second text
    #: encoder are the base's own
    refiner: str = ""
    #: other names clients may use for this model (``sdworker bake --alias``); the registry
    #: adds those of ``SDWORKER_MODEL_ALIASES`` when it reads the manifest
    aliases: tuple[str, ...] = ()
    #: input field -> the value a request that leaves it out gets, where the model's own
    #: differs from its family's (FLUX.1 schnell's 4 steps, SD 3.5 Large Turbo's)
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def has_refiner(self) -> bool:
        return bool(self.refiner)

    @property
    def short_hash(self) -> str:
        """The 10-hex-digit hash AUTOMATIC1111 shows in ``title`` ("name.safetensors [hash]")."""
        return self.sha256[:10]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["short_hash"] = self.short_hash
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        files = {k: FileEntry(**v) for k, v in data.get("files", {}).items()}
        skip = ("files", "aliases")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k not in skip}
        aliases = tuple(str(a) for a in data.get("aliases") or ())
        try:
            families.get(str(data.get("family")))
        except families.UnknownFamily as exc:
            raise ValueError(str(exc)) from None
        return cls(**known, files=files, aliases=aliases)

    def write(self, model_dir: Path) -> Path:
        """Write atomically, so a registry refresh never reads half a manifest."""
        path = model_dir / MANIFEST_NAME
        partial = path.with_name(f".{MANIFEST_NAME}.partial")
        partial.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        os.replace(partial, path)
        return path

    @property
    def bake_ref(self) -> str:
        """What to give ``sdworker bake`` to make this model again (the source, unprefixed)."""
        kind, _, ref = self.source.partition(":")
        if kind == "hub":
            return ref.rsplit("@", 1)[0]
        if kind in {"folder", "checkpoint"}:
            return ref
        if kind.startswith("tiny"):
            return kind
        return self.source or self.name

    @classmethod
    def read(cls, model_dir: Path) -> Manifest:
        return cls.from_json(json.loads((model_dir / MANIFEST_NAME).read_text()))

    def problems(self, model_dir: Path, *, check_sha256: bool = False) -> list[str]:
        """What is wrong with the files of ``model_dir`` against this manifest (empty: nothing).

        Sizes are always compared (cheap: one ``stat`` per file); sha256 only when asked, since
        hashing a multi-GB model takes seconds to minutes.
        """
        found: list[str] = []
        for rel, entry in sorted(self.files.items()):
            path = model_dir / rel
            if not path.is_file():
                found.append(f"{rel}: missing")
                continue
            size = path.stat().st_size
            if size != entry.size:
                found.append(f"{rel}: size {size} bytes, manifest says {entry.size}")
            elif check_sha256 and sha256_file(path) != entry.sha256:
                found.append(f"{rel}: sha256 differs from the manifest (file damaged or replaced)")
        return found

    def verify(self, model_dir: Path, *, check_sha256: bool = False) -> None:
        """Raise :class:`~sdworker.core.errors.ModelDamaged` listing every bad file of ``model_dir``."""
        found = self.problems(model_dir, check_sha256=check_sha256)
        if found:
            shown = "; ".join(found[:10]) + (
                f"; and {len(found) - 10} more" if len(found) > 10 else ""
            )
            raise ModelDamaged(
                f"model {self.name!r} at {model_dir} is damaged: {shown}. "
                f"Bake it again (sdworker bake {self.bake_ref} --name {self.name})."
            )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(model_dir: Path) -> dict[str, FileEntry]:
    """Size and sha256 of every file under ``model_dir`` except the manifest itself."""
    entries: dict[str, FileEntry] = {}
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and path.name != MANIFEST_NAME:
            rel = path.relative_to(model_dir).as_posix()
            entries[rel] = FileEntry(size=path.stat().st_size, sha256=sha256_file(path))
    return entries
