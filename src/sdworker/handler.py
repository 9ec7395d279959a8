"""The RunPod handler: job in, ``[{"image", "seed"}]`` or ``{"error"}`` out.

This module alone turns exceptions into a job's ``error``. It validates and decodes before any
model is loaded, reports throttled progress, and stops a generation between denoising steps
when the runpod worker loop cancels the job (its stop channel cancels our asyncio task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PIL import Image

from sdworker.delivery import check_delivery, deliver
from sdworker.dialects.a1111 import Options
from sdworker.errors import Cancelled, InvalidInput, Problem, SdworkerError
from sdworker.imageio import EncodedImage, ImagePolicy, decode_image, encode_image
from sdworker.infotext import infotext
from sdworker.models import ModelRegistry
from sdworker.schema import ModelFacts, Request, parse_input
from sdworker.settings import MAX_SIDE, MIN_SIDE, SIDE_STEP, Settings

if TYPE_CHECKING:
    from sdworker.batching import BatchingHandler
    from sdworker.dialects.envelopes import Envelope
    from sdworker.generate import Generated, Generator, Inputs
    from sdworker.lora import LoraLibrary

log = logging.getLogger(__name__)

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


class Worker:
    """Everything one worker process needs: settings, the model registry and (lazily) the GPU."""

    def __init__(self, settings: Settings, *, registry: ModelRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or ModelRegistry(settings)
        self._generator: Generator | None = None
        self._loras: LoraLibrary | None = None
        # A1111 options a job's envelope sets (POST /sdapi/v1/options) last for this process
        self._a1111_options = Options()
        self._generator_lock = threading.Lock()
        self._batching: BatchingHandler | None = None
        self._images = ImagePolicy.from_settings(settings)

    # -- validation -------------------------------------------------------------------------

    def model_facts(self) -> dict[str, ModelFacts]:
        return {
            m.name: ModelFacts(
                m.name,
                m.manifest.native_width,
                m.manifest.native_height,
                m.manifest.family,
            )
            for m in self.registry.all()
        }

    def validate(self, job_input: Any) -> tuple[Request, Inputs]:
        """Parse the input and decode its images; nothing touches a model here."""
        from sdworker.generate import Inputs

        request = parse_input(
            job_input,
            models=self.model_facts(),
            default_model=self.registry.default_name,
            max_pixels=self.settings.max_pixels,
            loras=self.loras.names(),
        )
        self._check_lora_families(request)
        wants_checker = request.input.safety_checker
        if wants_checker and not self.registry.get(request.model).manifest.has_safety_checker:
            raise InvalidInput.one(
                "safety_checker", f"model {request.model!r} ships no safety checker", True
            )
        if request.mode == "txt2img":
            return request, Inputs()
        return self._with_images(request)

    @property
    def loras(self) -> LoraLibrary:
        """The baked LoRA files (their headers are read at validation, their weights later)."""
        if self._loras is None:
            from sdworker.lora import LoraLibrary

            self._loras = LoraLibrary.from_settings(self.settings)
        return self._loras

    def _check_lora_families(self, request: Request) -> None:
        """A LoRA made for another family fails here, before the model is loaded."""
        from sdworker.lora import family_name

        family = self.registry.get(request.model).manifest.family
        problems = []
        for i, ref in enumerate(request.input.lora or []):
            made_for = self.loras.family(ref.name)
            if made_for is not None and made_for != family:
                problems.append(
                    Problem(
                        f"lora[{i}].name",
                        f"is made for {family_name(made_for)} models; model "
                        f"{request.model!r} is {family_name(family)}",
                        ref.name,
                    )
                )
        if problems:
            raise InvalidInput(problems)

    def _with_images(self, request: Request) -> tuple[Request, Inputs]:
        from dataclasses import replace

        from sdworker.generate import Inputs

        assert request.input.image is not None
        image = decode_image(request.input.image, "image", self._images).convert("RGB")
        width, height = request.width, request.height
        if width is None or height is None:
            width, height = _fit(image.size, self.settings.max_pixels, width, height)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        mask = None
        if request.input.mask_image is not None:
            mask = decode_image(request.input.mask_image, "mask_image", self._images).convert("L")
            if mask.size != (width, height):
                mask = mask.resize((width, height), Image.Resampling.NEAREST)
        return replace(request, width=width, height=height), Inputs(image, mask)

    # -- running ----------------------------------------------------------------------------

    @property
    def generator(self) -> Generator:
        """The GPU side, created on first use (imports torch and diffusers)."""
        with self._generator_lock:
            if self._generator is None:
                from sdworker.generate import Generator
                from sdworker.pipelines import PipelineCache

                self._generator = Generator(
                    PipelineCache(self.settings, self.registry), loras=self.loras
                )
            return self._generator

    def run(
        self,
        job: dict[str, Any],
        *,
        on_progress: ProgressSink | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> list[dict[str, Any]]:
        """Run one job and return its output list; raise :class:`SdworkerError` on failure."""
        if not isinstance(job, dict) or "input" not in job:
            raise InvalidInput.one("input", 'is required (a job is {"id", "input"})', job)
        request, inputs = self.validate(job["input"])
        check_delivery(request.input.upload, job.get("s3Config"), self.settings)
        progress = Progress(on_progress, self.settings.progress_interval_s) if on_progress else None
        images = self.generator(
            request,
            inputs,
            on_step=progress,
            cancelled=cancelled,
            safety_default=self.settings.safety_checker,
        )
        if cancelled():
            raise Cancelled("cancelled before the images were delivered")
        return self.finish(job, request, images)

    def finish(
        self, job: dict[str, Any], request: Request, images: list[Generated]
    ) -> list[dict[str, Any]]:
        """Encode a job's images and deliver them (inline or uploaded): the job's output."""
        return deliver(
            self._encode(request, images),
            job_id=str(job.get("id", "local")),
            upload=request.input.upload,
            s3_config=job.get("s3Config"),
            settings=self.settings,
        )

    def _encode(self, request: Request, images: list[Generated]) -> list[EncodedImage]:
        manifest = self.registry.get(request.model).manifest
        sampler = request.scheduler.label if request.scheduler else manifest.default_scheduler
        output = []
        for item in images:
            params = infotext(
                prompt=request.input.prompt,
                negative_prompt=request.input.negative_prompt,
                steps=request.input.num_inference_steps,
                sampler=sampler,
                guidance_scale=request.input.guidance_scale,
                seed=item.seed,
                width=item.image.width,
                height=item.image.height,
                model_name=manifest.name,
                model_hash=manifest.short_hash,
                extra=_infotext_extra(request),
            )
            output.append(
                encode_image(
                    item.image,
                    request.input.output_format,
                    seed=item.seed,
                    parameters=params,
                    nsfw=item.nsfw,
                )
            )
        return output

    def handle_sync(
        self,
        job: dict[str, Any],
        *,
        on_progress: ProgressSink | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Any:
        """Like :meth:`run`, but every failure becomes ``{"error": ...}`` (the job fails, the
        worker lives on). An input in another service's envelope is answered in its shape."""
        job_id = job.get("id", "?") if isinstance(job, dict) else "?"
        try:
            envelope = self._envelope(job)
            if envelope is not None:
                return envelope.run(
                    lambda native: self.run(
                        {**job, "input": native}, on_progress=on_progress, cancelled=cancelled
                    )
                )
            return self.run(job, on_progress=on_progress, cancelled=cancelled)
        except Exception as exc:  # a bug must fail one job, not the worker
            return failure(exc, job_id)

    def _envelope(self, job: Any) -> Envelope | None:
        """A docker-diffusers-api or A1111-worker envelope around the input, if there is one."""
        from sdworker.dialects.envelopes import unwrap

        raw = job.get("input") if isinstance(job, dict) else None
        if not isinstance(raw, dict):
            return None
        return unwrap(
            raw,
            manifests=[m.manifest for m in self.registry.all()],
            default_model=self.registry.default_name,
            options=self._a1111_options,
        )

    # -- throughput -------------------------------------------------------------------------

    def batch_limit(self) -> int:
        """Images per batched pipeline call (1: no batching)."""
        from sdworker.batching import resolve_batch_max

        return resolve_batch_max(self.settings)

    def concurrency(self, current: int) -> int:
        """The runpod ``concurrency_modifier``: with batching, two batches' worth of jobs, so
        the next batch is already waiting when one finishes (the SDK's loop pauses a second
        whenever a worker is at its limit)."""
        limit = self.batch_limit()
        return 1 if limit <= 1 else 2 * limit

    def preload(self) -> None:
        """Load (and optimise, and warm up) the default model; a failure is the first job's."""
        try:
            name = self.registry.default_name
            if name is not None:
                self.generator.cache.get(name)
        except Exception:
            log.exception("preloading the default model failed; jobs will retry the load")

    async def handle(self, job: dict[str, Any]) -> Any:
        """The async handler given to ``runpod.serverless.start``.

        Generation runs in a thread so the worker loop keeps polling its stop channel; when it
        cancels this task, the flag below stops the generation at the next denoising step.
        With batching on, the job goes through :mod:`sdworker.batching` instead.
        """
        limit = self.batch_limit()
        if limit > 1:
            if self._batching is None:  # settings are frozen: the limit never changes
                from sdworker.batching import BatchingHandler

                self._batching = BatchingHandler(self, limit)
            return await self._batching.handle(job)
        stop = threading.Event()
        work = asyncio.ensure_future(
            asyncio.to_thread(
                self.handle_sync, job, on_progress=runpod_progress(job), cancelled=stop.is_set
            )
        )
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()
            # hold the job slot until the thread has stopped (within a step), so the next job
            # never runs beside a cancelled one that is still decoding or uploading
            with contextlib.suppress(BaseException):
                await work
            raise


