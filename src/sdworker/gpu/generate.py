"""Generation: one path for every request, alone or batched with compatible others.

:meth:`Generator.run` takes a group of requests that share a :func:`~sdworker.core.batching.batch_key` (a request alone
is a group of one) and makes its pipeline calls:

* a request alone runs each image as its own call with its own generator seeded ``seed + i``.
  Batched matrix kernels are not batch-invariant (a 4-image batch differs from 1-image runs in
  the last bits), so this is what keeps the promise (docs/api.md) that image *i* of ``seed: s`` is
  bit-identical to image 0 of ``seed: s + i``;
* a group of several runs as one call: every image of every request, each with its own CPU
  generator (the same starting noise as a single run; the pixels may differ in the last bits,
  which is why batching is the operator's opt-in).

Either way the same step callback (:mod:`.steps`) reports each request's progress and stops
the call between denoising steps once every request in it is cancelled, or ends it early once
every request in it is interrupted (its images so far kept, the one being made decoded as it
stood); the same LoRA gate guards the shared modules, and the same safety check runs per
request. A call may have a second stage: the SDXL refiner, or a hires pass (:mod:`.hires`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdworker.core.assets import AssetRegistry
from sdworker.core.errors import Cancelled, DeviceError, InvalidInput, OutOfMemory
from sdworker.core.schema import STRENGTH_MODES, Request
from sdworker.gpu import embeddings, prompts
from sdworker.gpu import hires as hi
from sdworker.gpu import refiner as refiners
from sdworker.gpu.callargs import fitted, image_kwargs
from sdworker.gpu.derive import build_scheduler, derive
from sdworker.gpu.pipelines import LoadedModel, PipelineCache
from sdworker.gpu.results import Generated
from sdworker.gpu.steps import Job, Progress, plan

log = logging.getLogger(__name__)

#: a good batch size on a data-centre GPU, for operators who turn batching on
GPU_BATCH_MAX = 8
#: the log line after each batched pipeline call (jobs, images); bench/gpu.py counts them
BATCHED_CALL = "ran %d jobs (%d images) in one call"


def effective_steps(request: Request) -> int:
    """Denoising steps one image really takes (img2img skips the first ``1 - strength``)."""
    steps = request.input.num_inference_steps
    if request.mode not in STRENGTH_MODES:
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
    """Runs groups of requests on the models of a :class:`PipelineCache`."""

    def __init__(
        self,
        cache: PipelineCache,
        assets: AssetRegistry | None = None,
        *,
        safety_default: bool | None = None,
    ) -> None:
        self.cache = cache
        #: LoRA and embedding files (the service's registry: one scan, one tensor cache)
        self.assets = assets or AssetRegistry(cache.settings)
        self.safety_default = safety_default

    def run(self, jobs: list[Job]) -> list[list[Generated]]:
        """The images of each job, in order. Jobs of a group share :func:`~sdworker.core.batching.batch_key` (a job
        alone need not); a job cancelled while others ran on gets an empty list, and the
        group stops with :class:`Cancelled` once all of them are."""
        first = jobs[0].request
        attempt = 0
        while True:
            with self.cache.using(first.model) as loaded:
                try:
                    return self._run(loaded, jobs)
                except torch.cuda.OutOfMemoryError as exc:
                    if attempt > 0:
                        images = sum(j.request.input.num_images for j in jobs)
                        raise OutOfMemory(
                            f"{first.width}x{first.height} with {images} image(s) does not "
                            "fit the device's memory"
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
            self.cache.evict_others(first.model)

    def _run(self, loaded: LoadedModel, jobs: list[Job]) -> list[list[Generated]]:
        first = jobs[0].request
        base = loaded.pipeline(first.mode)
        check_clip_skip(first, base)
        calls = plan(jobs)
        passes = {"base": effective_steps(first)}
        if first.input.hires is not None:
            passes["hires"] = hi.hires_steps(first)
        progress = Progress(jobs, calls, passes)
        images: list[list[Generated]] = [[] for _ in jobs]
        refiner = self._refiner(loaded) if first.input.refined else None
        found, wanted = self._embeddings(base, loaded, jobs)
        # LoRA adapters and embeddings live on the shared modules: the gate keeps requests
        # wanting another set (a plain request wants none) out until this one is done
        with loaded.adapters.applied(
            base,
            first.loras,
            model=first.model,
            family=loaded.family,
            assets=self.assets,
            resident=self.cache.settings.lora_resident,
            embeddings=wanted,
            triggers=found,
        ):
            if found is not None and wanted:  # triggers become the embeddings' words
                jobs = [
                    replace(j, request=embeddings.rewrite(j.request, base.tokenizer, found, wanted))
                    for j in jobs
                ]
                first = jobs[0].request
            text = self._text_kwargs(base, first) if len(jobs) == 1 else None
            for call in calls:
                live = [(j, seed) for j, seed in call.items if jobs[j].wants(images[j])]
                if not live:
                    continue
                out, stopped = self._call(loaded, base, refiner, jobs, live, text, progress)
                for (j, seed), image in zip(live, out, strict=True):
                    images[j].append(Generated(image, seed, None, stopped))
                if len(jobs) > 1:
                    log.info(BATCHED_CALL, len({j for j, _ in live}), len(live))
        if all(job.cancelled() for job in jobs):
            raise Cancelled("cancelled after the last denoising step")
        return [
            [] if job.cancelled() else self._safe(loaded, job.request, mine)
            for job, mine in zip(jobs, images, strict=True)
        ]

    def _call(
        self,
        loaded: LoadedModel,
        base: Any,
        refiner: refiners.Refiner | None,
        jobs: list[Job],
        live: list[tuple[int, int]],
        text: dict[str, Any] | None,
        progress: Progress,
    ) -> tuple[list[Image.Image], bool]:
        """One pipeline call (and its refiner or hires pass): its images, and whether it was
        interrupted (its images then decoded from the latents as they stood)."""
        first = jobs[0].request
        pipe = self._pipeline_for(base, loaded, first, live[0][1])
        kwargs = fitted(pipe, self._call_kwargs(jobs, live, text))
        refined, hires = refiner is not None, first.input.hires is not None
        if refined:  # a refined job runs alone, an image per call
            kwargs = refiners.base_kwargs(first, kwargs)
        elif hires:
            kwargs = hi.first_pass_kwargs(first, kwargs)
        # made outside inference mode, as every pipeline object is (it shares the modules)
        img2img = type(loaded.pipeline("img2img")) if hires else None
        step_end = progress.step_end(live)
        with torch.inference_mode():
            out = pipe(**kwargs, callback_on_step_end=step_end).images
            if step_end.interrupted:
                return hi.as_images(pipe, out), True
            if not (refined or hires):
                return list(out), False
            again = progress.step_end(live, "hires" if hires else None)
            if refiner is not None:
                out = refiners.refine(
                    refiner,
                    first,
                    out,
                    generator=kwargs["generator"],
                    seed=live[0][1],
                    callback=again,
                )
            else:
                assert img2img is not None
                out = hi.second_pass(
                    base,
                    img2img,
                    loaded.scheduler_config,
                    first,
                    out,
                    kwargs,
                    [seed for _, seed in live],
                    again,
                    text=(lambda r: self._text_kwargs(base, r)) if text is not None else None,
                )
        return list(out), again.interrupted

    def _embeddings(
        self, base: Any, loaded: LoadedModel, jobs: list[Job]
    ) -> tuple[embeddings.Triggers | None, embeddings.EmbeddingSet]:
        """The embeddings that fit the model, and those the jobs' prompts use."""
        encoding = loaded.family.prompts
        if not encoding.textual_inversion or not self.assets.names(embeddings.EMBEDDING):
            return None, ()
        parts = embeddings.components_of(base, len(encoding.encoders))
        found = loaded.adapters.embeddings.triggers(base, self.assets, parts)
        return found, embeddings.used([j.request for j in jobs], base.tokenizer, found)

    def _safe(
        self, loaded: LoadedModel, request: Request, images: list[Generated]
    ) -> list[Generated]:
        if run_safety(request.input.safety_checker, loaded, self.safety_default):
            return self._check(loaded, images)
        return images

    def _refiner(self, loaded: LoadedModel) -> refiners.Refiner:
        """The model's refiner, loaded on first use and counted in the model's memory."""
        path = loaded.info.path
        itemsize = torch.empty((), dtype=loaded.dtype).element_size()
        refiner: refiners.Refiner = self.cache.attach(
            loaded,
            "refiner",
            refiners.refiner_parameters(path) * itemsize,
            lambda: refiners.load_refiner(loaded.base, path, self.cache.device),
        )
        return refiner

    def _pipeline_for(self, base: Any, loaded: LoadedModel, request: Request, seed: int) -> Any:
        """A per-call pipeline sharing ``base``'s modules, with a fresh scheduler."""
        if request.scheduler is not None:
            scheduler = build_scheduler(request.scheduler, loaded.scheduler_config, noise_seed=seed)
        else:
            scheduler = type(base.scheduler).from_config(loaded.scheduler_config)
        return derive(type(base), base, scheduler=scheduler)

    def _text_kwargs(self, base: Any, request: Request) -> dict[str, Any]:
        """A lone request's prompt as the pipeline takes it: text, or compel's embeddings
        (computed once, with this request's LoRAs on the text encoders, for all its images)."""
        req = request.input
        encoding = request.family.prompts
        skip = req.clip_skip or 1
        if req.use_compel:
            with torch.inference_mode():
                return prompts.weighted_embeddings(
                    base, req.prompt, req.negative_prompt, skip, encoding
                )
        window = req.max_sequence_length if encoding.max_sequence_length else None
        prompts.warn_if_truncated(base, req.prompt, req.negative_prompt, encoding, window)
        if skip > 1 and encoding.clip_skip == "embeddings":
            with torch.inference_mode():
                return prompts.plain_embeddings(base, req.prompt, req.negative_prompt, skip)
        kwargs: dict[str, Any] = {
            "prompt": req.prompt,
            "negative_prompt": req.negative_prompt or None,
        }
        if skip > 1:
            kwargs["clip_skip"] = skip - 1  # A1111 counts the last layer as 1
        return kwargs

    def _call_kwargs(
        self, jobs: list[Job], live: list[tuple[int, int]], text: dict[str, Any] | None
    ) -> dict[str, Any]:
        first = jobs[0]
        request, req = first.request, first.request.input
        kwargs: dict[str, Any] = {
            "num_inference_steps": req.num_inference_steps,
            "guidance_scale": req.guidance_scale,
            "num_images_per_prompt": 1,
            # a CPU generator per image draws the same starting noise on every device (the
            # SDE samplers' Brownian noise is drawn on the latents' device, so theirs is per
            # device kind), and the same noise alone or in a group
            "generator": [torch.Generator("cpu").manual_seed(seed) for _, seed in live],
            "output_type": "pil",
        }
        if text is not None:
            kwargs.update(text)
        else:
            kwargs["prompt"] = [jobs[j].request.input.prompt for j, _ in live]
            if req.negative_prompt:
                kwargs["negative_prompt"] = [jobs[j].request.input.negative_prompt for j, _ in live]
        if len(live) == 1:
            kwargs["generator"] = kwargs["generator"][0]
        kwargs.update({name: getattr(req, name) for name in request.family.call_fields})
        return kwargs | image_kwargs(request, first.inputs)

    def _check(self, loaded: LoadedModel, results: list[Generated]) -> list[Generated]:
        assert loaded.safety is not None
        images = [r.image.convert("RGB") for r in results]
        device, dtype = self.cache.device, loaded.dtype
        clip_input = loaded.safety.processor(images, return_tensors="pt").pixel_values
        arrays = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in images])
        with torch.inference_mode():
            _, flags = loaded.safety.checker(
                images=arrays, clip_input=clip_input.to(device=device, dtype=dtype)
            )
        checked = []
        for result, flagged in zip(results, flags, strict=True):
            image = Image.new("RGB", result.image.size) if flagged else result.image
            checked.append(Generated(image, result.seed, bool(flagged), result.interrupted))
        return checked
