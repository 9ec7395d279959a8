"""Baking asset files beside the models: LoRAs (``models_dir/loras/NAME.safetensors`` +
``NAME.json``) and textual-inversion embeddings (``models_dir/embeddings/NAME.safetensors``,
``NAME`` its trigger word). Each is checked as the worker checks it (a safetensors header,
the kind's tensors) before anything is copied."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from sdworker.builder.layout import check_name
from sdworker.core.assets import EMBEDDING, LORA, AssetKind, judge, read_header
from sdworker.core.errors import BuildError
from sdworker.core.manifest import sha256_file

LORA_DIR = LORA.folder
EMBEDDING_DIR = EMBEDDING.folder


def bake_loras(models_dir: Path, paths: Iterable[Path]) -> list[Path]:
    """Copy each LoRA ``.safetensors`` into ``models_dir/loras`` with a small description
    (its size, sha256, source, and the family its tensors were made for).

    The LoRA's name is its file stem; a file that is not a readable safetensors file holding
    LoRA weights is refused before anything is copied.
    """
    baked = _bake(models_dir, LORA, [Path(p) for p in paths])
    for dest, src in baked:
        family, _ = judge(LORA, dest)
        info = {
            "name": dest.stem,
            "size": dest.stat().st_size,
            "sha256": sha256_file(dest),
            "source": src.name,
            # the worker refuses a LoRA on a model of another family (None: unknown, so the
            # worker finds out when it loads it)
            "family": family,
        }
        dest.with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return [dest for dest, _ in baked]


def bake_embeddings(models_dir: Path, paths: Iterable[Path]) -> list[Path]:
    """Copy each embedding ``.safetensors`` (a file, or every one in a folder) into
    ``models_dir/embeddings``; its file stem is its trigger word."""
    files: list[Path] = []
    for path in (Path(p) for p in paths):
        if path.is_dir():
            found = sorted(path.glob("*.safetensors"))
            if not found:
                raise BuildError(f"embedding folder {path}: no .safetensors file in it")
            files += found
        else:
            files.append(path)
    return [dest for dest, _ in _bake(models_dir, EMBEDDING, files)]


def _bake(models_dir: Path, kind: AssetKind, sources: list[Path]) -> list[tuple[Path, Path]]:
    for src in sources:
        _check(kind, src)
    dest_dir = models_dir / kind.folder
    dest_dir.mkdir(parents=True, exist_ok=True)
    baked = []
    for src in sources:
        dest = dest_dir / f"{check_name(src.stem)}.safetensors"
        tmp = dest.with_suffix(".safetensors.tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
        baked.append((dest, src))
    return baked


def _check(kind: AssetKind, path: Path) -> None:
    """Refuse a file the worker would refuse: not safetensors, or not tensors of ``kind``."""
    what = f"{kind.label} {path}"
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        raise BuildError(f"{what}: expected an existing .safetensors file")
    try:
        read_header(path)
    except (OSError, ValueError) as exc:
        raise BuildError(f"{what}: not a readable safetensors file: {exc}") from exc
    _, refused = judge(kind, path)
    if refused is not None:
        raise BuildError(f"{what}: {refused}")