def runpod_progress(job: dict[str, Any]) -> ProgressSink:
    """A sink that sends a job's progress to the platform (``/status`` shows it)."""

    def report(progress: dict[str, Any]) -> None:
        import runpod

        runpod.serverless.progress_update(job, progress)

    return report


def _infotext_extra(request: Request) -> dict[str, Any]:
    """The infotext fields beyond the basic ones, as A1111 writes them."""
    extra: dict[str, Any] = {}
    if request.mode != "txt2img":
        extra["Denoising strength"] = request.input.strength
    if request.input.clip_skip is not None and request.input.clip_skip > 1:
        extra["Clip skip"] = request.input.clip_skip
    return extra


def failure(exc: Exception, job_id: Any) -> dict[str, Any]:
    """A job's ``{"error"}`` output for ``exc`` (``refresh_worker`` when the GPU may be gone)."""
    if isinstance(exc, SdworkerError):
        log.info("job %s failed: %s", job_id, exc)
        result: dict[str, Any] = {"error": str(exc)}
        if exc.refresh_worker:
            result["refresh_worker"] = True
        return result
    log.error("job %s failed unexpectedly", job_id, exc_info=exc)
    return {"error": f"internal error: {type(exc).__name__}: {exc}"}


def _fit(
    size: tuple[int, int], max_pixels: int, width: int | None, height: int | None
) -> tuple[int, int]:
    """The image's own size (or the one side given, keeping aspect), multiple of 8, in budget."""
    w, h = size
    if width is not None:
        h, w = round(h * width / w), width
    elif height is not None:
        w, h = round(w * height / h), height
    scale = min(1.0, (max_pixels / (w * h)) ** 0.5, MAX_SIDE / max(w, h))
    w, h = int(w * scale), int(h * scale)
    return max(MIN_SIDE, w - w % SIDE_STEP), max(MIN_SIDE, h - h % SIDE_STEP)


def start(settings: Settings | None = None) -> None:
    """Run the runpod worker loop with this worker (``sdworker worker`` and ``handler.py`` call this)."""
    import os

    # every weight is baked: nothing at run time may reach for the hub
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        settings = settings or Settings.from_env()
    except SdworkerError as exc:
        raise SystemExit(f"sdworker: refusing to start: {exc}") from exc
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    worker = Worker(settings)
    try:
        worker.registry.verify()
    except SdworkerError as exc:
        raise SystemExit(f"sdworker: refusing to start: {exc}") from exc
    if settings.preload:
        # the model loads beside the worker loop (whose health pings start at once); a job
        # that arrives first waits for this load instead of starting its own. Started before
        # runpod is imported, so the two imports overlap.
        threading.Thread(target=worker.preload, name="sdworker-preload", daemon=True).start()
    import runpod

    runpod.serverless.start(
        {
            "handler": worker.handle,
            "concurrency_modifier": worker.concurrency,
            "return_aggregate_stream": True,
        }
    )
