"""Generation: one validated request through a cached pipeline, image by image.

Each image runs as its own pipeline call with its own generator seeded ``seed + i``. Batched
matrix kernels are not batch-invariant (a 4-image batch differs from 1-image runs in the last
bits), so this is what keeps API.md's promise that image *i* of ``seed: s`` is bit-identical to
image 0 of ``seed: s + i``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdworker import prompts, schedulers
from sdworker.errors import Cancelled, DeviceError, InvalidInput, OutOfMemory
from sdworker.lora import LoraLibrary, lora_set
from sdworker.pipelines import LoadedModel, PipelineCache, derive
from sdworker.schema import Request

log = logging.getLogger(__name__)

#: called with (steps done, total steps) after every denoising step
StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Generated:
    image: Image.Image
    seed: int
    nsfw: bool | None


@dataclass(frozen=True)
class Inputs:
    """The request's decoded images (already resized to the request's size)."""

    image: Image.Image | None = None
    mask: Image.Image | None = None


def effective_steps(request: Request) -> int:
    """Denoising steps one image really takes (img2img skips the first ``1 - strength``)."""
    steps = request.input.num_inference_steps
    if request.mode == "txt2img":
        return steps
    return max(1, min(steps, int(steps * request.input.strength)))


def run_safety(request_wants: bool | None, loaded: LoadedModel, default: bool | None) -> bool:
    """Whether the checker runs: the input decides, else the setting, else "if the model has one"."""
    if loaded.safety is None:
        return False
    for choice in (request_wants, default):
        if choice is not None:
            return choice
    return True


def check_clip_skip(request: Request, pipe: Any) -> None:
    """``clip_skip`` may not skip more layers than the model's text encoder has."""
    layers = prompts.text_layers(pipe)
    skip = request.input.clip_skip
    if skip is not None and layers is not None and skip > layers:
        raise InvalidInput.one(
            "clip_skip",
            f"must be at most {layers} for model {request.model!r} "
            f"(its text encoder has {layers} layers)",
            skip,
        )


