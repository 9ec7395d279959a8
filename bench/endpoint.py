"""Benchmark: the same no-op handler behind ``sdworker serve`` and behind the runpod SDK's
``--rp_serve_api`` test server. Prints /runsync p50/p99 and jobs/s for both, side by side,
our /run + /status round trip, and the ratios; and splits our /runsync round trip into the
endpoint's own part (submit to take, result to reply) and the worker's part (take to result:
the SDK's run loop picks up a fetched job on its next 0.1 s tick; the handler is a no-op), from
the ``delayTime`` and ``executionTime`` of each reply.

    PYTHONPATH=src python bench/endpoint.py [--requests 200] [--clients 8] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HANDLER = ROOT / "tests" / "fixtures" / "handlers" / "echo.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def start_ours(workers: int, state: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "SDWORKER_STATE_DIR": str(state), "RUNPOD_LOG_LEVEL": "ERROR"}
    # the SDK's worker loop sleeps 1 s whenever a worker is at its concurrency limit; a high
    # limit keeps that pause out of a measurement of the endpoint
    env.setdefault("FIXTURE_CONCURRENCY", "64")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "sdworker.server.cli", "--port", "0"),
            *("--log-level", "warning", "--workers", str(workers), "--handler", str(HANDLER)),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    match = re.search(r"on (http://[\d.:]+)/v2/", proc.stdout.readline())
    deadline = time.monotonic() + 60
    while match and idle_workers(f"{match.group(1)}/v2/local") < workers:
        if time.monotonic() > deadline:
            match = None
        time.sleep(0.1)
    if not match:
        proc.terminate()  # its supervisor stops the workers it started
        proc.wait(15)
        raise SystemExit("sdworker serve or its workers did not come up")
    return proc, f"{match.group(1)}/v2/local"


def idle_workers(url: str) -> int:
    """Idle workers by /health; 0 while the server is not listening yet (it prints its URL
    when the socket is bound, a moment before it accepts)."""
    try:
        return int(httpx.get(f"{url}/health").json()["workers"]["idle"])
    except httpx.HTTPError:
        return 0


def start_sdk() -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {**os.environ, "RUNPOD_LOG_LEVEL": "ERROR", "UVICORN_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [
            *(sys.executable, str(HANDLER), "--rp_serve_api", "--rp_api_host", "127.0.0.1"),
            *("--rp_api_port", str(port), "--rp_log_level", "ERROR"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/")
    return proc, url


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


async def runsync_latency(
    url: str, n: int, parts: list[tuple[float, float]] | None = None
) -> list[float]:
    """Round trips of ``n`` sequential /runsync calls; ``parts`` collects each reply's
    (delayTime, executionTime) in seconds where the server reports them."""
    out = []
    async with httpx.AsyncClient(timeout=60) as http:
        for i in range(n):
            t0 = time.perf_counter()
            r = await http.post(f"{url}/runsync", json={"input": {"i": i}})
            out.append(time.perf_counter() - t0)
            body = r.json()
            assert body["status"] == "COMPLETED", r.text
            if parts is not None and "executionTime" in body:
                parts.append((body.get("delayTime", 0) / 1000, body["executionTime"] / 1000))
    return out


def split_report(lat: list[float], parts: list[tuple[float, float]]) -> None:
    """Which part of our /runsync round trip is the endpoint's and which the worker loop's."""
    worker = [execution for _, execution in parts]
    ours = [total - execution for total, (_, execution) in zip(lat, parts, strict=True)]
    delay = [d for d, _ in parts]
    print("sdworker /runsync split (p50 / p99 ms):")
    print(
        f"  endpoint (HTTP in, queue, take; result in, reply)  {pct(ours, 0.5):7.2f}"
        f" / {pct(ours, 0.99):7.2f}  (of which submit -> taken {pct(delay, 0.5):.2f} ms)"
    )
    print(
        f"  worker loop (taken -> result posted)               {pct(worker, 0.5):7.2f}"
        f" / {pct(worker, 0.99):7.2f}  (the SDK's run loop looks for fetched jobs every"
        " 100 ms; the no-op handler takes ~0)"
    )


async def runsync_throughput(url: str, n: int, clients: int) -> float:
    counter = iter(range(n))

    async def client(http: httpx.AsyncClient) -> None:
        for i in counter:
            r = await http.post(f"{url}/runsync", json={"input": {"i": i}})
            assert r.json()["status"] == "COMPLETED", r.text

    async with httpx.AsyncClient(timeout=120) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return n / (time.perf_counter() - t0)


async def run_status_latency(url: str, n: int, poll_s: float) -> list[float]:
    out = []
    async with httpx.AsyncClient(timeout=60) as http:
        for i in range(n):
            t0 = time.perf_counter()
            job_id = (await http.post(f"{url}/run", json={"input": {"i": i}})).json()["id"]
            while (await http.get(f"{url}/status/{job_id}")).json()["status"] != "COMPLETED":
                await asyncio.sleep(poll_s)
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--poll-ms", type=float, default=5.0)
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    parts: list[tuple[float, float]] = []
    ours_lat: list[float] = []
    with tempfile.TemporaryDirectory() as state:
        ours, ours_url = start_ours(args.workers, Path(state))
        sdk, sdk_url = start_sdk()
        try:
            for name, url in (("sdworker", ours_url), ("runpod --rp_serve_api", sdk_url)):
                asyncio.run(runsync_latency(url, 10))  # warm up
                mine = parts if url == ours_url else None
                lat = asyncio.run(runsync_latency(url, args.requests, mine))
                if mine is not None:
                    ours_lat = lat
                tput = asyncio.run(runsync_throughput(url, args.requests, args.clients))
                results[name] = {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "jobs/s": tput}
            rs = asyncio.run(run_status_latency(ours_url, args.requests, args.poll_ms / 1000))
        finally:
            for proc in (ours, sdk):
                proc.terminate()
                proc.wait(15)

    print(
        f"/runsync, no-op handler, {args.requests} requests; throughput with {args.clients} clients"
    )
    print(f"{'server':<24}{'p50 ms':>10}{'p99 ms':>10}{'jobs/s':>10}")
    for name, r in results.items():
        print(f"{name:<24}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['jobs/s']:>10.1f}")
    ours_r, sdk_r = results["sdworker"], results["runpod --rp_serve_api"]
    print(
        f"ratio sdworker/sdk: p50 x{ours_r['p50'] / sdk_r['p50']:.2f},"
        f" p99 x{ours_r['p99'] / sdk_r['p99']:.2f}, jobs/s x{ours_r['jobs/s'] / sdk_r['jobs/s']:.2f}"
    )
    split_report(ours_lat, parts)
    print(
        f"sdworker /run + /status (poll every {args.poll_ms:g} ms): p50 {pct(rs, 0.5):.2f} ms,"
        f" p99 {pct(rs, 0.99):.2f} ms, mean {statistics.mean(rs) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
