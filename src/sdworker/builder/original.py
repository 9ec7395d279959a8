"""Diffusers → original (LDM / AUTOMATIC1111) state-dict keys, for SD 1.x pipelines.

The inverse of diffusers' single-file conversion: it turns a diffusers folder back into one
``.safetensors`` checkpoint in the original layout (``model.diffusion_model.*``,
``first_stage_model.*``, ``cond_stage_model.transformer.*``). We use it to make single-file
checkpoints of the tiny model, so the checkpoint path of the builder is tested end to end.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sdworker.core.errors import BuildError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _resnet_tail(tail: str) -> str:
    layer, _, param = tail.partition(".")
    return f"{_UNET_RESNET.get(layer, layer)}.{param}"


# one rule per kind of block, tried in turn: a flat table, however many branches it counts
def unet_key(key: str, layers_per_block: int, up_blocks_with_attention: set[int]) -> str:  # noqa: C901
    """The original name of one diffusers UNet parameter (without the ``model.diffusion_model.``)."""
    per = layers_per_block + 1
    for new, old in _UNET_FIXED.items():
        if key.startswith(new + "."):
            return old + key[len(new) :]
    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        b, j, tail = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{b * per + j + 1}.0.{_resnet_tail(tail)}"
    if m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        b, j, tail = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{b * per + j + 1}.1.{tail}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet_tail(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        b, j, tail = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{b * per + j}.0.{_resnet_tail(tail)}"
    if m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        b, j, tail = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{b * per + j}.1.{tail}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        b = int(m[1])
        # the upsampler follows the attention when the block has one
        slot = 2 if b in up_blocks_with_attention else 1
        return f"output_blocks.{b * per + layers_per_block}.{slot}.conv.{m[2]}"
    raise BuildError(f"no original name for UNet parameter {key}")


def vae_key(key: str, num_up_blocks: int) -> str:
    """The original name of one diffusers VAE parameter (without ``first_stage_model.``)."""
    key = key.replace("conv_norm_out", "norm_out")
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
        layer, _, param = m[2].rpartition(".")
        return f"{m[1]}.mid.attn_1.{_VAE_ATTENTION.get(layer, layer)}.{param}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.{m[2]}"
    # the original decoder numbers its blocks from the lowest resolution up
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        block = num_up_blocks - 1 - int(m[1])
        return f"decoder.up.{block}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
        return f"decoder.up.{num_up_blocks - 1 - int(m[1])}.upsample.{m[2]}"
    return key


def to_original_state_dict(model_dir: Path) -> dict[str, Any]:
    """The original-layout state dict of the SD 1.x diffusers folder ``model_dir``."""
    import json

    from safetensors.torch import load_file

    unet_config = json.loads((model_dir / "unet" / "config.json").read_text())
    vae_config = json.loads((model_dir / "vae" / "config.json").read_text())
    if unet_config.get("addition_embed_type") == "text_time":
        raise BuildError("only SD 1.x folders can be written as original checkpoints")
    lpb = int(unet_config["layers_per_block"])
    with_attention = {
        i for i, kind in enumerate(unet_config["up_block_types"]) if "CrossAttn" in kind
    }
    out: dict[str, Any] = {}
    for key, tensor in load_file(
        model_dir / "unet" / "diffusion_pytorch_model.safetensors"
    ).items():
        out[UNET_PREFIX + unet_key(key, lpb, with_attention)] = tensor
    num_up = len(vae_config["up_block_types"])
    for key, tensor in load_file(model_dir / "vae" / "diffusion_pytorch_model.safetensors").items():
        name = vae_key(key, num_up)
        # the original VAE attention uses 1x1 convolutions where diffusers uses linear layers
        if ".mid.attn_1." in name and name.endswith("weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]
        out[VAE_PREFIX + name] = tensor
    for key, tensor in load_file(model_dir / "text_encoder" / "model.safetensors").items():
        # recent transformers save CLIPTextModel without its "text_model." level
        name = key if key.startswith(("text_model.", "text_projection")) else "text_model." + key
        out[CLIP_PREFIX + name] = tensor
    return out


def write_original_checkpoint(model_dir: Path, dest: Path) -> Path:
    """Write ``model_dir`` (an SD 1.x diffusers folder) as one original-layout ``.safetensors``."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in to_original_state_dict(model_dir).items()}
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dest), metadata={"format": "pt"})
    return dest