class Generator:
    """Runs requests on the models of a :class:`PipelineCache`."""

    def __init__(self, cache: PipelineCache, loras: LoraLibrary | None = None) -> None:
        self.cache = cache
        self.loras = loras or LoraLibrary.from_settings(cache.settings)

    def __call__(
        self,
        request: Request,
        inputs: Inputs,
        *,
        on_step: StepCallback | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        safety_default: bool | None = None,
    ) -> list[Generated]:
        attempt = 0
        while True:
            with self.cache.using(request.model) as loaded:
                try:
                    return self._run(loaded, request, inputs, on_step, cancelled, safety_default)
                except torch.cuda.OutOfMemoryError as exc:
                    if attempt > 0:
                        raise OutOfMemory(
                            f"{request.width}x{request.height} with {request.input.num_images} "
                            "image(s) does not fit the device's memory"
                        ) from exc
                    log.warning("out of memory; evicting other models and retrying once")
                except RuntimeError as exc:
                    if "CUDA" in str(exc) or "cuDNN" in str(exc):
                        raise DeviceError(f"device fault during generation: {exc}") from exc
                    raise
            # outside the except block, so the failed call's frames (and its activations)
            # are no longer pinned by the traceback when the retry runs
            attempt += 1
            del loaded
            self.cache.evict_others(request.model)

    def _run(
        self,
        loaded: LoadedModel,
        request: Request,
        inputs: Inputs,
        on_step: StepCallback | None,
        cancelled: Callable[[], bool],
        safety_default: bool | None,
    ) -> list[Generated]:
        base = loaded.pipeline(request.mode)
        images = request.input.num_images
        total = effective_steps(request) * images
        done = 0

        def step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            nonlocal done, total
            if done == 0:
                # some schedulers take an extra warm-up step (PNDM): trust the pipeline's count
                total = int(getattr(pipe, "num_timesteps", 0) or total // images) * images
            done += 1
            if on_step is not None:
                on_step(min(done, total), total)
            if cancelled():
                raise Cancelled("cancelled between denoising steps")
            return kwargs

        check_clip_skip(request, base)
        results: list[Generated] = []
        # LoRA adapters live on the shared modules: the gate keeps requests wanting another
        # LoRA set (a plain request wants none) out until this one is done
        with loaded.adapters.applied(
            base,
            lora_set(request.input.lora),
            model=request.model,
            family=loaded.info.manifest.family,
            library=self.loras,
        ):
            text = self._text_kwargs(base, request)
            for seed in request.seeds:
                if cancelled():
                    raise Cancelled("cancelled before the next image")
                pipe = self._pipeline_for(base, loaded, request, seed)
                kwargs = {**self._call_kwargs(request, inputs, seed), **text}
                with torch.inference_mode():
                    image = pipe(**kwargs, callback_on_step_end=step_end).images[0]
                results.append(Generated(image, seed, None))

        if cancelled():
            raise Cancelled("cancelled after the last denoising step")
        if run_safety(request.input.safety_checker, loaded, safety_default):
            results = self._check(loaded, results)
        return results

    def _pipeline_for(self, base: Any, loaded: LoadedModel, request: Request, seed: int) -> Any:
        """A per-request pipeline sharing ``base``'s modules, with a fresh scheduler."""
        if request.scheduler is not None:
            scheduler = schedulers.build(
                request.scheduler, loaded.scheduler_config, noise_seed=seed
            )
        else:
            scheduler = type(base.scheduler).from_config(loaded.scheduler_config)
        return derive(type(base), base, scheduler=scheduler)

    def _text_kwargs(self, base: Any, request: Request) -> dict[str, Any]:
        """The prompt as the pipeline takes it: text, or compel's embeddings (computed once,
        with this request's LoRAs on the text encoders, and shared by its images)."""
        req = request.input
        skip = req.clip_skip or 1
        if req.use_compel:
            with torch.inference_mode():
                return prompts.weighted_embeddings(base, req.prompt, req.negative_prompt, skip)
        prompts.warn_if_truncated(base, req.prompt, req.negative_prompt)
        if skip > 1 and getattr(base, "text_encoder_2", None) is None:
            with torch.inference_mode():
                return prompts.plain_embeddings(base, req.prompt, req.negative_prompt, skip)
        kwargs: dict[str, Any] = {
            "prompt": req.prompt,
            "negative_prompt": req.negative_prompt or None,
        }
        if skip > 1:
            kwargs["clip_skip"] = skip - 1  # A1111 counts the last layer as 1
        return kwargs

    def _call_kwargs(self, request: Request, inputs: Inputs, seed: int) -> dict[str, Any]:
        req = request.input
        kwargs: dict[str, Any] = {
            "num_inference_steps": req.num_inference_steps,
            "guidance_scale": req.guidance_scale,
            "num_images_per_prompt": 1,
            # a CPU generator draws the same starting noise on every device (the SDE samplers'
            # Brownian noise is drawn on the latents' device, so theirs is per device kind)
            "generator": torch.Generator("cpu").manual_seed(seed),
            "output_type": "pil",
        }
        if request.mode != "txt2img":
            kwargs["image"] = inputs.image
            kwargs["strength"] = req.strength
        if request.mode == "inpaint":
            kwargs["mask_image"] = inputs.mask
        if request.mode != "img2img":
            kwargs["width"] = request.width
            kwargs["height"] = request.height
        return kwargs

    def _check(self, loaded: LoadedModel, results: list[Generated]) -> list[Generated]:
        assert loaded.safety is not None
        images = [r.image.convert("RGB") for r in results]
        device, dtype = self.cache.device, self.cache.dtype
        clip_input = loaded.safety.processor(images, return_tensors="pt").pixel_values
        arrays = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in images])
        with torch.inference_mode():
            _, flags = loaded.safety.checker(
                images=arrays, clip_input=clip_input.to(device=device, dtype=dtype)
            )
        checked = []
        for result, flagged in zip(results, flags, strict=True):
            image = Image.new("RGB", result.image.size) if flagged else result.image
            checked.append(Generated(image, result.seed, bool(flagged)))
        return checked
