"""Stable Diffusion XL: two CLIP text encoders (ViT-L and OpenCLIP bigG), a 1024-pixel UNet
with size conditioning, and an optional refiner baked beside it."""

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
    txt2img="StableDiffusionXLPipeline",
    img2img="StableDiffusionXLImg2ImgPipeline",
    inpaint="StableDiffusionXLInpaintPipeline",
)


def _recognises(configs: ModelConfigs) -> bool:
    unet = configs.config("unet")
    return "XL" in configs.pipeline_class or unet.get("addition_embed_type") == "text_time"


FAMILY = Family(
    name="sdxl",
    label="SDXL",
    pipelines=PIPELINES,
    defaults=STANDARD,
    size=SizeRule(multiple=8, native=1024),
    # both encoders' penultimate layers, as diffusers and A1111 read them
    prompts=PromptEncoding(encoders=("clip-l", "openclip-g"), compel="pair", clip_skip="pipeline"),
    # only SDXL has a second text encoder; its UNet reads both, 2048 wide
    lora=LoraSignature(markers=(r"^(text_encoder_2\.|lora_te2_|te2\.)",), context_width=2048),
    recognises=_recognises,
    fields=SD_FIELDS | {"refiner_inference_steps", "high_noise_frac"},
    problem=unet_problem,
)
