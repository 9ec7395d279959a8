"""The RunPod adapter: job in, ``[{"image", "seed"}]`` or ``{"error", "failure"}`` out.

This module alone owns what is RunPod's: the handler function ``runpod.serverless.start``
calls, its ``concurrency_modifier``, cancellation through the SDK's stop channel, the
envelopes of other services inside a job's ``input``, and turning a
:class:`~sdworker.core.jobs.Failure` into the job's output (``refresh_worker`` included).
Validation and generation are the :class:`~sdworker.service.Service`'s; every job goes
through one :class:`~sdworker.runpod.batcher.Batcher`, so the device runs one job (or one
batch, with batching on) at a time, in arrival order, behind one lock.

The worker takes ``SDWORKER_PREFETCH`` more jobs than the device runs (see :meth:`concurrency`):
they wait in the batcher, so the next job starts the moment one ends instead of after the SDK's
next fetch. A waiting job is IN_PROGRESS on the platform (its execution timeout runs, as RunPod
counts it from the take), and a cancelled one leaves the line without ever starting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdworker.core import secrets, strictjson
from sdworker.core.errors import InvalidInput, SdworkerError
from sdworker.core.jobs import Failure
from sdworker.core.settings import Settings
from sdworker.formats.a1111 import Options
from sdworker.runpod.batcher import Batcher, Entry
from sdworker.runpod.envelopes import Envelope, unwrap
from sdworker.runpod.interrupts import INTERRUPT_URL_VAR, Interrupts, listen
from sdworker.runpod.shapes import shape_output
from sdworker.runpod.timing import FORMAT, DeviceRun
from sdworker.service import Outcome, Prepared, ProgressSink, Service

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Queued:
    """What the batcher holds for one job: the prepared request and where progress goes."""

    prepared: Prepared
    progress: ProgressSink | None


class RunpodAdapter:
    """The worker as the runpod SDK sees it: :meth:`handle` and :meth:`concurrency`."""

    def __init__(
        self, settings: Settings, *, service: Service | None = None, send_progress: bool = True
    ) -> None:
        self.settings = settings
        #: post jobs' progress to the platform (not in the SDK's local test mode: see start)
        self.send_progress = send_progress
        self.service = service or Service(settings)
        self.batch_limit = settings.batch_images()
        window = settings.batch_window_ms / 1000 if self.batch_limit > 1 else 0.0
        self.batcher = Batcher(self._execute, max_images=self.batch_limit, window_s=window)
        # the device runs one thing at a time, whoever calls (the batcher, handle_sync)
        self._device = threading.Lock()
        self._preparing = threading.Lock()
        # A1111 options a job's envelope sets (POST /sdapi/v1/options) last for this process
        self.a1111_options = Options()
        #: jobs asked to stop early and keep their images (the local endpoint's interrupt)
        self.interrupts = Interrupts()

    # -- the runpod contract ----------------------------------------------------------------

    async def handle(self, job: dict[str, Any]) -> Any:
        """The async handler given to ``runpod.serverless.start``.

        Preparation runs in a thread and generation in the batcher's, so the worker loop keeps
        polling its stop channel; when it cancels this task, the job leaves its batch and a
        running generation stops at the next denoising step."""
        progress = runpod_progress(job) if self.send_progress and isinstance(job, dict) else None

        async def run(native: Any, part: int) -> Outcome:
            ticket = self.batcher.ticket()  # its place in line is its arrival, not its prepare
            try:
                prepared = await asyncio.to_thread(self._prepare, job, native, part)
            except Exception as exc:
                return Failure.of(exc)
            key = prepared.batch_key if self.batch_limit > 1 else None
            outcome: Outcome = await self.batcher.submit(
                _Queued(prepared, progress), key, prepared.size, ticket=ticket
            )
            return outcome

        return carriable(await self._answer(job, run), job)

    def handle_sync(
        self,
        job: dict[str, Any],
        *,
        on_progress: ProgressSink | None = None,
        cancelled: Callable[[], bool] | None = None,
        interrupted: Callable[[], bool] | None = None,
    ) -> Any:
        """:meth:`handle` for callers without an event loop (``sdworker generate``, tests):
        the same answer, the job run alone in this thread."""

        async def run(native: Any, part: int) -> Outcome:
            try:
                prepared = self._prepare(job, native, part)
            except Exception as exc:
                return Failure.of(exc)
            stop = [cancelled] if cancelled is not None else None
            halt = [interrupted] if interrupted is not None else None
            with self._device:
                return self.service.execute(
                    [prepared], progress=[on_progress], cancelled=stop, interrupted=halt
                )[0]

        return carriable(asyncio.run(self._answer(job, run)), job)

    def concurrency(self, current: int) -> int:
        """The runpod ``concurrency_modifier``: the jobs the device runs at once (one, or a
        batch's worth) and ``SDWORKER_PREFETCH`` times as many waiting behind them.

        The SDK's fetch loop sleeps a second whenever the worker holds this many jobs, so
        the jobs waiting are what keeps the device busy until the next fetch. Constant: the
        SDK drains every job before it applies a new value."""
        return self.batch_limit * (1 + self.settings.prefetch)

    # -- one job ------------------------------------------------------------------------------

    async def _answer(self, job: Any, run: Callable[[Any, int], Awaitable[Outcome]]) -> Any:
        """A job's output: its native input run, or an envelope's inputs run in turn and
        answered in the envelope's format. A failure never escapes: it is the job's output."""
        try:
            if not isinstance(job, dict) or "input" not in job:
                raise InvalidInput.one("input", 'is required (a job is {"id", "input"})', job)
            envelope = self._envelope(job)
        except Exception as exc:  # a bug must fail one job, not the worker
            return _failed(Failure.of(exc), job)
        if envelope is None:
            outcome = await run(job["input"], 0)
            if isinstance(outcome, Failure):
                return _failed(outcome, job)
            return shape_output(outcome, self.settings.output_shape)
        parts = itertools.count()

        async def each(native: Any) -> Outcome:
            # an envelope whose inputs may share seeds uploads each under a key of its own
            return await run(native, next(parts) if envelope.parts else 0)

        return await envelope.run(each)

    def _envelope(self, job: dict[str, Any]) -> Envelope | None:
        """A docker-diffusers-api, A1111-worker or worker-comfyui envelope around the input,
        if there is one."""
        raw = job["input"]
        if not isinstance(raw, dict | str):
            return None
        return unwrap(
            raw,
            manifests=[m.manifest for m in self.service.registry.all()],
            default_model=self.service.registry.default_name,
            options=self.a1111_options,
            # worker-comfyui uploads whenever a bucket is set (the job's own, or the worker's)
            uploads=job.get("s3Config") is not None or bool(self.settings.bucket_endpoint_url),
        )

    def _prepare(self, job: dict[str, Any], native: Any, part: int = 0) -> Prepared:
        # one check at a time: prefetched jobs arrive together, and several threads importing
        # the GPU side (torch) at once beside the preload can hang the worker. Downloads (a
        # LoRA by URL) run beside the next job's check: one job's download never holds up
        # the others' preparation
        with self._preparing:
            checked = self._prepare_now(job, native, part)
        return self.service.fetch(checked)

    def _prepare_now(self, job: dict[str, Any], native: Any, part: int = 0) -> Prepared:
        job_id = str(job.get("id", "local"))
        return self.service.check(
            native,
            # the n-th input of an envelope after the first: its uploads' own key prefix
            job_id=f"{job_id}-{part}" if part else job_id,
            s3_config=job.get("s3Config"),
        )

    def _execute(self, batch: list[Entry]) -> list[Outcome]:
        """The batcher's runner: one group through the service, in the batcher's thread,
        logged as one device run (its jobs, start, end, and how long the oldest waited)."""
        queued: list[_Queued] = [e.payload for e in batch]
        with self._device:
            waited = time.monotonic() - min(e.arrived for e in batch)
            wall, started = time.time(), time.perf_counter()
            outcomes = self.service.execute(
                [q.prepared for q in queued],
                progress=[q.progress for q in queued],
                cancelled=[e.cancelled.is_set for e in batch],
                interrupted=[self.interrupts.asked(q.prepared.job_id) for q in queued],
            )
            ended = wall + time.perf_counter() - started
        ids = tuple(q.prepared.job_id for q in queued)
        for job_id in ids:
            self.interrupts.forget(job_id)
        log.info(FORMAT, *DeviceRun(ids, wall, ended, waited * 1000).args())
        return outcomes


def _failed(outcome: Outcome, job: Any) -> Any:
    """A failure as the job's output (``error`` moves to the job's error in the SDK)."""
    if isinstance(outcome, Failure):
        job_id = job.get("id", "?") if isinstance(job, dict) else "?"
        log.info("job %s failed: %s", job_id, outcome.message)
        return outcome.to_output()
    return outcome


def carriable(answer: Any, job: Any) -> Any:
    """``answer``, or a failure in its place when JSON cannot carry it (a NaN, an infinity, a
    lone surrogate): the SDK could not post it, and the job would never end."""
    found = strictjson.problem(answer, "output")
    if found is None:
        return answer
    failure = Failure("unserialisable_output", f"the job's result cannot be sent as JSON: {found}")
    return _failed(failure, job)


def runpod_progress(job: dict[str, Any]) -> ProgressSink:
    """A sink that sends a job's progress to the platform (``/status`` shows it)."""

    def report(progress: dict[str, Any]) -> None:
        import runpod

        runpod.serverless.progress_update(job, progress)

    return report


