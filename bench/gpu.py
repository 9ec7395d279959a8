"""Benchmark on a GPU: plain diffusers against sdworker, full-size random-weights models.

    sdworker bake random-sd15 && sdworker bake random-sdxl      # into $SDWORKER_MODELS_DIR
    PYTHONPATH=src python bench/gpu.py --model random-sd15 [--size 512] [--steps 25]
    PYTHONPATH=src python bench/gpu.py --model random-sdxl --size 1024 [--compile]

(Without the ``sdworker`` script installed: ``PYTHONPATH=src python -m sdworker bake
random-sd15``; both bake into ``$SDWORKER_MODELS_DIR``, else ``./models``, or ``--models-dir``.)

For each side: single requests one after another (latency, images/s) and ``--clients``
concurrent clients (images/s, latency). Plain diffusers is measured with its defaults (fp32)
and in fp16 (how its docs run it); concurrent clients share one pipeline behind a lock, as a
plain one-job-at-a-time worker serves them. Ours is the worker (``RunpodAdapter.handle``), with its
settings from the environment, with cross-request batching on (``SDWORKER_BATCH_MAX``,
default here 8: batching is opt-in in the worker). Prints a table, the ratios and how many
images each batched call of ours held, and appends a row to bench/RESULTS.md (``--results``).
Ours builds its progress updates as in production, but sends them nowhere (no platform here).

``--device cpu`` runs every step on the CPU, a smoke run of the script with the tiny model
(the plain side in fp32 only: half precision on a CPU measures nothing useful)::

    PYTHONPATH=src python -m sdworker bake tiny --models-dir /tmp/models
    PYTHONPATH=src python bench/gpu.py --device cpu --model tiny --models-dir /tmp/models \\
        --size 64 --steps 2 --requests 4 --clients 2 --no-record
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, append_result, cpu_name, median

from sdworker.gpu.generate import BATCHED_CALL

if TYPE_CHECKING:
    import torch

PROMPT = "a photograph of an astronaut riding a horse"


class BenchError(Exception):
    """A side of the benchmark could not run; the script exits with this message."""


def measure_plain_concurrent(
    run: Callable[[int], None], n: int, clients: int
) -> tuple[float, float]:
    """(images/s, median latency s) for ``n`` requests from ``clients`` threads (one thread for
    the single-stream numbers: ours runs its jobs in worker threads too, and on a CPU torch
    runs at another speed in the main thread)."""
    lock = threading.Lock()
    latencies: list[float] = []

    def client(c: int) -> None:
        for i in range(c, n, clients):
            t = time.perf_counter()
            with lock:  # a diffusers pipeline serves one call at a time
                run(i)
            latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.perf_counter() - started), median(latencies)


def check_output(out: Any) -> None:
    """A job's output must be its image list; an ``{"error"}`` ends the benchmark."""
    if not isinstance(out, list):
        raise BenchError(f"sdworker answered a job with {out!r}")


def measure_ours_concurrent(
    worker: Any, job: Callable[[int], dict[str, Any]], n: int, clients: int
) -> tuple[float, float]:
    """(images/s, median latency s) for ``n`` jobs from ``clients`` concurrent callers of
    ``worker.handle``, as the runpod worker loop calls it."""
    latencies: list[float] = []

    async def client(c: int) -> None:
        for i in range(c, n, clients):
            t = time.perf_counter()
            check_output(await worker.handle(job(i)))
            latencies.append(time.perf_counter() - t)

    async def main() -> None:
        await asyncio.gather(*(client(c) for c in range(clients)))

    started = time.perf_counter()
    asyncio.run(main())
    return n / (time.perf_counter() - started), median(latencies)


class BatchedCalls(logging.Handler):
    """Counts the batched pipeline calls ``sdworker.gpu.generate`` logs, and their jobs and images."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.calls = self.jobs = self.images = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == BATCHED_CALL and isinstance(record.args, tuple):
            jobs, images = (int(str(value)) for value in record.args)
            self.calls += 1
            self.jobs += jobs
            self.images += images

    def reset(self) -> None:
        self.calls = self.jobs = self.images = 0


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def device_name(device: torch.device) -> str:
    """The accelerator's name, or the CPU's model."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"CPU {cpu_name()}, {torch.get_num_threads()} threads"
    return str(device)


def accelerator(device: torch.device) -> Any:
    """torch's module for the device (torch.cuda, torch.mps, torch.xpu...); None on the CPU."""
    import torch

    return None if device.type == "cpu" else getattr(torch, device.type, None)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    backend = accelerator(device)
    if hasattr(backend, "synchronize"):
        backend.synchronize()


