"""Cross-request batching: compatible jobs waiting together run as one pipeline call.

The runpod worker loop hands a worker several jobs at once when its ``concurrency_modifier``
says so; each job's handler task submits to one :class:`Batcher`. The oldest waiting job opens a
window of ``SDWORKER_BATCH_WINDOW_MS``: jobs with the same :func:`batch_key` (model, size,
steps, scheduler, guidance...) that arrive in it, or that queued up while the previous batch ran,
join it, up to ``SDWORKER_BATCH_MAX`` images. Each job keeps its own prompt and seeds (one CPU
generator per image, as in single runs) and gets only its own images back.

A batch of one job runs the exact single-job code path. A batched call is not bit-identical to
single runs: matrix kernels pick other blockings for other batch sizes, so pixels may differ by
one level of 255 in rare places. API.md promises bit-identical seeds, so batching is opt-in
(``SDWORKER_BATCH_MAX`` > 1): a throughput choice an operator makes knowingly, on a GPU.

A cancelled job leaves its batch at once; the others run on (the batch stops early only when
every job in it was cancelled). A batched call that fails (out of memory, say) is retried job
by job, so one job's trouble never fails another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sdworker.settings import Settings

if TYPE_CHECKING:
    from sdworker.generate import Generated, Generator, StepCallback
    from sdworker.handler import Worker
    from sdworker.pipelines import LoadedModel
    from sdworker.schema import Request

log = logging.getLogger(__name__)

#: a good batch size on a data-centre GPU, for operators who turn batching on
GPU_BATCH_MAX = 8
#: the log line after each batched pipeline call (jobs, images); bench/gpu.py counts them
BATCHED_CALL = "ran %d jobs (%d images) in one call"


def resolve_batch_max(settings: Settings) -> int:
    """Images per batched call: the setting; ``0`` (auto) is 1, batching off, on every device.

    Off by default because a batched image can differ from its single-run twin in the last
    bits, and the seed promise of the contract is bit-for-bit."""
    return settings.batch_max if settings.batch_max > 0 else 1


def batch_key(request: Request) -> Hashable | None:
    """What must be equal for two requests to share a pipeline call; None: never batched.

    Prompts, negative prompts, seeds and output options may differ. Whether a negative prompt
    is given may not (SDXL zeroes the unconditional embedding only when none is). Images,
    LoRAs, compel and seeded-noise-sampler schedulers (one seed per scheduler) run alone.
    """
    req = request.input
    spec = request.scheduler
    if request.mode != "txt2img" or req.lora or req.use_compel:
        return None
    if req.clip_skip is not None and req.clip_skip > 1:
        return None  # skipped layers are encoded per request (sdworker.prompts), not batched
    if spec is not None and spec.uses_seeded_noise_sampler:
        return None
    scheduler = None if spec is None else (spec.class_name, repr(sorted(spec.overrides.items())))
    return (
        request.model,
        request.width,
        request.height,
        req.num_inference_steps,
        req.guidance_scale,
        scheduler,
        bool(req.negative_prompt),
    )


@dataclass(eq=False)
class Entry:
    """One job waiting for, or running in, a batch."""

    job: dict[str, Any]
    key: Hashable | None
    size: int
    arrived: float
    payload: Any = None
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    cancelled: threading.Event = field(default_factory=threading.Event)


#: runs a batch (in a thread) and returns one result per entry, in order
Execute = Callable[[list[Entry]], list[Any]]


class Batcher:
    """Collects entries into batches and runs them one batch at a time, oldest job first."""

    def __init__(
        self,
        execute: Execute,
        *,
        max_images: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._execute = execute
        self.max_images = max_images
        self.window_s = window_s
        self._clock = clock
        self._pending: list[Entry] = []
        self._arrived = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(
        self, job: dict[str, Any], key: Hashable | None, size: int, payload: Any = None
    ) -> Any:
        """Queue ``job`` and wait for its own result; cancelling the caller leaves the batch."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # the worker loop runs one event loop for its life; tests and scripts may run more
            self._loop, self._pending, self._arrived, self._drainer = (
                loop,
                [],
                asyncio.Event(),
                None,
            )
        entry = Entry(job, key, size, self._clock(), payload)
        self._pending.append(entry)
        self._arrived.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        try:
            return await asyncio.shield(entry.future)
        except asyncio.CancelledError:
            entry.cancelled.set()
            if entry in self._pending:
                self._pending.remove(entry)
            raise

    async def _drain(self) -> None:
        while self._pending:
            batch = await self._gather(self._pending[0])
            for entry in batch:
                self._pending.remove(entry)
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self._execute, batch)
            except Exception as exc:  # execute answers per job; this is a bug, fail the batch
                log.exception("batch of %d jobs failed", len(batch))
                results = [exc] * len(batch)
            for entry, result in zip(batch, results, strict=True):
                if entry.future.done():
                    continue
                if isinstance(result, BaseException):
                    entry.future.set_exception(result)
                else:
                    entry.future.set_result(result)

    def _company(self, first: Entry) -> list[Entry]:
        group, images = [first], first.size
        if first.key is None:
            return group
        for entry in self._pending:
            if entry is first or entry.key != first.key:
                continue
            if images + entry.size <= self.max_images:
                group.append(entry)
                images += entry.size
        return group

    async def _gather(self, first: Entry) -> list[Entry]:
        """``first`` and the compatible jobs that arrive within its window (or fill a batch)."""
        while True:
            if first not in self._pending:  # cancelled while it waited
                return []
            group = self._company(first)
            full = sum(e.size for e in group) >= self.max_images
            remaining = first.arrived + self.window_s - self._clock()
            if first.key is None or full or remaining <= 0:
                return group
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)


