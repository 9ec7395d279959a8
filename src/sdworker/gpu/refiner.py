"""The SDXL refiner: loaded beside its base on first use, and the second stage of a call.

A model baked with ``--refiner`` keeps the refiner's UNet, scheduler and index in its
``refiner/`` folder. The refiner pipeline is built from that UNet and the base's own VAE,
second text encoder and tokenizer (the same objects, not copies: SDXL's refiner was trained
with the base's), so it weighs only its UNet, which the pipeline cache counts in the model's
bytes (:meth:`~sdworker.gpu.pipelines.PipelineCache.attach`).

A refined call runs as diffusers' ensemble of experts: with ``high_noise_frac`` the base stops
at that fraction of the schedule (``denoising_end``) and hands its latents to the refiner,
which starts there (``denoising_start``); without it the base finishes and the refiner
refines its latents with ``strength`` (0.3, worker-sdxl's default, unless the input gives
one), as worker-sdxl does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch

# imported with the module, not looked up on first use: diffusers' lazy attribute lookup is
# not safe while another thread (the preload) imports through it
from diffusers import StableDiffusionXLImg2ImgPipeline, UNet2DConditionModel

from sdworker.core.errors import ModelDamaged
from sdworker.core.schema import Request
from sdworker.gpu.derive import build_scheduler, derive
from sdworker.gpu.weights import parameter_count, tensor_bytes

#: the folder of a baked model that holds its refiner
REFINER_DIR = "refiner"


@dataclass
class Refiner:
    """A loaded refiner: its pipeline (sharing the base's modules) and the config every
    per-request scheduler starts from."""

    pipe: Any
    scheduler_config: dict[str, Any]
    #: bytes of what the refiner adds to the device: its UNet (the rest is the base's)
    nbytes: int


def refiner_parameters(model_dir: Path) -> int:
    """Parameters of the refiner's UNet, from its safetensors headers (0 if unreadable)."""
    paths = sorted((model_dir / REFINER_DIR / "unet").glob("*.safetensors"))
    return sum(parameter_count(path) or 0 for path in paths)


def load_refiner(base: Any, model_dir: Path, device: torch.device) -> Refiner:
    """The refiner of the model at ``model_dir``, its UNet on ``device`` in the base's dtype,
    built around the base pipeline's own VAE and second text encoder."""
    folder = model_dir / REFINER_DIR
    try:
        index = json.loads((folder / "model_index.json").read_text())
        config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        unet: Any = UNet2DConditionModel.from_pretrained(
            str(folder / "unet"), torch_dtype=base.dtype, local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise ModelDamaged(f"the refiner at {folder} cannot be loaded: {exc}") from exc
    unet.to(device)
    name = str(config["_class_name"])
    cls = (
        type(base.scheduler) if type(base.scheduler).__name__ == name else getattr(diffusers, name)
    )
    scheduler = cls.from_config(config)
    pipe: Any = StableDiffusionXLImg2ImgPipeline(
        vae=base.vae,
        text_encoder=None,
        text_encoder_2=base.text_encoder_2,
        tokenizer=None,
        tokenizer_2=base.tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        requires_aesthetics_score=bool(index.get("requires_aesthetics_score", True)),
        force_zeros_for_empty_prompt=bool(index.get("force_zeros_for_empty_prompt", False)),
    )
    pipe.set_progress_bar_config(disable=True)
    return Refiner(pipe, dict(scheduler.config), tensor_bytes(unet))


def base_kwargs(request: Request, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The base's call of a refined request: latents out, stopping at ``high_noise_frac``."""
    out = {**kwargs, "output_type": "latent"}
    if request.input.high_noise_frac is not None:
        out["denoising_end"] = request.input.high_noise_frac
    return out


def refine(
    refiner: Refiner,
    request: Request,
    latents: Any,
    *,
    generator: Any,
    seed: int,
    callback: Callable[..., dict[str, Any]],
) -> list[Any]:
    """The refiner's images from the base's ``latents`` (one call, per-request scheduler);
    ``callback`` runs between its steps (it stops a cancelled or interrupted job).

    ``generator`` is the base call's own, so the refiner's noise follows from the image's
    seed and the seed promise holds for refined images too."""
    req = request.input
    if request.scheduler is not None:
        scheduler = build_scheduler(request.scheduler, refiner.scheduler_config, noise_seed=seed)
    else:
        scheduler = type(refiner.pipe.scheduler).from_config(refiner.scheduler_config)
    pipe = derive(type(refiner.pipe), refiner.pipe, scheduler=scheduler)
    kwargs: dict[str, Any] = {
        "prompt": req.prompt,
        "negative_prompt": req.negative_prompt or None,
        "image": latents,
        "num_inference_steps": req.refiner_inference_steps or req.num_inference_steps,
        "guidance_scale": req.guidance_scale,
        "generator": generator,
        "output_type": "pil",
    }
    if req.high_noise_frac is not None:
        kwargs["denoising_start"] = req.high_noise_frac
    else:
        kwargs["strength"] = req.refiner_strength
    images: list[Any] = pipe(**kwargs, callback_on_step_end=callback).images
    return images
