"""Soak: ``sdworker serve`` with the real worker (tiny model) under mixed valid and invalid
jobs from many concurrent clients, with cancels and a worker SIGKILLed mid-run. Bounded in
count and time; reports jobs lost, duplicated results, 5xx answers, jobs not ended (all must
be 0) and the RSS of the server and its workers at start and end.

    PYTHONPATH=src python bench/soak.py [--jobs 60] [--clients 8] [--workers 2] [--duration 90]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from common import RESULTS, ROOT, append_result

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
VALID = {"prompt": "a lighthouse", "width": 64, "height": 64, "num_inference_steps": 2}


@dataclass
class Tally:
    """What the clients saw, shared between their threads."""

    accepted: list[str] = field(default_factory=list)
    finals: dict[str, dict[str, Any]] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    refused: int = 0
    server_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, r: httpx.Response) -> httpx.Response:
        if r.status_code >= 500:
            with self.lock:
                self.server_errors.append(f"{r.request.method} {r.url.path}: {r.status_code}")
        return r


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


def children(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (the worker processes of a server)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def start_server(models: Path, workers: int, state: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDWORKER_")}
    env.update(
        SDWORKER_STATE_DIR=str(state),
        SDWORKER_MODELS_DIR=str(models),
        SDWORKER_DEFAULT_MODEL="tiny",
        SDWORKER_WORKER_POLL_S="2",
        SDWORKER_SWEEP_INTERVAL_S="0.2",
        HF_HUB_OFFLINE="1",
        RUNPOD_LOG_LEVEL="ERROR",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    )
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "sdworker.server.cli", "--port", "0"),
            *("--log-level", "warning", "--workers", str(workers)),
            *("--handler", str(ROOT / "handler.py")),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=(state.parent / "server.log").open("w"),
        text=True,
    )
    assert proc.stdout is not None
    match = re.search(r"on (http://[\d.:]+/v2/\w+)", proc.stdout.readline())
    if match is None:
        proc.kill()
        raise SystemExit("the server did not start")
    return proc, match.group(1)


def wait_for_workers(url: str, count: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            workers = httpx.get(f"{url}/health", timeout=5).json()["workers"]
            if workers["idle"] + workers["running"] >= count:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{count} workers did not come up in {timeout_s} s")


def follow(client: httpx.Client, url: str, job_id: str, tally: Tally, until: float) -> None:
    """Poll a job until it ends; a 404 before that is a lost job."""
    while time.monotonic() < until:
        r = tally.answer(client.get(f"{url}/status/{job_id}"))
        if r.status_code == 404:
            with tally.lock:
                tally.lost.append(job_id)
            return
        body = r.json()
        if body.get("status") in TERMINAL:
            with tally.lock:
                tally.finals[job_id] = body
            return
        time.sleep(0.1)


def one_job(kind: str, url: str, tally: Tally, until: float) -> None:
    """Submit one job of ``kind`` and follow it to its end."""
    with httpx.Client(timeout=120) as client:
        if kind == "not-json":
            # an input no worker could answer: refused at the door, never queued
            raw = b'{"input": {"prompt": "x", "guidance_scale": NaN}}'
            r = tally.answer(client.post(f"{url}/run", content=raw))
            with tally.lock:
                tally.refused += r.status_code == 400
            return
        job_input = {"prompt": ""} if kind == "invalid" else dict(VALID)
        if kind == "cancel":
            job_input["num_inference_steps"] = 20
        route = "runsync?wait=60000" if kind == "sync" else "run"
        r = tally.answer(client.post(f"{url}/{route}", json={"input": job_input}))
        if r.status_code != 200:
            return
        job_id = r.json()["id"]
        with tally.lock:
            tally.accepted.append(job_id)
        if kind == "cancel":
            time.sleep(0.3)
            tally.answer(client.post(f"{url}/cancel/{job_id}"))
        follow(client, url, job_id, tally, until)


def kill_a_worker(
    server: subprocess.Popen[str],
    halfway: threading.Event,
    timeout_s: float,
    killed: list[int],
    log: Callable[[str], None],
) -> None:
    """SIGKILL one worker process once half the jobs are sent, while the rest are in flight
    (the supervisor restarts it); ``killed`` records the pid."""
    halfway.wait(timeout_s)
    workers = children(server.pid)
    if workers:
        os.kill(workers[0], signal.SIGKILL)
        killed.append(workers[0])
        log(f"killed worker pid {workers[0]} halfway through the jobs")


def summarize(tally: Tally, jobs: int, duration: float) -> tuple[dict[str, int], str]:
    ended = set(tally.finals)
    counts = {
        "lost": len(tally.lost),
        "duplicated": sum(n - 1 for n in Counter(tally.accepted).values())
        + sum(
            1
            for body in tally.finals.values()
            if isinstance(body.get("output"), list) and len(body["output"]) > 1
        ),
        "5xx": len(tally.server_errors),
        "not_ended": len([j for j in tally.accepted if j not in ended and j not in tally.lost]),
    }
    statuses = Counter(body["status"] for body in tally.finals.values())
    shown = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    line = (
        f"{jobs} jobs in {duration:.0f} s: accepted {len(tally.accepted)} ({shown}),"
        f" refused at the door {tally.refused}; lost {counts['lost']}, duplicated"
        f" {counts['duplicated']}, 5xx {counts['5xx']}, not ended {counts['not_ended']}"
    )
    return counts, line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=60, help="jobs to send (default 60)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--duration", type=float, default=90, help="seconds to send jobs for")
    parser.add_argument("--drain", type=float, default=120, help="seconds to let jobs end")
    parser.add_argument("--no-kill", action="store_true", help="do not kill a worker")
    parser.add_argument("--models-dir", type=Path, help="a models folder with 'tiny' baked")
    parser.add_argument("--results", type=Path, default=RESULTS, help="file to append a row to")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sdworker-soak-"))
    models = args.models_dir
    if models is None:
        from sdworker.builder.tiny import bake_tiny

        models = work / "models"
        bake_tiny(models, "tiny")
    server, url = start_server(models, args.workers, work / "state")
    try:
        wait_for_workers(url, args.workers)
        return soak(args, server, url)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


def soak(args: argparse.Namespace, server: subprocess.Popen[str], url: str) -> int:
    def memory() -> tuple[float, float]:
        return rss_mb(server.pid), sum(rss_mb(pid) for pid in children(server.pid))

    start_mem = memory()
    tally = Tally()
    kinds = itertools.cycle(["run", "sync", "run", "invalid", "not-json", "cancel", "run"])
    t0 = time.monotonic()
    send_until, until = t0 + args.duration, t0 + args.duration + args.drain
    halfway, killed = threading.Event(), list[int]()
    if not args.no_kill:
        killer = threading.Thread(
            target=kill_a_worker,
            args=(server, halfway, args.duration, killed, print),
            daemon=True,
        )
        killer.start()
    with ThreadPoolExecutor(args.clients) as pool:
        for index, kind in zip(range(args.jobs), kinds, strict=False):
            if time.monotonic() > send_until:
                break
            pool.submit(one_job, kind, url, tally, until)
            if index == args.jobs // 2:
                halfway.set()
                if not args.no_kill:
                    killer.join(30)  # the kill lands while the later half is in flight
    elapsed = time.monotonic() - t0
    end_mem = memory()
    counts, line = summarize(tally, args.jobs, elapsed)
    line += (
        f"; RSS server {start_mem[0]:.0f}->{end_mem[0]:.0f} MB,"
        f" workers {start_mem[1]:.0f}->{end_mem[1]:.0f} MB"
        f" ({args.workers} workers, {args.clients} clients, {len(killed)} killed)"
    )
    print(line)
    for error in tally.server_errors[:10]:
        print("5xx:", error)
    append_result("soak (tiny, CPU)", line, args.results)
    return 0 if not any(counts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
