"""Baking LoRA files beside the models: ``models_dir/loras/NAME.safetensors`` + ``NAME.json``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from sdworker.builder.layout import check_name
from sdworker.core.errors import BuildError
from sdworker.core.loras import read_shapes
from sdworker.core.manifest import sha256_file
from sdworker.families import lora_family

LORA_DIR = "loras"


def bake_loras(models_dir: Path, paths: Iterable[Path]) -> list[Path]:
    """Copy each LoRA ``.safetensors`` into ``models_dir/loras`` with a small description.

    The LoRA's name is its file stem; a file that is not a readable safetensors file holding
    LoRA weights is refused before anything is copied.
    """
    sources = [Path(p) for p in paths]
    for src in sources:
        _check_lora(src)
    dest_dir = models_dir / LORA_DIR
    dest_dir.mkdir(parents=True, exist_ok=True)
    baked = []
    for src in sources:
        name = check_name(src.stem)
        dest = dest_dir / f"{name}.safetensors"
        tmp = dest.with_suffix(".safetensors.tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
        info = {
            "name": name,
            "size": dest.stat().st_size,
            "sha256": sha256_file(dest),
            "source": src.name,
            # the worker refuses a LoRA on a model of another family (None: unknown, so the
            # worker finds out when it loads it)
            "family": lora_family(read_shapes(dest)),
        }
        (dest_dir / f"{name}.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        baked.append(dest)
    return baked


def _check_lora(path: Path) -> None:
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        raise BuildError(f"LoRA {path}: expected an existing .safetensors file")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            keys = list(fh.keys())
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise BuildError(f"LoRA {path}: not a readable safetensors file: {exc}") from exc
    if not any("lora" in k.lower() for k in keys):
        raise BuildError(
            f"LoRA {path}: no LoRA weights in it ({len(keys)} tensors, none named lora)"
        )
