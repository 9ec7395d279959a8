"""Stable Diffusion 1.x: one CLIP ViT-L text encoder (768 wide), a 512-pixel UNet."""

from __future__ import annotations

from sdworker.families.base import (
    Family,
    LoraSignature,
    ModelConfigs,
    Pipelines,
    PromptEncoding,
    SizeRule,
)
from sdworker.families.stable import SD_FIELDS, STANDARD, unet_problem

PIPELINES = Pipelines(
    txt2img="StableDiffusionPipeline",
    img2img="StableDiffusionImg2ImgPipeline",
    inpaint="StableDiffusionInpaintPipeline",
)


def _recognises(configs: ModelConfigs) -> bool:
    # the family of every plain SD UNet folder that is neither XL nor 2.x (asked after them)
    return "unet" in configs.components


FAMILY = Family(
    name="sd1",
    label="SD 1.x",
    pipelines=PIPELINES,
    defaults=STANDARD,
    size=SizeRule(multiple=8, native=512),
    prompts=PromptEncoding(encoders=("clip-l",), compel="single", clip_skip="embeddings"),
    lora=LoraSignature(context_width=768),
    recognises=_recognises,
    fields=SD_FIELDS,
    safety_checker=True,
    problem=unet_problem,
)