def platform_posts(environ: Mapping[str, str], argv: Sequence[str]) -> bool:
    """Whether the SDK has a platform to post progress to. Not in its local test mode (no
    ``RUNPOD_WEBHOOK_GET_JOB``, or ``--test_input``: it runs one job and exits), where every
    post would fail and be logged as an ERROR, nor without a URL to post results to."""
    local = "RUNPOD_WEBHOOK_GET_JOB" not in environ or any(
        arg.startswith("--test_input") for arg in argv
    )
    return not local and bool(environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"))


def start(settings: Settings | None = None) -> None:
    """Run the runpod worker loop with this worker (``handler.py`` at the repo root calls this)."""
    import os
    import sys

    # every model is baked: nothing at run time may reach for the hub through huggingface_hub
    # (hub LoRAs are read from its cache offline, or fetched through the guarded fetch), nor
    # bypass plain HTTP with the Xet client (both read once, when it is imported)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
    # the SDK logs at DEBUG unless told otherwise: every job's input and whole output, three
    # times (read before the SDK is imported)
    os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")
    try:
        settings = settings or Settings.from_env()
    except SdworkerError as exc:
        raise SystemExit(f"sdworker: refusing to start: {exc}") from exc
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    secrets.install_log_filter()  # a last line of defence: no token reaches the job log
    adapter = RunpodAdapter(settings, send_progress=platform_posts(os.environ, sys.argv))
    try:
        adapter.service.verify()
    except SdworkerError as exc:
        raise SystemExit(f"sdworker: refusing to start: {exc}") from exc
    if settings.preload:
        # the model loads beside the worker loop (whose health pings start at once); a job
        # that arrives first waits for this load instead of starting its own. Started before
        # runpod is imported, so the two imports overlap.
        threading.Thread(
            target=adapter.service.preload, name="sdworker-preload", daemon=True
        ).start()
    interrupt_url = os.environ.get(INTERRUPT_URL_VAR)
    if interrupt_url:  # only the local endpoint sets it (RunPod has no such channel)
        listen(interrupt_url, adapter.interrupts)
    import runpod

    runpod.serverless.start(
        {
            "handler": adapter.handle,
            "concurrency_modifier": adapter.concurrency,
            "return_aggregate_stream": True,
        }
    )
