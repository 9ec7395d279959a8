"""Which requests may share one pipeline call: the batch key, read from a validated request
alone (no model, no torch), so the worker can group queued jobs before the GPU side starts."""

from __future__ import annotations

from collections.abc import Hashable

from sdworker.core.schedulers import SchedulerSpec
from sdworker.core.schema import Request


def batch_key(request: Request) -> Hashable | None:
    """What must be equal for two requests to share a pipeline call; None: never batched.

    Prompts, negative prompts, seeds and output options may differ. Whether a negative prompt
    is given may not (SDXL zeroes the unconditional embedding only when none is), nor the
    fields the model's family adds to the call (FLUX.1's true CFG scale). Images, LoRAs,
    compel, skipped CLIP layers (encoded per request), the refiner (two stages per image) and
    seeded-noise-sampler schedulers (one seed per scheduler) run alone.
    """
    req = request.input
    spec = request.scheduler
    if request.mode != "txt2img" or req.lora or req.use_compel or req.refined:
        return None
    if req.clip_skip is not None and req.clip_skip > 1:
        return None
    if spec is not None and spec.uses_seeded_noise_sampler:
        return None
    hires = _hires_key(request)
    if hires is False:
        return None
    scheduler = _scheduler_key(spec)
    return (
        request.model,
        request.width,
        request.height,
        req.num_inference_steps,
        req.guidance_scale,
        scheduler,
        bool(req.negative_prompt),
        hires,
        tuple(getattr(req, name) for name in request.family.batch_fields),
    )


def _scheduler_key(spec: SchedulerSpec | None) -> Hashable:
    return None if spec is None else (spec.class_name, repr(sorted(spec.overrides.items())))


def _hires_key(request: Request) -> Hashable:
    """What a hires pass adds to the batch key; False: the request runs alone (prompts of
    its own are encoded per request, a seeded noise sampler takes one seed)."""
    hires = request.input.hires
    if hires is None:
        return None
    spec = request.hires_scheduler
    if hires.prompt is not None or hires.negative_prompt is not None:
        return False
    if spec is not None and spec.uses_seeded_noise_sampler:
        return False
    steps = hires.steps or request.input.num_inference_steps
    return (request.hires_size, hires.upscaler, steps, hires.strength, _scheduler_key(spec))
