"""Benchmark on a CUDA GPU: plain diffusers against sdworker, full-size random-weights models.

    sdworker bake random-sd15 && sdworker bake random-sdxl      # into SDWORKER_MODELS_DIR
    PYTHONPATH=src python bench/gpu.py --model random-sd15 [--size 512] [--steps 25]
    PYTHONPATH=src python bench/gpu.py --model random-sdxl --size 1024 [--compile]

For each side: single requests one after another (latency, images/s) and ``--clients``
concurrent clients (images/s, latency). Plain diffusers is measured with its defaults (fp32)
and in fp16 (how its docs run it); concurrent clients share one pipeline behind a lock, as a
plain one-job-at-a-time worker serves them. Ours is the worker (``Worker.handle``), with its
settings from the environment, with cross-request batching on (``SDWORKER_BATCH_MAX``,
default here 8: batching is opt-in in the worker). Prints a table and the
ratios, and appends rows to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_result, median

PROMPT = "a photograph of an astronaut riding a horse"


def measure_single(run: Callable[[int], None], n: int) -> tuple[float, float]:
    """(images/s, median latency s) for ``n`` requests one after another."""
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        run(i)
        latencies.append(time.perf_counter() - t)
    return n / (time.perf_counter() - started), median(latencies)


def measure_plain_concurrent(
    run: Callable[[int], None], n: int, clients: int
) -> tuple[float, float]:
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


def measure_ours_concurrent(
    worker: Any, job: Callable[[int], dict[str, Any]], n: int, clients: int
) -> tuple[float, float]:
    latencies: list[float] = []

    async def client(c: int) -> None:
        for i in range(c, n, clients):
            t = time.perf_counter()
            out = await worker.handle(job(i))
            assert isinstance(out, list), out
            latencies.append(time.perf_counter() - t)

    async def main() -> None:
        await asyncio.gather(*(client(c) for c in range(clients)))

    started = time.perf_counter()
    asyncio.run(main())
    return n / (time.perf_counter() - started), median(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random-sd15", help="a baked model's name")
    parser.add_argument(
        "--models-dir", type=Path, default=Path(os.environ.get("SDWORKER_MODELS_DIR", "models"))
    )
    parser.add_argument("--size", type=int, help="default: 512 (SD 1.5), 1024 (SDXL)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--requests", type=int, default=16, help="per measurement")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="also SDWORKER_COMPILE=1 for ours")
    parser.add_argument("--skip-fp32", action="store_true", help="skip plain diffusers in fp32")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "bench/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); "
            "run bench/overhead.py and bench/coldstart.py on a CPU"
        )
    path = args.models_dir / args.model
    if not (path / "model_index.json").exists():
        raise SystemExit(
            f"no baked model at {path}: run `SDWORKER_MODELS_DIR={args.models_dir} "
            f"sdworker bake {args.model}` first"
        )
    from diffusers import AutoPipelineForText2Image

    from sdworker.batching import GPU_BATCH_MAX
    from sdworker.handler import Worker
    from sdworker.settings import Settings

    size = args.size or (1024 if "xl" in args.model else 512)
    n, clients = args.requests, args.clients
    rows: list[tuple[str, float, float, float, float]] = []

    def plain_side(dtype: torch.dtype, label: str) -> None:
        pipe = AutoPipelineForText2Image.from_pretrained(str(path), torch_dtype=dtype).to("cuda")
        pipe.set_progress_bar_config(disable=True)

        def run(i: int) -> None:
            pipe(
                PROMPT,
                num_inference_steps=args.steps,
                width=size,
                height=size,
                generator=torch.Generator("cpu").manual_seed(i),
            ).images[0]

        run(0)  # warm-up
        single = measure_single(run, n)
        torch.cuda.synchronize()
        concurrent = measure_plain_concurrent(run, n, clients)
        rows.append((label, *single, *concurrent))

    def release() -> None:
        import gc

        gc.collect()  # the plain pipeline goes before ours loads
        torch.cuda.empty_cache()

    if not args.skip_fp32:
        plain_side(torch.float32, "diffusers defaults (fp32)")
        release()
    plain_side(torch.float16, "diffusers fp16")
    release()

    settings = Settings.from_env(
        models_dir=args.models_dir,
        default_model=args.model,
        batch_max=int(os.environ.get("SDWORKER_BATCH_MAX", GPU_BATCH_MAX)),
        **({"compile": True} if args.compile else {}),
    )
    worker = Worker(settings)
    load_started = time.perf_counter()
    worker.preload()  # load, optimise, warm up (compile when asked): before any request
    load_s = time.perf_counter() - load_started

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

    def ours_run(i: int) -> None:
        out = worker.handle_sync(job(i))
        assert isinstance(out, list), out

    ours_run(0)
    # through the async handler, as the worker loop calls it (a lone job waits its window)
    single = measure_ours_concurrent(worker, job, n, 1)
    concurrent = measure_ours_concurrent(worker, job, n, clients)
    rows.append(
        (
            f"sdworker (batch {worker.batch_limit()}{', compiled' if args.compile else ''})",
            *single,
            *concurrent,
        )
    )

    print(
        f"{args.model} {size}x{size}, {args.steps} steps, {n} requests, {torch.cuda.get_device_name(0)}"
    )
    print(f"  sdworker load+optimise+warm-up: {load_s:.1f} s")
    print(
        f"  {'side':42} {'1 client img/s':>14} {'p50 s':>7} {f'{clients} clients img/s':>17} {'p50 s':>7}"
    )
    for label, s_ips, s_lat, c_ips, c_lat in rows:
        print(f"  {label:42} {s_ips:14.2f} {s_lat:7.2f} {c_ips:17.2f} {c_lat:7.2f}")
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
        append_result(f"gpu ({args.model} {size}x{size}/{args.steps})", cells)


if __name__ == "__main__":
    main()
