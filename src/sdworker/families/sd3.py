"""Stable Diffusion 3 and 3.5 (Medium, Large, Large Turbo): an MMDiT transformer over three
text encoders, two CLIPs and a T5; flow matching.

The T5 encoder is most of the text side's memory (4.7 B parameters of the model's 8 B for
Large); ``SDWORKER_DROP_T5`` loads without it, at a cost in prompt adherence (most visible
with long or detailed prompts and text in the image). Turbo models' defaults (4 steps, no
guidance) are recorded when they are baked, from the model's name.
"""

from __future__ import annotations

import re
from typing import Any

from sdworker.families.base import (
    Defaults,
    Family,
    LoraSignature,
    ModelConfigs,
    Pipelines,
    PromptEncoding,
    SizeRule,
)

FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")

#: each release's recommended settings, by what its hub id or folder name says
_RELEASE_DEFAULTS: tuple[tuple[str, dict[str, Any]], ...] = (
    (r"turbo", {"num_inference_steps": 4, "guidance_scale": 0.0}),
    (r"3\.?5.*medium|medium.*3\.?5", {"num_inference_steps": 40, "guidance_scale": 4.5}),
    (r"3\.?5.*large|large.*3\.?5", {"num_inference_steps": 28, "guidance_scale": 3.5}),
)


def _recognises(configs: ModelConfigs) -> bool:
    transformer = configs.index.get("transformer")
    named = isinstance(transformer, list) and transformer[-1] == "SD3Transformer2DModel"
    return configs.pipeline_class.startswith("StableDiffusion3") or named


def release_defaults(configs: ModelConfigs) -> dict[str, Any]:
    """The defaults of the release the model's name names (none for an unnamed one)."""
    name = configs.source.casefold()
    return next((dict(d) for pattern, d in _RELEASE_DEFAULTS if re.search(pattern, name)), {})


FAMILY = Family(
    name="sd3",
    label="SD 3.x",
    pipelines=Pipelines(
        txt2img="StableDiffusion3Pipeline",
        img2img="StableDiffusion3Img2ImgPipeline",
        inpaint="StableDiffusion3InpaintPipeline",
    ),
    # the pipeline's own: SD 3 Medium's recommended settings
    defaults=Defaults(num_inference_steps=28, guidance_scale=7.0, max_sequence_length=256),
    # 8x the VAE's scale, 2x the transformer's patches
    size=SizeRule(multiple=16, native=1024),
    prompts=PromptEncoding(
        encoders=("clip-l", "openclip-g", "t5"),
        clip_skip="pipeline",
        max_sequence_length=512,
        tokenizer="tokenizer_3",
    ),
    lora=LoraSignature(
        markers=(r"joint_blocks", r"^transformer\.transformer_blocks\.", r"^lora_transformer_"),
        components=("transformer", "text_encoder", "text_encoder_2"),
    ),
    recognises=_recognises,
    fields=frozenset({"clip_skip", "max_sequence_length"}),
    schedulers=FLOW_SCHEDULERS,
    denoiser="transformer",
    gpu_dtype="bf16",
    batch_fields=("max_sequence_length",),
    call_fields=("max_sequence_length",),
    droppable=("text_encoder_3", "tokenizer_3"),
    model_defaults=release_defaults,
)
