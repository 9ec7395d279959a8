"""Stable Diffusion 2.x: one OpenCLIP ViT-H text encoder (1024 wide); 512 pixels, or 768 for
the v-prediction models (the UNet's ``sample_size`` says which)."""

from __future__ import annotations

from sdworker.families.base import Family, LoraSignature, ModelConfigs, PromptEncoding, SizeRule
from sdworker.families.sd1 import PIPELINES
from sdworker.families.stable import SD_FIELDS, STANDARD, cross_attention_width, unet_problem

#: the text width of SD 2.x's OpenCLIP encoder, which tells it from SD 1.x
CONTEXT_WIDTH = 1024


def _recognises(configs: ModelConfigs) -> bool:
    return "unet" in configs.components and cross_attention_width(configs) == CONTEXT_WIDTH


FAMILY = Family(
    name="sd2",
    label="SD 2.x",
    pipelines=PIPELINES,
    defaults=STANDARD,
    size=SizeRule(multiple=8, native=512),
    prompts=PromptEncoding(encoders=("openclip-h",), compel="single", clip_skip="embeddings"),
    lora=LoraSignature(context_width=CONTEXT_WIDTH),
    recognises=_recognises,
    fields=SD_FIELDS,
    safety_checker=True,
    problem=unet_problem,
)
