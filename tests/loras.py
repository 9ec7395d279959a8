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


def write_safetensors(
    path: Path,
    tensors: dict[str, tuple[int, ...]],
    metadata: dict[str, str] | None = None,
    fill: float = 0.0,
) -> Path:
    """A safetensors file of float32 tensors of these shapes, every value ``fill``, written
    without torch (the format: an 8-byte header length, the JSON header, the data)."""
    import json
    import struct
    from math import prod

    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    data = b""
    for name, shape in tensors.items():
        chunk = struct.pack(f"<{prod(shape)}f", *([fill] * prod(shape)))
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [len(data), len(data) + len(chunk)],
        }
        data += chunk
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path
