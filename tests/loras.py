"""Tiny LoRA files for the families beside SD, in the layouts their loaders read."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_transformer_lora(path: Path, model_dir: Path, seed: int = 0) -> Path:
    """A LoRA for the tiny SD 3 or FLUX.1 model in ``model_dir``, made as trainers make them
    (a PEFT adapter on the transformer's attention, saved by the pipeline's
    ``save_lora_weights``: diffusers' layout), from seeded random weights whose up matrices
    are not zero, so it changes the image from the first step."""
    import torch
    from diffusers import DiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe: Any = DiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v"]
    )
    pipe.transformer.add_adapter(config)
    layers = get_peft_model_state_dict(pipe.transformer)
    type(pipe).save_lora_weights(
        str(path.parent), weight_name=path.name, transformer_lora_layers=layers
    )
    return path


def write_sd_lora(path: Path, rank: int = 4) -> Path:
    """An SD 1.x LoRA in diffusers' layout: the width its cross-attention reads says so."""
    import torch
    from safetensors.torch import save_file

    key = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    save_file(
        {
            f"{key}.lora_A.weight": torch.zeros(rank, 768),
            f"{key}.lora_B.weight": torch.zeros(64, rank),
        },
        str(path),
    )
    return path