def release(device: torch.device) -> None:
    """Free the pipeline just measured before the next side loads."""
    gc.collect()
    backend = accelerator(device)
    if hasattr(backend, "empty_cache"):
        backend.empty_cache()


def silence_progress() -> None:
    """Progress updates of ours go nowhere: the worker still builds and throttles them, but
    there is no platform to take them (the runpod SDK would start a thread per update to POST
    it to an unset URL, and log the failure)."""
    import sdworker.runpod.adapter

    def sink(job: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
        return lambda progress: None

    sdworker.runpod.adapter.runpod_progress = sink


def check_device(device: torch.device) -> None:
    """Refuse a device torch cannot use, before anything loads."""
    import torch

    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(
            f"--device {device} needs a CUDA GPU (torch.cuda.is_available() is False); "
            "pass --device cpu for a smoke run of this script, or run bench/overhead.py "
            "and bench/coldstart.py on a CPU"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise BenchError(f"--device {device}: torch.backends.mps.is_available() is False")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="random-sd15", help="a baked model's name")
    parser.add_argument(
        "--models-dir", type=Path, default=Path(os.environ.get("SDWORKER_MODELS_DIR", "models"))
    )
    parser.add_argument(
        "--device", default="cuda", help="torch device: cuda (default), cuda:N, or cpu (smoke run)"
    )
    parser.add_argument("--size", type=int, help="default: 512 (SD 1.5), 1024 (SDXL)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--requests", type=int, default=16, help="per measurement")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--compile",
        action="store_true",
        help="ours with SDWORKER_COMPILE=1, compiled at --size (SDWORKER_COMPILE_SIZES)",
    )
    parser.add_argument("--skip-fp32", action="store_true", help="skip plain diffusers in fp32")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"where the row goes (default: {RESULTS})"
    )
    parser.add_argument("--no-record", action="store_true", help="append no row")
    parser.add_argument("--verbose", action="store_true", help="log the worker's INFO lines")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.clients < 1:
        parser.error("--requests and --clients must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    # the level on the handler too: the batching logger is turned up to INFO for counting
    console = logging.StreamHandler()
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(console)
    logging.getLogger().setLevel(level)
    # every weight is baked: nothing here may reach for the hub
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        run(args)
    except BenchError as exc:
        raise SystemExit(f"bench/gpu.py: {exc}") from exc


def run(args: argparse.Namespace) -> None:
    import torch

    device = torch.device(args.device)
    check_device(device)
    path = args.models_dir / args.model
    if not (path / "model_index.json").exists():
        raise BenchError(
            f"no baked model at {path}: run `sdworker bake {args.model} "
            f"--models-dir {args.models_dir}` first"
        )
    # half precision on a CPU is slow emulation, not the measurement anyone runs
    plain_dtypes: list[tuple[torch.dtype, str]] = []
    if not args.skip_fp32:
        plain_dtypes.append((torch.float32, "diffusers defaults (fp32)"))
    if device.type != "cpu":
        plain_dtypes.append((torch.float16, "diffusers fp16"))
    if not plain_dtypes:
        raise BenchError("--skip-fp32 on a CPU leaves no plain diffusers side to compare with")

    from diffusers import AutoPipelineForText2Image
    from diffusers.utils import logging as diffusers_logging

    from sdworker.core.errors import SdworkerError
    from sdworker.core.settings import Settings
    from sdworker.gpu.generate import GPU_BATCH_MAX
    from sdworker.runpod.adapter import RunpodAdapter

    if not args.verbose:
        diffusers_logging.set_verbosity_error()
    size = args.size or (1024 if "xl" in args.model else 512)
    n, clients = args.requests, args.clients
    rows: list[tuple[str, float, float, float, float]] = []

    def plain_side(dtype: torch.dtype, label: str) -> None:
        pipe = AutoPipelineForText2Image.from_pretrained(
            str(path), dtype=dtype, local_files_only=True
        ).to(device)
        pipe.set_progress_bar_config(disable=True)

        def generate(i: int) -> None:
            pipe(
                PROMPT,
                num_inference_steps=args.steps,
                width=size,
                height=size,
                generator=torch.Generator("cpu").manual_seed(i),
            ).images[0]

        generate(0)  # warm-up
        synchronize(device)
        single = measure_plain_concurrent(generate, n, 1)
        concurrent = measure_plain_concurrent(generate, n, clients)
        rows.append((label, *single, *concurrent))

    for dtype, label in plain_dtypes:
        plain_side(dtype, label)
        release(device)  # the plain pipeline goes before the next one (and ours) loads

    overrides: dict[str, Any] = {
        "models_dir": args.models_dir,
        "default_model": args.model,
        "device": args.device,
    }
    if "SDWORKER_BATCH_MAX" not in os.environ:
        overrides["batch_max"] = GPU_BATCH_MAX  # batching is opt-in in the worker
    if args.compile:
        overrides["compile"] = True
        if "SDWORKER_COMPILE_SIZES" not in os.environ:
            # the warm-up compiles for the size measured: after it, other shapes run uncompiled
            overrides["compile_sizes"] = f"{size}x{size}"
    try:
        settings = Settings.from_env(**overrides)
    except SdworkerError as exc:
        raise BenchError(f"sdworker settings: {exc}") from exc
    worker = RunpodAdapter(settings)
    silence_progress()
    load_started = time.perf_counter()
    worker.service.preload()  # load, optimise, warm up (compile when asked): before any request
    load_s = time.perf_counter() - load_started
    ours_dtype = dtype_name(worker.service.generator.cache.dtype)

    def job(i: int) -> dict[str, Any]:
        return {
            "id": f"bench-{i}",
            "input": {
                "prompt": PROMPT,
                "seed": i,
                "width": size,
                "height": size,
                "num_inference_steps": args.steps,
            },
        }

    check_output(worker.handle_sync(job(0)))  # warm-up of the single-job path
    # through the async handler, as the worker loop calls it (a lone job waits its window)
    single = measure_ours_concurrent(worker, job, n, 1)
    batched = BatchedCalls()
    batching_log = logging.getLogger("sdworker.gpu.generate")
    batching_log.addHandler(batched)
    if not batching_log.isEnabledFor(logging.INFO):
        batching_log.setLevel(logging.INFO)
    # one untimed round first: cuDNN picks its kernels for the batched shapes here when
    # preload's warm-up did not cover them (jobs never compile: uncovered shapes run eager)
    measure_ours_concurrent(worker, job, clients, clients)
    batched.reset()
    concurrent = measure_ours_concurrent(worker, job, n, clients)
    batching_log.removeHandler(batched)
    # what the weights are after the jobs, not only what was asked for at load
    unet = getattr(worker.service.generator.cache.get(args.model).base, "unet", None)
    ran_dtype = dtype_name(unet.dtype) if unet is not None else ours_dtype
    if ran_dtype != ours_dtype:
        ours_dtype = f"{ours_dtype} loaded, {ran_dtype} after jobs"
    rows.append(
        (
            f"sdworker ({ours_dtype}, batch {worker.batch_limit}"
            f"{', compiled' if args.compile else ''})",
            *single,
            *concurrent,
        )
    )

    print(
        f"{args.model} {size}x{size}, {args.steps} steps, {n} requests, {device}: "
        f"{device_name(device)}"
    )
    print(f"  sdworker load+optimise+warm-up: {load_s:.1f} s")
    wide = max(42, *(len(row[0]) for row in rows))
    print(
        f"  {'side':{wide}} {'1 client img/s':>14} {'p50 s':>7} {f'{clients} clients img/s':>17} {'p50 s':>7}"
    )
    for label, s_ips, s_lat, c_ips, c_lat in rows:
        print(f"  {label:{wide}} {s_ips:14.2f} {s_lat:7.2f} {c_ips:17.2f} {c_lat:7.2f}")
    per_call = batched.images / batched.calls if batched.calls else 0.0
    batching = (
        f"{batched.calls} batched calls, {per_call:.1f} images per call, "
        f"{batched.jobs} of {n} jobs batched"
    )
    print(f"  sdworker, {clients} clients: {batching}")
    if ran_dtype != dtype_name(worker.service.generator.cache.dtype):
        print(
            f"  WARNING: sdworker loaded the model in {dtype_name(worker.service.generator.cache.dtype)} "
            f"but its UNet was {ran_dtype} after the jobs: a job cast the shared modules"
        )
    ours = rows[-1]
    for label, s_ips, _, c_ips, _ in rows[:-1]:
        print(
            f"  ours / {label}: single {ours[1] / s_ips:.2f}x, {clients} clients {ours[3] / c_ips:.2f}x"
        )
    if not args.no_record:
        cells = "; ".join(
            f"{r[0]}: 1 client {r[1]:.2f} img/s p50 {r[2]:.2f} s, {clients} clients {r[3]:.2f} img/s p50 {r[4]:.2f} s"
            for r in rows
        )
        append_result(
            f"gpu ({args.model} {size}x{size}/{args.steps}, {device.type})",
            f"{cells}; ours {batching}",
            args.results,
        )


if __name__ == "__main__":
    main()
