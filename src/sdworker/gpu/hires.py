"""A1111's hires fix: the txt2img first pass upscaled, then denoised again by an img2img pass
on the same modules, with the same seed, at the hires size.

Latent upscalers interpolate the first pass's latents (the first pass returns latents, not
pixels); ``lanczos`` and ``nearest`` resize its decoded image with PIL and the second pass
encodes it again. An interrupted first pass is decoded here, as the pipeline would have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from PIL import Image

from sdworker.core.resize import PIL_FILTERS
from sdworker.core.schema import Request
from sdworker.gpu.derive import build_scheduler, derive

#: each latent upscaler: torch's interpolation mode and whether it antialiases
LATENT_MODES: dict[str, tuple[str, bool]] = {
    "latent": ("bilinear", False),
    "latent-antialiased": ("bilinear", True),
    "latent-bicubic": ("bicubic", False),
    "latent-bicubic-antialiased": ("bicubic", True),
    "latent-nearest": ("nearest", False),
    "latent-nearest-exact": ("nearest-exact", False),
}
#: what the first pass's kwargs carry that an img2img call does not take
_FIRST_PASS_ONLY = ("width", "height", "num_inference_steps", "generator", "output_type")


def hires_steps(request: Request) -> int:
    """Denoising steps the second pass really takes (img2img skips ``1 - strength``)."""
    hires = request.input.hires
    if hires is None:
        return 0
    steps = hires.steps or request.input.num_inference_steps
    return max(1, min(steps, int(steps * hires.strength)))


def first_pass_kwargs(request: Request, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The first pass's call: latents out for a latent upscaler, pixels for a PIL one."""
    hires = request.input.hires
    assert hires is not None
    return {**kwargs, "output_type": "latent" if hires.latent else "pil"}


def upscale_latents(latents: torch.Tensor, size: tuple[int, int], upscaler: str) -> torch.Tensor:
    """``latents`` interpolated to the latents of a ``size`` (width, height) image."""
    mode, antialias = LATENT_MODES[upscaler]
    width, height = size
    target = (height // 8, width // 8)
    # interpolated in float32: half-precision antialiased and bicubic kernels are not everywhere
    grown = torch.nn.functional.interpolate(
        latents.float(),
        size=target,
        mode=mode,
        antialias=antialias,
        **({"align_corners": False} if mode in ("bilinear", "bicubic") else {}),
    )
    return grown.to(latents.dtype)


def decode_latents(pipe: Any, latents: torch.Tensor) -> list[Image.Image]:
    """Images of ``latents`` as a pipeline's ``output_type="latent"`` returned them: for an
    interrupted first pass, whose latents are all there is."""
    vae = pipe.vae
    config = vae.config
    mean = getattr(config, "latents_mean", None)
    std = getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        mean_t = torch.tensor(mean).view(shape).to(latents.device, latents.dtype)
        std_t = torch.tensor(std).view(shape).to(latents.device, latents.dtype)
        latents = latents * std_t / config.scaling_factor + mean_t
    else:
        latents = latents / config.scaling_factor
    # SDXL's VAE overflows in half precision: it decodes in float32, as the pipeline does
    upcast = vae.dtype == torch.float16 and bool(getattr(config, "force_upcast", False))
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        decoded = vae.decode(latents.to(vae.dtype), return_dict=False)[0]
    finally:
        if upcast:
            vae.to(dtype=torch.float16)
    images: list[Image.Image] = pipe.image_processor.postprocess(decoded, output_type="pil")
    return images


def as_images(pipe: Any, out: Any) -> list[Image.Image]:
    """A first pass's output as images (decoded when it is latents)."""
    if isinstance(out, torch.Tensor):
        return decode_latents(pipe, out)
    return list(out)


def second_pass(
    base: Any,
    img2img_class: type[Any],
    scheduler_config: dict[str, Any],
    request: Request,
    first: Any,
    call: dict[str, Any],
    seeds: list[int],
    callback: Callable[..., dict[str, Any]],
    text: Callable[[Request], dict[str, Any]] | None = None,
) -> list[Image.Image]:
    """The second pass over the first pass's output ``first`` (latents or images).

    ``call`` is the first pass's kwargs: its text (prompts, or embeddings) and guidance carry
    over, unless ``hires`` gives prompts of its own (encoded by ``text``); each image's noise
    comes from a fresh generator of its own seed, as the first pass's did."""
    hires = request.input.hires
    assert hires is not None and request.hires_size is not None
    if hires.latent:
        image: Any = upscale_latents(first, request.hires_size, hires.upscaler)
    else:
        resample = Image.Resampling[PIL_FILTERS[hires.upscaler]]
        image = [im.resize(request.hires_size, resample) for im in first]
    spec = request.hires_scheduler or request.scheduler
    if spec is not None:
        scheduler = build_scheduler(spec, scheduler_config, noise_seed=seeds[0])
    else:
        scheduler = type(base.scheduler).from_config(scheduler_config)
    pipe = derive(img2img_class, base, scheduler=scheduler)
    kwargs = {k: v for k, v in call.items() if k not in _FIRST_PASS_ONLY}
    if text is not None and (hires.prompt is not None or hires.negative_prompt is not None):
        kwargs = {k: v for k, v in kwargs.items() if "prompt" not in k and k != "clip_skip"}
        kwargs.update(text(hires_request(request)))
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    kwargs.update(
        image=image,
        strength=hires.strength,
        num_inference_steps=hires.steps or request.input.num_inference_steps,
        generator=generators[0] if len(generators) == 1 else generators,
        output_type="pil",
    )
    images: list[Image.Image] = pipe(**kwargs, callback_on_step_end=callback).images
    return images


def hires_request(request: Request) -> Request:
    """The request with the hires prompts in place of its own (for the second pass's text)."""
    hires = request.input.hires
    assert hires is not None
    prompt = hires.prompt if hires.prompt is not None else request.input.prompt
    negative = hires.negative_prompt
    if negative is None:
        negative = request.input.negative_prompt
    return replace(
        request,
        input=request.input.model_copy(update={"prompt": prompt, "negative_prompt": negative}),
    )
