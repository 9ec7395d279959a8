"""Baking an SDXL refiner with its base: ``sdworker bake MODEL --refiner REF``.

The refiner lives inside its base's folder, in ``refiner/``: its ``model_index.json`` (the
pipeline's options: ``requires_aesthetics_score``...), ``unet/`` and ``scheduler/``. Its VAE
and second text encoder are not kept: the worker builds the refiner around the base's own
(SDXL's refiner was trained with the base's VAE and OpenCLIP encoder), so they are loaded and
held once. The manifest's ``refiner`` records where it came from, and its file list covers
the refiner's files, so ``verify`` checks them with the base's.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from sdworker import families
from sdworker.builder.layout import atomic_model_dir, scratch_dir, write_manifest
from sdworker.core.errors import BuildError
from sdworker.core.manifest import MANIFEST_NAME, Manifest

#: the folder of a baked model that holds its refiner (the worker reads the same name)
REFINER_DIR = "refiner"
#: what of a refiner's diffusers folder is kept
_KEPT = ("model_index.json", "unet", "scheduler")


def copy_refiner(src: Path, model_dir: Path, base_text_width: int) -> None:
    """Copy the refiner parts of the diffusers folder ``src`` into ``model_dir/refiner``,
    after checking that it is an SDXL refiner whose UNet reads the base's second encoder."""
    index = _json(src / "model_index.json")
    unet = _json(src / "unet" / "config.json")
    if unet.get("addition_embed_type") != "text_time" or "Img2Img" not in str(
        index.get("_class_name", "")
    ):
        raise BuildError(f"{src} is not an SDXL refiner (StableDiffusionXLImg2ImgPipeline)")
    if unet.get("cross_attention_dim") != base_text_width:
        raise BuildError(
            f"{src}: the refiner's UNet reads {unet.get('cross_attention_dim')}-wide text "
            f"states, the base's second text encoder gives {base_text_width}: not this base's"
        )
    dest = model_dir / REFINER_DIR
    dest.mkdir()
    for name in _KEPT:
        if (src / name).is_dir():
            shutil.copytree(src / name, dest / name)
        else:
            shutil.copyfile(src / name, dest / name)


def base_text_width(model_dir: Path) -> int:
    """The hidden width of the base's second text encoder (what the refiner's UNet reads)."""
    config = _json(model_dir / "text_encoder_2" / "config.json")
    return int(config.get("hidden_size", 0))


def add_refiner(models_dir: Path, name: str, refiner_src: Path, source: str) -> Path:
    """Bake the refiner in the diffusers folder ``refiner_src`` into the baked SDXL model
    ``name``: the model is rebuilt beside itself (files hard-linked where the disk allows)
    and swapped in whole, as every bake is."""
    model_dir = models_dir / name
    manifest = Manifest.read(model_dir)
    family = families.get(manifest.family)
    if not family.applies("refiner_inference_steps"):
        raise BuildError(f"--refiner needs an SDXL model; {name!r} is {family.label}")
    width = base_text_width(model_dir)
    with atomic_model_dir(models_dir, name) as tmp:
        shutil.copytree(model_dir, tmp, dirs_exist_ok=True, copy_function=_link_or_copy)
        shutil.rmtree(tmp / REFINER_DIR, ignore_errors=True)
        (tmp / MANIFEST_NAME).unlink()
        copy_refiner(refiner_src, tmp, width)
        write_manifest(tmp, replace(manifest, refiner=source))
    return model_dir


def bake_refiner_ref(
    models_dir: Path,
    name: str,
    ref: str,
    *,
    revision: str | None = None,
    variant: str | None = "auto",
) -> Path:
    """``--refiner REF``: a diffusers folder or a hub id, fetched as a base would be (into a
    scratch folder), then added to the baked model ``name``."""
    from sdworker.builder.bake import HUB_ID, bake_folder, bake_hub

    local = Path(ref).expanduser()
    with scratch_dir() as scratch:
        if local.is_dir():
            fetched = bake_folder(local, scratch, "refiner", source=f"folder:{local.resolve()}")
            source = f"folder:{local.resolve()}"
        elif HUB_ID.match(ref):
            fetched = bake_hub(ref, scratch, "refiner", revision=revision, variant=variant)
            source = f"hub:{ref}@{revision or 'main'}"
        else:
            raise BuildError(f"--refiner {ref!r} is neither a diffusers folder nor a hub id")
        return add_refiner(models_dir, name, fetched, source)


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BuildError(f"{path} is missing: not a complete diffusers folder")
    data: dict[str, Any] = json.loads(path.read_text())
    return data
