"""Full-size Stable Diffusion architectures with random weights, for benchmarks.

The shipped configs (``configs/sd1``, ``configs/sdxl``) give the real geometry, so a random
model does exactly the FLOPs and memory traffic of the released one; only the pictures are noise.
Weights are stored in fp16, the dtype benchmarks run in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdworker import families
from sdworker.builder.layout import atomic_model_dir, scratch_dir, write_manifest


def bake_random(models_dir: Path, name: str, *, config: str, seed: int = 0) -> Path:
    """Bake a random-weights model of the real architecture the shipped configs ``config``
    describe into ``models_dir``."""
    import shutil

    import torch

    from sdworker.builder.describe import config_folder, describe_folder, restore_index_names
    from sdworker.builder.files import read_model_index

    with scratch_dir() as scratch, atomic_model_dir(models_dir, name) as tmp:
        cfg = config_folder(config, scratch / "config")
        index = read_model_index((cfg / "model_index.json").read_text())
        torch.manual_seed(seed)
        components = {key: _component(cfg, key, value) for key, value in _entries(index)}
        for key, module in components.items():
            saver: Any = module
            if isinstance(module, torch.nn.Module):
                saver = module.to(torch.float16)
            saver.save_pretrained(tmp / key)
        for key in ("tokenizer", "tokenizer_2", "feature_extractor"):
            if (cfg / key).is_dir():
                shutil.rmtree(tmp / key, ignore_errors=True)
                shutil.copytree(cfg / key, tmp / key)
        shutil.copyfile(cfg / "model_index.json", tmp / "model_index.json")
        restore_index_names(tmp, index)
        manifest = describe_folder(tmp, name, f"random:{config}:seed={seed}")
        denoiser = families.get(manifest.family).denoiser
        write_manifest(tmp, manifest, weights=f"{denoiser}/diffusion_pytorch_model.safetensors")
    return models_dir / name


def _entries(index: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    return [
        (k, v)
        for k, v in sorted(index.items())
        if not k.startswith("_")
        and isinstance(v, list)
        and v[0] is not None
        and k not in ("tokenizer", "tokenizer_2", "feature_extractor")
    ]


def _component(cfg: Path, key: str, value: list[Any]) -> Any:
    import importlib

    library, class_name = value
    cls = getattr(importlib.import_module(library), class_name)
    if library == "diffusers":
        config_name = "scheduler_config.json" if key == "scheduler" else "config.json"
        config = cls.load_config(cfg / key / config_name)
        return cls.from_config(config)
    from transformers import AutoConfig

    return cls(AutoConfig.from_pretrained(cfg / key))
