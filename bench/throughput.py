"""Benchmark: N queued jobs through ``sdworker serve`` (one worker, the real handler, the tiny
model): how busy the device stays, with and without prefetch, against bare diffusers.

    PYTHONPATH=src python bench/throughput.py [--jobs 20] [--prefetch 2,auto,0] \\
        [--shapes 64x1,256x10] [--model-dir DIR]

For each prefetch value (``auto``: enough waiting jobs to cover the SDK's one-second fetch
pause, from the bare time per job) it starts a server, warms it up, queues ``--jobs`` jobs per
shape (SIDExSTEPS) at once, and reads the worker's ``device run:`` log lines
(:mod:`sdworker.runpod.timing`) to print: jobs/s (first submit to last result), busy/wall (the
handler's device time over the span from the first job's start to the last one's end), and the
idle gap between consecutive jobs (p50, p99). Bare diffusers runs the same jobs in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, append_result

from sdworker.runpod.timing import idle_gaps, parse

#: the SDK's fetch loop sleeps this long when the worker holds its concurrency (rp_scale.py)
SDK_TICK_S = 1.0


@dataclass(frozen=True)
class Shape:
    side: int
    steps: int

    @property
    def label(self) -> str:
        return f"{self.side}x{self.side}/{self.steps} steps"

    def job(self, i: int) -> dict[str, object]:
        return {
            "prompt": f"a lighthouse at dusk, take {i}",
            "seed": 1000 + i,
            "width": self.side,
            "height": self.side,
            "num_inference_steps": self.steps,
        }


@dataclass(frozen=True)
class Row:
    prefetch: str
    shape: Shape
    jobs_per_s: float
    busy_ratio: float
    gap_p50_ms: float
    gap_p99_ms: float
    device_ms: float

    def line(self) -> str:
        return (
            f"{self.prefetch:>9} {self.shape.label:>18} {self.jobs_per_s:8.2f} "
            f"{self.busy_ratio:10.3f} {self.gap_p50_ms:9.1f} {self.gap_p99_ms:9.1f} "
            f"{self.device_ms:10.1f}"
        )


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bare_per_job(models: Path, shapes: list[Shape], jobs: int) -> dict[Shape, float]:
    """Seconds per job of a plain diffusers call, same model and arguments, in this process."""
    import torch
    from diffusers import AutoPipelineForText2Image
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()
    pipe = AutoPipelineForText2Image.from_pretrained(
        str(models / "tiny"), safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    out = {}
    for shape in shapes:
        times = []
        for i in range(jobs + 1):  # the first warms up
            job = shape.job(i)
            started = time.perf_counter()
            with torch.inference_mode():
                pipe(
                    prompt=str(job["prompt"]),
                    num_inference_steps=shape.steps,
                    width=shape.side,
                    height=shape.side,
                    generator=torch.Generator("cpu").manual_seed(1000 + i),
                ).images[0]
            times.append(time.perf_counter() - started)
        out[shape] = sum(times[1:]) / jobs
    return out


class Endpoint:
    """``sdworker serve`` with one worker running ``handler.py``; all output into one log."""

    def __init__(self, models: Path, prefetch: int, work: Path) -> None:
        self.log = work / f"serve-prefetch-{prefetch}.log"
        env = {
            **os.environ,
            "SDWORKER_MODELS_DIR": str(models),
            "SDWORKER_DEFAULT_MODEL": "tiny",
            "SDWORKER_PREFETCH": str(prefetch),
            "SDWORKER_STATE_DIR": str(work / f"state-{prefetch}"),
            "RUNPOD_LOG_LEVEL": "WARN",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        }
        out = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "sdworker.server.cli", "--port", "0"),
                *("--log-level", "warning", "--workers", "1"),
                *("--handler", str(ROOT / "handler.py")),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.url = self._wait_url()

    def _wait_url(self, timeout_s: float = 120) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(r"on (http://[\d.:]+/v2/\w+)", self.log.read_text())
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"sdworker serve did not start:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def run_queued(url: str, shape: Shape, jobs: int) -> tuple[list[str], float]:
    """Queue ``jobs`` jobs at once; wait for all. Returns their ids and jobs/s."""
    async with httpx.AsyncClient(timeout=120) as http:
        started = time.perf_counter()
        replies = await asyncio.gather(
            *(http.post(f"{url}/run", json={"input": shape.job(i)}) for i in range(jobs))
        )
        ids = [r.json()["id"] for r in replies]
        pending = list(ids)
        while pending:
            status = (await http.get(f"{url}/status/{pending[-1]}")).json()["status"]
            if status in ("FAILED", "CANCELLED", "TIMED_OUT"):
                raise SystemExit(f"job {pending[-1]} {status}")
            if status == "COMPLETED":
                pending.pop()
            else:
                await asyncio.sleep(0.01)
        return ids, jobs / (time.perf_counter() - started)


def measure(endpoint: Endpoint, label: str, shape: Shape, jobs: int) -> Row:
    # a warm-up job of this shape first: the model load and first-call costs are not queueing
    httpx.post(f"{endpoint.url}/runsync", json={"input": shape.job(-1)}, timeout=300)
    ids, rate = asyncio.run(run_queued(endpoint.url, shape, jobs))
    wanted = set(ids)
    runs = [r for r in parse(endpoint.log.read_text()) if wanted.intersection(r.jobs)]
    if sum(len(r.jobs) for r in runs) != jobs:
        raise SystemExit(f"expected {jobs} device runs in {endpoint.log}, found {len(runs)}")
    busy = sum(r.seconds for r in runs)
    span = max(r.end for r in runs) - min(r.start for r in runs)
    gaps = idle_gaps(runs)
    return Row(
        label,
        shape,
        rate,
        busy / span,
        pct(gaps, 0.5) * 1000,
        pct(gaps, 0.99) * 1000,
        busy / len(runs) * 1000,
    )


def prefetch_values(spec: str, shape: Shape, bare: dict[Shape, float], jobs: int) -> list[int]:
    values = []
    for item in spec.split(","):
        if item.strip() == "auto":
            # waiting jobs enough to outlast the SDK's pause plus a fetch
            values.append(min(jobs, math.ceil(1.2 * SDK_TICK_S / bare[shape])))
        else:
            values.append(int(item))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--prefetch", default="2,auto,0", help="values to compare (auto: sized)")
    parser.add_argument("--shapes", default="64x1,256x10", help="SIDExSTEPS,...")
    parser.add_argument("--bare-jobs", type=int, default=5, help="bare diffusers jobs per shape")
    parser.add_argument("--model-dir", type=Path, help="a models folder with tiny (default: bake)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    shapes = [Shape(*map(int, s.split("x"))) for s in args.shapes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="sdworker-throughput-"))
    models = args.model_dir
    if models is None:
        from sdworker.builder.tiny import bake_tiny

        models = work / "models"
        bake_tiny(models, "tiny")
    bare = bare_per_job(models, shapes, args.bare_jobs)
    plan: dict[int, list[Shape]] = {}
    for shape in shapes:
        for value in prefetch_values(args.prefetch, shape, bare, args.jobs):
            plan.setdefault(value, []).append(shape)
    rows = []
    for value, its_shapes in plan.items():
        endpoint = Endpoint(models, value, work)
        try:
            rows += [measure(endpoint, str(value), s, args.jobs) for s in its_shapes]
        finally:
            endpoint.stop()
    report(rows, bare, args.jobs, args.no_record)


def report(rows: list[Row], bare: dict[Shape, float], jobs: int, no_record: bool) -> None:
    print(f"{jobs} queued jobs, one worker, tiny model; gaps between consecutive device runs")
    print(
        f"{'prefetch':>9} {'shape':>18} {'jobs/s':>8} {'busy/wall':>10} {'gap p50':>9}"
        f" {'gap p99':>9} {'ms/job':>10}"
    )
    for row in sorted(rows, key=lambda r: (r.shape.side, -int(r.prefetch))):
        print(row.line())
    for shape, seconds in bare.items():
        print(
            f"{'bare':>9} {shape.label:>18} {1 / seconds:8.2f} {'':>10} {'':>9} {'':>9}"
            f" {seconds * 1000:10.1f}"
        )
    if no_record:
        return
    for shape in bare:
        parts = [
            f"prefetch {r.prefetch}: {r.jobs_per_s:.2f} jobs/s, busy {r.busy_ratio:.3f}, "
            f"gap p50 {r.gap_p50_ms:.1f} ms p99 {r.gap_p99_ms:.1f} ms"
            for r in rows
            if r.shape == shape
        ]
        append_result(
            "throughput (tiny, 1 worker)",
            f"{jobs} queued {shape.label}: "
            + "; ".join(parts)
            + f"; bare diffusers {1 / bare[shape]:.2f} jobs/s ({bare[shape] * 1000:.0f} ms/job)",
        )


if __name__ == "__main__":
    main()