def run_batched(
    generator: Generator,
    requests: list[Request],
    *,
    on_step: list[StepCallback | None],
    cancelled: Callable[[], bool],
    safety_default: bool | None,
) -> list[list[Generated]]:
    """Run requests of one :func:`batch_key` as a single pipeline call; images per request."""
    with generator.cache.using(requests[0].model) as loaded:
        return _run_batch(generator, loaded, requests, on_step, cancelled, safety_default)


def _run_batch(
    generator: Generator,
    loaded: LoadedModel,
    requests: list[Request],
    on_step: list[StepCallback | None],
    cancelled: Callable[[], bool],
    safety_default: bool | None,
) -> list[list[Generated]]:
    import torch

    from sdworker.errors import Cancelled
    from sdworker.generate import Generated, Inputs, run_safety
    from sdworker.lora import lora_set

    first = requests[0]
    base = loaded.pipeline("txt2img")
    seeds = [seed for r in requests for seed in r.seeds]
    pipe = generator._pipeline_for(base, loaded, first, seeds[0])
    kwargs = generator._call_kwargs(first, Inputs(), seeds[0])
    kwargs["prompt"] = [r.input.prompt for r in requests for _ in r.seeds]
    if first.input.negative_prompt:
        kwargs["negative_prompt"] = [r.input.negative_prompt for r in requests for _ in r.seeds]
    # one CPU generator per image: the same starting noise (and per-step noise) as single runs
    kwargs["generator"] = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    total = first.input.num_inference_steps
    done = 0

    def step_end(pipe: Any, step: int, timestep: Any, values: dict[str, Any]) -> dict[str, Any]:
        nonlocal done, total
        if done == 0:
            total = int(getattr(pipe, "num_timesteps", 0) or total)
        done += 1
        for callback in on_step:
            if callback is not None:
                callback(min(done, total), total)
        if cancelled():
            raise Cancelled("every job of the batch was cancelled")
        return values

    # through the LoRA gate with no LoRAs: adapters a previous job left enabled on the shared
    # modules are switched off first, and no LoRA job can switch them on during this call
    with (
        loaded.adapters.applied(
            base,
            lora_set(None),
            model=first.model,
            family=loaded.info.manifest.family,
            library=generator.loras,
        ),
        torch.inference_mode(),
    ):
        images = pipe(**kwargs, callback_on_step_end=step_end).images
    out: list[list[Generated]] = []
    position = 0
    for request in requests:
        mine = [Generated(images[position + i], seed, None) for i, seed in enumerate(request.seeds)]
        position += len(mine)
        if run_safety(request.input.safety_checker, loaded, safety_default):
            mine = generator._check(loaded, mine)
        out.append(mine)
    return out


class BatchingHandler:
    """The worker's async handler when batching is on: classify, batch, run, answer each job."""

    def __init__(self, worker: Worker, max_images: int) -> None:
        self.worker = worker
        self.batcher = Batcher(
            self._execute, max_images=max_images, window_s=worker.settings.batch_window_ms / 1000
        )

    async def handle(self, job: dict[str, Any]) -> Any:
        key, size, request = await asyncio.to_thread(self._classify, job)
        return await self.batcher.submit(job, key, size, request)

    def _classify(self, job: Any) -> tuple[Hashable | None, int, Request | None]:
        """The job's batch key; anything unusual (errors included) runs alone, unchanged."""
        from sdworker.delivery import check_delivery

        if not isinstance(job, dict) or not isinstance(job.get("input"), dict):
            return None, 1, None
        try:
            if self.worker._envelope(job) is not None:
                return None, 1, None
            if job["input"].get("image") is not None:
                # img2img and inpaint run alone: validating here would decode (or fetch) the
                # image twice, and a one-time URL would not survive the second fetch
                return None, 1, None
            request, _ = self.worker.validate(job["input"])
            check_delivery(request.input.upload, job.get("s3Config"), self.worker.settings)
        except Exception:  # handle_sync reports it, exactly as without batching
            return None, 1, None
        return batch_key(request), request.input.num_images, request

    def _alone(self, entry: Entry) -> Any:
        from sdworker.handler import runpod_progress

        return self.worker.handle_sync(
            entry.job, on_progress=runpod_progress(entry.job), cancelled=entry.cancelled.is_set
        )

    def _execute(self, batch: list[Entry]) -> list[Any]:
        if len(batch) == 1:
            return [self._alone(batch[0])]
        from sdworker.handler import Progress, failure, runpod_progress

        interval = self.worker.settings.progress_interval_s
        try:
            generated = run_batched(
                self.worker.generator,
                [e.payload for e in batch],
                on_step=[Progress(runpod_progress(e.job), interval) for e in batch],
                cancelled=lambda: all(e.cancelled.is_set() for e in batch),
                safety_default=self.worker.settings.safety_checker,
            )
        except Exception as exc:
            if all(e.cancelled.is_set() for e in batch):
                return [None] * len(batch)
            log.warning(
                "batched call of %d jobs failed (%s); running them one by one", len(batch), exc
            )
            return [None if e.cancelled.is_set() else self._alone(e) for e in batch]
        log.info(BATCHED_CALL, len(batch), sum(e.size for e in batch))
        results: list[Any] = []
        for entry, images in zip(batch, generated, strict=True):
            try:
                results.append(self.worker.finish(entry.job, entry.payload, images))
            except Exception as exc:
                results.append(failure(exc, entry.job.get("id", "?")))
        return results
