"""Full-size architectures with random weights, for benchmarks.

The shipped configs (``configs/sd1``, ``configs/sdxl``, ``configs/flux-schnell``,
``configs/sd35-medium``) give the real geometry, so a random model does exactly the FLOPs and
memory traffic of the released one; only the pictures are noise. Weights are made and stored
in the family's GPU dtype (fp16, or bf16 for SD 3.x and FLUX.1), the dtype benchmarks run in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sdworker import families
from sdworker.builder.layout import atomic_model_dir, scratch_dir, write_manifest
from sdworker.core.errors import BuildError


def bake_random(models_dir: Path, name: str, *, config: str, seed: int = 0) -> Path:
    """Bake a random-weights model of the real architecture the shipped configs ``config``
    describe into ``models_dir``, its weights in its family's GPU dtype."""
    import shutil

    import torch

    from sdworker.builder.describe import (
        config_folder,
        describe_folder,
        folder_configs,
        restore_index_names,
        tokenizer_folders,
        weights_file,
    )
    from sdworker.builder.files import read_model_index

    with scratch_dir() as scratch, atomic_model_dir(models_dir, name) as tmp:
        cfg = config_folder(config, scratch / "config")
        family = families.recognise(folder_configs(cfg))
        if family is None:
            raise BuildError(f"the shipped configs {config!r} are no model family's")
        index = read_model_index((cfg / "model_index.json").read_text())
        kept = {*tokenizer_folders(config), "feature_extractor"}
        torch.manual_seed(seed)
        with _default_dtype(DTYPES[family.gpu_dtype]):
            for key, value in _entries(index, kept):
                component(cfg, key, value).save_pretrained(tmp / key)
        for key in sorted(kept):
            if (cfg / key).is_dir():
                shutil.rmtree(tmp / key, ignore_errors=True)
                shutil.copytree(cfg / key, tmp / key)
        shutil.copyfile(cfg / "model_index.json", tmp / "model_index.json")
        restore_index_names(tmp, index)
        manifest = describe_folder(tmp, name, f"random:{config}:seed={seed}")
        write_manifest(tmp, manifest, weights=weights_file(tmp, family.denoiser))
    return models_dir / name


#: the dtype random weights are made and stored in, by the family's GPU dtype
DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


@contextmanager
def _default_dtype(name: str) -> Iterator[None]:
    """Modules made in the block have ``torch.<name>`` weights: a 12 B-parameter transformer
    is made in half the memory float32 would take."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, name))
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _entries(index: dict[str, Any], kept: set[str]) -> list[tuple[str, list[Any]]]:
    """The components made with random weights (the tokenizers and processors are copied)."""
    return [
        (k, v)
        for k, v in sorted(index.items())
        if not k.startswith("_") and isinstance(v, list) and v[0] is not None and k not in kept
    ]


def component(cfg: Path, key: str, value: list[Any]) -> Any:
    """The component ``key`` of the config folder ``cfg``, with random weights."""
    import importlib

    library, class_name = value
    cls = getattr(importlib.import_module(library), class_name)
    if library == "diffusers":
        config_name = "scheduler_config.json" if key == "scheduler" else "config.json"
        config = cls.load_config(cfg / key / config_name)
        return cls.from_config(config)
    from transformers import AutoConfig

    return cls(AutoConfig.from_pretrained(cfg / key))
