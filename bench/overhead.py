"""Benchmark: one job through the handler (decode, validate, generate, encode) against a bare
diffusers call of the same pipeline with the same arguments. Tiny model, CPU by default.

    PYTHONPATH=src python bench/overhead.py [--runs 9] [--size 512] [--steps 20]

Runs alternate in ABBA order so a busy machine slows both alike; prints both medians
and the ratio (target: at most 1.05) and appends a row to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_result, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch
    from diffusers import AutoPipelineForText2Image
    from diffusers.utils import logging as dlogging

    from sdworker.builder.tiny import bake_tiny
    from sdworker.core.settings import Settings
    from sdworker.runpod.adapter import RunpodAdapter

    dlogging.set_verbosity_error()
    models = Path(tempfile.mkdtemp(prefix="sdworker-bench-"))
    bake_tiny(models, "tiny")
    worker = RunpodAdapter(Settings(models_dir=models, default_model="tiny"))
    job = {
        "id": "bench",
        "input": {
            "prompt": "a lighthouse at dusk",
            "seed": 7,
            "width": args.size,
            "height": args.size,
            "num_inference_steps": args.steps,
        },
    }
    bare = AutoPipelineForText2Image.from_pretrained(
        str(models / "tiny"), safety_checker=None, requires_safety_checker=False
    )
    bare.set_progress_bar_config(disable=True)

    def ours() -> None:
        out = worker.handle_sync(job)
        assert isinstance(out, list), out

    def plain() -> None:
        with torch.inference_mode():
            bare(
                prompt="a lighthouse at dusk",
                num_inference_steps=args.steps,
                width=args.size,
                height=args.size,
                generator=torch.Generator("cpu").manual_seed(7),
            ).images[0]

    ours()  # loads the model into the worker's cache, and warms both paths
    plain()
    times: dict[str, list[float]] = {"ours": [], "bare": []}
    pair = [("ours", ours), ("bare", plain)]
    for i in range(args.runs):
        # ABBA order: neither side always runs first after the other (caches, clocks, load)
        for name, fn in pair if i % 2 == 0 else pair[::-1]:
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    ours_s, bare_s = median(times["ours"]), median(times["bare"])
    ratio = ours_s / bare_s
    print(f"tiny model, {args.size}x{args.size}, {args.steps} steps, {args.runs} runs each")
    print(f"  handler (decode+validate+generate+encode) median {ours_s * 1000:8.1f} ms")
    print(f"  bare diffusers call                      median {bare_s * 1000:8.1f} ms")
    print(f"  ratio {ratio:.3f} (target <= 1.05)")
    if not args.no_record:
        append_result(
            "overhead (tiny, CPU)",
            f"{args.size}x{args.size}/{args.steps} steps, {args.runs} runs: handler "
            f"{ours_s * 1000:.0f} ms, bare {bare_s * 1000:.0f} ms, ratio {ratio:.3f}",
        )


if __name__ == "__main__":
    main()
