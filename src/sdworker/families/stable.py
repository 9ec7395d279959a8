"""What the Stable Diffusion UNet families (1.x, 2.x, XL) share: their defaults, the fields they
take, and the rule that a UNet must be a standard 4-channel one."""

from __future__ import annotations

from sdworker.families.base import Defaults, ModelConfigs

#: Stable Diffusion's defaults (diffusers' own are 50 steps; 25 with a modern sampler is as good)
STANDARD = Defaults(num_inference_steps=25, guidance_scale=7.5, strength=0.8)

#: the optional fields every SD UNet family takes (SDXL adds its refiner's)
SD_FIELDS = frozenset({"use_compel", "clip_skip", "hires"})


def unet_problem(configs: ModelConfigs) -> str | None:
    """An inpainting-only UNet (9 input channels) cannot serve txt2img or img2img, and one set
    of weights serving all three modes is how the worker is built."""
    channels = int(configs.config("unet").get("in_channels", 4))
    if channels == 4:
        return None
    return (
        f"the UNet takes {channels} input channels (an inpainting-only model); sdworker serves "
        "txt2img, img2img and inpaint from one standard (4-channel) model"
    )


def cross_attention_width(configs: ModelConfigs) -> int | None:
    """The text width the UNet reads (its config's, else the text encoder's)."""
    width = configs.config("unet").get("cross_attention_dim")
    if isinstance(width, int):
        return width
    hidden = configs.config("text_encoder").get("hidden_size")
    return hidden if isinstance(hidden, int) else None
