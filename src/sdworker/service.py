"""The worker's service: a job's input in, its output (or a typed failure) out.

Two steps, and nothing here knows of RunPod or HTTP:

* :meth:`Service.prepare` validates an input, decodes its images and fetches the LoRAs it
  names by URL or hub id into the disk cache: a :class:`Prepared` request, or
  :class:`~sdworker.core.errors.InvalidInput` naming every bad field. Nothing touches a model
  here (and nothing here runs on the device's thread).
* :meth:`Service.execute` runs a group of prepared requests (a request alone is a group of
  one) and answers each with its output list or a :class:`~sdworker.core.jobs.Failure`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from PIL import Image

from sdworker.core import loras, schedulers
from sdworker.core.assetfetch import AssetFetcher
from sdworker.core.assets import LORA, AssetRegistry
from sdworker.core.batching import batch_key
from sdworker.core.errors import Cancelled, InvalidInput, SdworkerError
from sdworker.core.input import InputContext, Limits, ModelFacts, parse_input
from sdworker.core.input.resize import budget_problem
from sdworker.core.jobs import Failure
from sdworker.core.manifest import Manifest
from sdworker.core.media import infotext
from sdworker.core.models import ModelRegistry
from sdworker.core.resize import hires_infotext, upscale_size
from sdworker.core.schema import STRENGTH_MODES, Request
from sdworker.core.settings import MAX_SIDE, MIN_SIDE, Settings
from sdworker.gpu.results import Generated, Inputs
from sdworker.output.delivery import Uploaders, check_delivery, deliver
from sdworker.output.imageio import (
    EncodedImage,
    ImagePolicy,
    decode_image,
    encode_image,
    upscale,
)

if TYPE_CHECKING:
    from sdworker.gpu.generate import Generator

log = logging.getLogger(__name__)

#: receives ``{"step", "steps", "progress"}`` while a job runs
ProgressSink = Callable[[dict[str, Any]], None]


class Progress:
    """Throttles step updates: the first step, then at most one per ``interval_s``, and the last."""

    def __init__(
        self, sink: ProgressSink, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._sink = sink
        self._interval = interval_s
        self._clock = clock
        self._last: float | None = None

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if done < total and self._last is not None and now - self._last < self._interval:
            return
        self._last = now
        self._sink({"step": done, "steps": total, "progress": round(done / total, 4)})


@dataclass(frozen=True)
class Prepared:
    """A validated request with its images decoded, and where its result goes."""

    request: Request
    inputs: Inputs
    job_id: str = "local"
    s3_config: Any = None

    @property
    def batch_key(self) -> Hashable | None:
        return batch_key(self.request)

    @property
    def size(self) -> int:
        """Images this request makes (a batch holds at most the batch limit of them)."""
        return self.request.input.num_images


#: the answer to one prepared request: its output list, or why there is none
Outcome = list[dict[str, Any]] | Failure


class Service:
    """Settings, the model registry and (lazily) the GPU: everything one worker needs."""

    def __init__(self, settings: Settings, *, registry: ModelRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or ModelRegistry(settings)
        #: LoRAs and embeddings: baked, on the volume, fetched
        self.assets = AssetRegistry(settings)
        #: LoRAs by URL or hub id, into the disk cache
        self.fetcher = AssetFetcher(settings)
        self.images = ImagePolicy.from_settings(settings)
        self.uploaders = Uploaders(settings)
        self._generator: Generator | None = None
        self._generator_lock = threading.Lock()

    # -- prepare ----------------------------------------------------------------------------

    def input_context(self) -> InputContext:
        """What validation knows of this deployment: its models, LoRAs and limits."""
        return InputContext(
            models={m.name: ModelFacts.of(m.manifest) for m in self.registry.all()},
            default_model=self.registry.default_name,
            limits=Limits(self.settings.max_pixels, self.settings.max_prompt_chars),
            loras=self.assets.catalog(LORA),
        )

    def prepare(self, job_input: Any, *, job_id: str = "local", s3_config: Any = None) -> Prepared:
        """Validate ``job_input``, decode its images and fetch its assets; raise
        :class:`SdworkerError`."""
        return self.fetch(self.check(job_input, job_id=job_id, s3_config=s3_config))

    def fetch(self, prepared: Prepared) -> Prepared:
        """``prepared`` with its LoRAs resolved to their files: baked and volume ones found,
        URL and hub ones fetched into the disk cache (the slow part of preparing, which the
        worker runs beside other jobs' preparation); :class:`InvalidInput` naming each entry
        that cannot be used."""
        request = prepared.request
        if not request.input.lora or request.mode == "upscale":
            return prepared
        applied = loras.resolve(
            request.input.lora,
            self.assets,
            self.fetcher,
            family=request.family,
            model=request.model,
            max_bytes=self.settings.lora_max_bytes,
        )
        return replace(prepared, request=replace(request, loras=applied))

    def check(self, job_input: Any, *, job_id: str = "local", s3_config: Any = None) -> Prepared:
        """Validate ``job_input`` and decode its images (no download but of images: the
        assets are :meth:`fetch`'s); raise :class:`SdworkerError`."""
        request = parse_input(self.registry.named(job_input), self.input_context())
        check_delivery(request.input.upload, s3_config, self.settings)
        if request.mode == "upscale":
            return Prepared(request, self._upscale_input(request), job_id, s3_config)
        request, inputs = self._decode_images(request)
        return Prepared(request, inputs, job_id, s3_config)

    def _upscale_input(self, request: Request) -> Inputs:
        """An upscale job's image, decoded as every input image is, its result size checked."""
        up = request.input.upscale
        assert up is not None and request.input.image is not None
        image = decode_image(request.input.image, request.field_name("image"), self.images)
        size = upscale_size(image.size, up.width, up.height, up.scale)
        found = budget_problem("upscale", up, size, self.settings.max_pixels)
        if found is not None:
            raise InvalidInput([found])
        return Inputs(image, target=size)

    def _decode_images(self, request: Request) -> tuple[Request, Inputs]:
        if request.mode == "txt2img":
            return request, Inputs()
        assert request.input.image is not None
        image = decode_image(request.input.image, request.field_name("image"), self.images)
        image = image.convert("RGB")
        width, height = request.width, request.height
        if width is None or height is None:
            step = request.family.size.multiple
            width, height = fit(image.size, self.settings.max_pixels, width, height, step)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        mask = None
        if request.input.mask_image is not None:
            name = request.field_name("mask_image")
            mask = decode_image(request.input.mask_image, name, self.images).convert("L")
            if mask.size != (width, height):
                mask = mask.resize((width, height), Image.Resampling.NEAREST)
        return replace(request, width=width, height=height), Inputs(image, mask)

    # -- execute ----------------------------------------------------------------------------

    @property
    def gpu_started(self) -> bool:
        """Whether the GPU side (torch, the pipeline cache) has started in this process."""
        return self._generator is not None

    @property
    def generator(self) -> Generator:
        """The GPU side, created on first use (imports torch and diffusers)."""
        with self._generator_lock:
            if self._generator is None:
                from sdworker.gpu import quiet

                quiet.install()  # before diffusers' modules are imported: some notices fire then
                from sdworker.gpu import runtime
                from sdworker.gpu.generate import Generator
                from sdworker.gpu.pipelines import PipelineCache

                cache = PipelineCache(self.settings, self.registry)
                runtime.configure(self.settings, cache.device)
                self._generator = Generator(
                    cache,
                    assets=self.assets,
                    safety_default=self.settings.safety_checker,
                )
            return self._generator

    def execute(
        self,
        group: list[Prepared],
        *,
        progress: list[ProgressSink | None] | None = None,
        cancelled: list[Callable[[], bool]] | None = None,
        interrupted: list[Callable[[], bool]] | None = None,
    ) -> list[Outcome]:
        """Run a group (one request, or several of one batch key) and answer each request.

        A group call that fails is retried request by request, so one request's trouble
        (out of memory at its size, say) never fails another. An ``interrupted`` request
        stops early and is answered with its images so far (the last one decoded as it
        stood); a ``cancelled`` one is answered with :class:`Cancelled`."""
        sinks = progress or [None] * len(group)
        stops = cancelled or [_never] * len(group)
        halts = interrupted or [_never] * len(group)
        if group[0].request.mode == "upscale":  # alone: an upscale job has no batch key
            return [self._finish(group[0], self._upscaled(group[0]), stops[0])]
        interval = self.settings.progress_interval_s
        try:
            # the GPU side first, so its modules are imported under its lock and never beside
            # the preload's (a half-imported diffusers raises AttributeError for its classes)
            generator = self.generator
            from sdworker.gpu.steps import Job

            jobs = [
                Job(p.request, p.inputs, Progress(sink, interval) if sink else None, stop, halt)
                for p, sink, stop, halt in zip(group, sinks, stops, halts, strict=True)
            ]
            generated = generator.run(jobs)
        except Exception as exc:
            if len(group) == 1 or all(stop() for stop in stops):
                return [Failure.of(_logged(exc, group[0].job_id))] * len(group)
            log.warning(
                "batched call of %d jobs failed (%s); running them one by one", len(group), exc
            )
            return [
                self.execute([p], progress=[sink], cancelled=[stop], interrupted=[halt])[0]
                for p, sink, stop, halt in zip(group, sinks, stops, halts, strict=True)
            ]
        return [
            self._finish(p, images, stop)
            for p, images, stop in zip(group, generated, stops, strict=True)
        ]

    def _upscaled(self, prepared: Prepared) -> list[Generated]:
        """An upscale job's one image (PIL, in this thread; no pipeline is loaded)."""
        up, source = prepared.request.input.upscale, prepared.inputs.image
        assert up is not None and source is not None and prepared.inputs.target is not None
        image = upscale(source, prepared.inputs.target, up.upscaler)
        return [Generated(image, prepared.request.seed, None)]

    def _finish(
        self, prepared: Prepared, images: list[Generated], stop: Callable[[], bool]
    ) -> Outcome:
        if stop():
            return Failure.of(Cancelled("cancelled before the images were delivered"))
        try:
            return deliver(
                self._encode(prepared.request, images),
                job_id=prepared.job_id,
                upload=prepared.request.input.upload,
                s3_config=prepared.s3_config,
                settings=self.settings,
                uploaders=self.uploaders,
            )
        except Exception as exc:
            return Failure.of(_logged(exc, prepared.job_id))

    def _encode(self, request: Request, images: list[Generated]) -> list[EncodedImage]:
        manifest = self.registry.get(request.model).manifest
        return [
            encode_image(
                item.image,
                request.input.output_format,
                seed=item.seed,
                parameters=None
                if request.mode == "upscale"
                else _parameters(request, item, manifest),
                nsfw=item.nsfw,
                interrupted=item.interrupted,
                quality=request.input.output_quality,
                text=request.input.png_text,
            )
            for item in images
        ]

    def verify(self) -> None:
        """Refuse to start where no job could succeed: bad baked files, an unloadable xformers."""
        self.registry.verify()
        if self.settings.attention == "xformers":
            from sdworker.gpu import xformers

            xformers.check(self.settings)

    def preload(self) -> None:
        """Load (and optimise, and warm up) the default model; a failure is the first job's."""
        try:
            name = self.registry.default_name
            if name is not None:
                self.generator.cache.get(name)
        except Exception:
            log.exception("preloading the default model failed; jobs will retry the load")


def _never() -> bool:
    return False


def _logged(exc: BaseException, job_id: str) -> BaseException:
    """``exc``, logged as a job's failure: briefly when it is ours, with its trace when not."""
    if isinstance(exc, SdworkerError):
        log.info("job %s failed: %s", job_id, exc)
    else:
        log.error("job %s failed unexpectedly", job_id, exc_info=exc)
    return exc


def _parameters(request: Request, item: Generated, manifest: Manifest) -> str:
    """The image's A1111 infotext (its PNG ``parameters``)."""
    label = request.scheduler.label if request.scheduler else manifest.default_scheduler
    sampler, schedule = schedulers.infotext_names(label)
    # A1111 writes the first pass's size; the hires fields say what it became
    width, height = item.image.size
    if request.hires_size and request.width and request.height:
        width, height = request.width, request.height
    given = request.input
    distilled = request.family.guidance == "distilled"
    return infotext(
        prompt=given.prompt,
        negative_prompt=given.negative_prompt,
        steps=given.num_inference_steps,
        sampler=sampler,
        # a distilled model's CFG scale is its true CFG's (1: off)
        guidance_scale=(given.true_cfg_scale or 1.0) if distilled else given.guidance_scale,
        distilled_guidance=given.guidance_scale if distilled else None,
        schedule_type=schedule,
        seed=item.seed,
        width=width,
        height=height,
        model_name=manifest.name,
        model_hash=manifest.short_hash,
        extra=_infotext_extra(request, sampler),
    )


def _infotext_extra(request: Request, sampler: str) -> dict[str, Any]:
    """The infotext fields beyond the basic ones, as A1111 writes them."""
    extra: dict[str, Any] = {}
    hires = request.input.hires
    if request.mode in STRENGTH_MODES:
        extra["Denoising strength"] = request.input.strength
    elif hires is not None:
        extra["Denoising strength"] = hires.strength
    if request.input.clip_skip is not None and request.input.clip_skip > 1:
        extra["Clip skip"] = request.input.clip_skip
    if hires is not None:
        hires_sampler = request.hires_scheduler.label if request.hires_scheduler else None
        extra |= hires_infotext(
            hires,
            sampler=sampler,
            hires_sampler=hires_sampler,
            prompt=request.input.prompt,
            negative_prompt=request.input.negative_prompt,
        )
    if request.input.refined:
        extra["Refiner"] = f"{request.model} refiner"
        if request.input.high_noise_frac is not None:
            extra["Refiner switch at"] = request.input.high_noise_frac
    return extra


def fit(
    size: tuple[int, int],
    max_pixels: int,
    width: int | None,
    height: int | None,
    step: int,
) -> tuple[int, int]:
    """The image's own size (or the one side given, keeping aspect), a multiple of ``step``
    (the model family's), in budget."""
    w, h = size
    if width is not None:
        h, w = round(h * width / w), width
    elif height is not None:
        w, h = round(w * height / h), height
    scale = min(1.0, (max_pixels / (w * h)) ** 0.5, MAX_SIDE / max(w, h))
    w, h = int(w * scale), int(h * scale)
    return max(MIN_SIDE, w - w % step), max(MIN_SIDE, h - h % step)
