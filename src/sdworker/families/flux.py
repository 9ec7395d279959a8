"""FLUX.1 (schnell, dev), FLUX.1 Fill and FLUX.1 Kontext: a rectified-flow transformer over a
CLIP text encoder (its pooled embedding) and a T5 (the sequence the transformer reads).

``guidance_scale`` is FLUX.1's distilled guidance, an input of the transformer: one pass per
step. A negative prompt works through true classifier-free guidance (``true_cfg_scale`` above
1: a second pass per step). schnell (no guidance embedding) takes 4 steps and no guidance, dev
28 steps at 3.5: which one a model is comes from its transformer's config when it is baked.
Fill repaints the masked part of an image; Kontext edits an image by instruction (an
``image`` and a prompt), and makes images from a prompt alone as well.
"""

from __future__ import annotations

from dataclasses import replace
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

#: schnell's recommended settings: a timestep-distilled model without a guidance embedding
SCHNELL = {"num_inference_steps": 4, "guidance_scale": 0.0, "max_sequence_length": 256}
#: dev's: guidance-distilled
DEV = Defaults(
    num_inference_steps=28, guidance_scale=3.5, max_sequence_length=512, true_cfg_scale=1.0
)
#: FLUX.1's transformer width: a LoRA of diffusers' layout on its double blocks alone is told
#: from an SD 3.x one by it
_WIDTH = 3072
#: the transformer's input channels of a Fill model: latents, masked-image latents, the mask
FILL_CHANNELS = 384


def _transformer(configs: ModelConfigs) -> bool:
    transformer = configs.index.get("transformer")
    return isinstance(transformer, list) and transformer[-1] == "FluxTransformer2DModel"


def _recognises(configs: ModelConfigs) -> bool:
    return configs.pipeline_class.startswith("Flux") or _transformer(configs)


def _fill(configs: ModelConfigs) -> bool:
    channels = configs.config("transformer").get("in_channels")
    return configs.pipeline_class == "FluxFillPipeline" or (
        _transformer(configs) and channels == FILL_CHANNELS
    )


def _kontext(configs: ModelConfigs) -> bool:
    return configs.pipeline_class.startswith("FluxKontext")


def distilled_defaults(configs: ModelConfigs) -> dict[str, Any]:
    """schnell's defaults for a transformer without a guidance embedding; dev's otherwise."""
    if configs.config("transformer").get("guidance_embeds") is False:
        return dict(SCHNELL)
    return {}


FAMILY = Family(
    name="flux",
    label="FLUX.1",
    pipelines=Pipelines(
        txt2img="FluxPipeline", img2img="FluxImg2ImgPipeline", inpaint="FluxInpaintPipeline"
    ),
    defaults=DEV,
    # 8x the VAE's scale, 2x the 2x2 latent patches the transformer reads
    size=SizeRule(multiple=16, native=1024),
    prompts=PromptEncoding(
        encoders=("clip-l", "t5"), max_sequence_length=512, tokenizer="tokenizer_2"
    ),
    lora=LoraSignature(
        markers=(
            r"single_transformer_blocks",  # diffusers
            r"(^|[._])(double|single)_blocks[._]\d",  # kohya, BFL and ComfyUI names
            r"processor\.(qkv|proj)_lora",  # XLabs
        ),
        transformer_width=_WIDTH,
        components=("transformer", "text_encoder"),
    ),
    recognises=_recognises,
    fields=frozenset({"max_sequence_length", "true_cfg_scale"}),
    schedulers=("FlowMatchEulerDiscreteScheduler",),
    denoiser="transformer",
    gpu_dtype="bf16",
    guidance="distilled",
    batch_fields=("max_sequence_length", "true_cfg_scale"),
    call_fields=("max_sequence_length", "true_cfg_scale"),
    model_defaults=distilled_defaults,
)

#: FLUX.1 Fill: inpainting and outpainting only, guided hard (its own recommended 30)
FILL = replace(
    FAMILY,
    name="flux-fill",
    label="FLUX.1 Fill",
    pipelines=Pipelines(inpaint="FluxFillPipeline"),
    defaults=Defaults(
        num_inference_steps=50, guidance_scale=30.0, strength=1.0, max_sequence_length=512
    ),
    recognises=_fill,
    # FluxFillPipeline reads no negative prompt, so there is no true CFG
    fields=frozenset({"max_sequence_length"}),
    batch_fields=("max_sequence_length",),
    call_fields=("max_sequence_length",),
    lora_family="flux",
)

#: FLUX.1 Kontext: an image with a prompt is an edit; a prompt alone makes an image
KONTEXT = replace(
    FAMILY,
    name="flux-kontext",
    label="FLUX.1 Kontext",
    pipelines=Pipelines(
        txt2img="FluxKontextPipeline",
        edit="FluxKontextPipeline",
        inpaint="FluxKontextInpaintPipeline",
    ),
    defaults=replace(DEV, guidance_scale=2.5),
    recognises=_kontext,
    lora_family="flux",
)
