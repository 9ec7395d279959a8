"""Soak: ``sdworker serve`` with the real handler (tiny model, 64x64, 2 steps) under load.

Many concurrent clients send a mix of jobs: valid ones (``/run`` polled, and ``/runsync``),
invalid ones (refused by the worker's validation), inputs refused at the door (NaN), jobs
cancelled while queued or running, and jobs with a webhook to a local receiver. One worker is
SIGKILLed once half the jobs are sent. It reports (all must be 0): jobs lost (a 404 before
their end), duplicated (an id twice, a webhook delivered twice, an output doubled), 5xx
answers, jobs not ended; every webhook job's delivery, exactly once; p50 and p99 of the queue
delay and of the total time; the RSS of the server and of each worker at start and end.

Every job runs the real handler, so the worker's whole path (validation, the pipeline, the
SDK's worker loop, the result post) is under load; the tiny model at 64x64 keeps 1,000 jobs
to a few minutes on two cores. Bounded in jobs and in time (``--duration``, ``--drain``).

    PYTHONPATH=src python bench/soak.py [--jobs 1000] [--clients 50] [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from common import RESULTS, ROOT, append_result

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
VALID = {"prompt": "a lighthouse", "width": 64, "height": 64, "num_inference_steps": 2}
#: one round of the mix: what each kind of job is, in the proportions sent
MIX = [
    "run",
    "webhook",
    "sync",
    "run",
    "invalid",
    "webhook-invalid",
    "not-json",
    "cancel",
    "webhook-cancel",
    "cancel-queued",
]
POLL_S = 0.25
#: the longest the second half of the jobs waits for the kill
KILL_WAIT_S = 60.0


@dataclass
class Tally:
    """What the clients saw, shared between their threads."""

    accepted: list[str] = field(default_factory=list)
    finals: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: job id -> seconds from its submission to the client seeing it end
    seen_after: dict[str, float] = field(default_factory=dict)
    with_webhook: set[str] = field(default_factory=set)
    lost: list[str] = field(default_factory=list)
    refused: int = 0
    server_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: jobs sent so far, and the event set when half of them are (the worker is killed then)
    sent: int = 0
    half: int = 0
    halfway: threading.Event = field(default_factory=threading.Event)
    #: set once the kill is over (or when there is none): the second half waits for it, so
    #: the kill lands among the jobs however fast a machine answers the first half
    kill_over: threading.Event = field(default_factory=threading.Event)

    def sending(self) -> None:
        with self.lock:
            self.sent += 1
            sent = self.sent
            if sent >= self.half:
                self.halfway.set()
        if sent > self.half:
            self.kill_over.wait(KILL_WAIT_S)

    def answer(self, r: httpx.Response) -> httpx.Response:
        if r.status_code >= 500:
            with self.lock:
                self.server_errors.append(f"{r.request.method} {r.url.path}: {r.status_code}")
        return r


class Receiver(ThreadingHTTPServer):
    """The webhook receiver: counts the deliveries of each job id."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.deliveries: Counter[str] = Counter()
        self.statuses: dict[str, str] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.server.lock:
            self.server.deliveries[str(body.get("id"))] += 1
            self.server.statuses[str(body.get("id"))] = str(body.get("status"))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


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
    return sorted(found)


def start_server(models: Path, workers: int, state: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDWORKER_")}
    env.update(
        SDWORKER_STATE_DIR=str(state),
        SDWORKER_MODELS_DIR=str(models),
        SDWORKER_DEFAULT_MODEL="tiny",
        SDWORKER_WORKER_POLL_S="2",
        SDWORKER_SWEEP_INTERVAL_S="0.2",
        # the receiver is on loopback; a retry comes a second later, not ten
        SDWORKER_ALLOW_PRIVATE_URLS="true",
        SDWORKER_WEBHOOK_INTERVAL_S="1",
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


def wait_for_workers(url: str, count: int, timeout_s: float = 300) -> None:
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


def follow(
    client: httpx.Client, url: str, job_id: str, tally: Tally, sent: float, until: float
) -> None:
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
                tally.seen_after[job_id] = time.monotonic() - sent
            return
        time.sleep(POLL_S)


def one_job(kind: str, url: str, hook: str, tally: Tally, send_until: float, until: float) -> None:
    """Submit one job of ``kind`` (unless sending is over) and follow it to its end."""
    if time.monotonic() > send_until:
        return
    tally.sending()
    with httpx.Client(timeout=120) as client:
        if kind == "not-json":
            # an input no worker could answer: refused at the door, never queued
            raw = b'{"input": {"prompt": "x", "guidance_scale": NaN}}'
            r = tally.answer(client.post(f"{url}/run", content=raw))
            with tally.lock:
                tally.refused += r.status_code == 400
            return
        job_input: dict[str, Any] = {"prompt": ""} if "invalid" in kind else dict(VALID)
        if "cancel" in kind:
            job_input["num_inference_steps"] = 20
        body: dict[str, Any] = {"input": job_input}
        if kind.startswith("webhook"):
            body["webhook"] = hook
        route = "runsync?wait=60000" if kind == "sync" else "run"
        sent = time.monotonic()
        r = tally.answer(client.post(f"{url}/{route}", json=body))
        if r.status_code != 200:
            return
        job_id = r.json()["id"]
        with tally.lock:
            tally.accepted.append(job_id)
            if "webhook" in body:
                tally.with_webhook.add(job_id)
        if kind == "cancel-queued":
            tally.answer(client.post(f"{url}/cancel/{job_id}"))
        elif "cancel" in kind:
            # once it runs: a cancel that has to reach the worker's stop channel
            while time.monotonic() < until:
                r = tally.answer(client.get(f"{url}/status/{job_id}"))
                if r.status_code != 200 or r.json().get("status") != "IN_QUEUE":
                    break
                time.sleep(POLL_S)
            tally.answer(client.post(f"{url}/cancel/{job_id}"))
        follow(client, url, job_id, tally, sent, until)


def kill_a_worker(
    server: subprocess.Popen[str],
    url: str,
    halfway: threading.Event,
    timeout_s: float,
    killed: list[int],
    log: Callable[[str], None],
    over: threading.Event,
) -> None:
    """SIGKILL one worker process once half the jobs are sent, at a moment every worker holds
    a job (the SDK leaves a worker empty for up to a second between its takes), so the kill
    loses work in flight (the supervisor restarts it); ``killed`` records the pid, and ``over``
    is set once it is done, whatever happened."""
    try:
        halfway.wait(timeout_s)
        count = len(children(server.pid))
        deadline = time.monotonic() + KILL_WAIT_S / 2
        while time.monotonic() < deadline:
            if httpx.get(f"{url}/health", timeout=30).json()["workers"]["running"] >= count:
                break
            time.sleep(0.02)
        workers = children(server.pid)
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])
            log(f"killed worker pid {workers[0]} halfway through the jobs")
    finally:
        over.set()


def wait_webhooks(receiver: Receiver, tally: Tally, timeout_s: float) -> None:
    """Until every ended webhook job has had its delivery (or ``timeout_s``), then a moment
    more: a duplicate would arrive after the first."""
    ended = tally.with_webhook & set(tally.finals)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with receiver.lock:
            if ended <= set(receiver.deliveries):
                break
        time.sleep(0.2)
    time.sleep(3.0)


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "none"
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.2f} s, p99 {p99:.2f} s"


def summarize(
    tally: Tally, receiver: Receiver, jobs: int, duration: float
) -> tuple[dict[str, int], str]:
    ended = set(tally.finals)
    hooked = tally.with_webhook & ended
    delivered = receiver.deliveries
    counts = {
        "lost": len(tally.lost),
        "duplicated": sum(n - 1 for n in Counter(tally.accepted).values())
        + sum(n - 1 for n in delivered.values())
        + sum(
            1
            for body in tally.finals.values()
            if isinstance(body.get("output"), list) and len(body["output"]) > 1
        ),
        "5xx": len(tally.server_errors),
        "not_ended": len([j for j in tally.accepted if j not in ended and j not in tally.lost]),
        "webhooks_missing": len([j for j in hooked if delivered[j] == 0]),
        "webhooks_unasked": len([j for j in delivered if j not in tally.with_webhook]),
    }
    statuses = Counter(body["status"] for body in tally.finals.values())
    shown = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    completed = [b for b in tally.finals.values() if b["status"] == "COMPLETED"]
    delays = [b["delayTime"] / 1000 for b in completed if "delayTime" in b]
    totals = [(b.get("delayTime", 0) + b.get("executionTime", 0)) / 1000 for b in completed]
    seen = [tally.seen_after[b["id"]] for b in completed if b["id"] in tally.seen_after]
    exactly_once = len([j for j in hooked if delivered[j] == 1])
    line = (
        f"{jobs} jobs in {duration:.0f} s: accepted {len(tally.accepted)} ({shown}),"
        f" refused at the door {tally.refused}; lost {counts['lost']}, duplicated"
        f" {counts['duplicated']}, 5xx {counts['5xx']}, not ended {counts['not_ended']};"
        f" webhooks delivered exactly once {exactly_once}/{len(hooked)}"
        f" (missing {counts['webhooks_missing']}, unasked {counts['webhooks_unasked']});"
        f" completed jobs: queue delay {percentiles(delays)}, total (server) {percentiles(totals)},"
        f" total (client, polled every {POLL_S:g} s) {percentiles(seen)}"
    )
    return counts, line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs to send (default 1000)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (50)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--duration", type=float, default=600, help="seconds to send jobs for")
    parser.add_argument("--drain", type=float, default=300, help="seconds to let jobs end")
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
    (work / "state").mkdir()
    server, url = start_server(models, args.workers, work / "state")
    receiver = Receiver()
    try:
        wait_for_workers(url, args.workers)
        return soak(args, server, url, receiver)
    finally:
        receiver.shutdown()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


def memory(server: subprocess.Popen[str]) -> tuple[float, list[float]]:
    """RSS of the server and of each of its worker processes, in MB."""
    return rss_mb(server.pid), [rss_mb(pid) for pid in children(server.pid)]


def warm_up(url: str, workers: int) -> None:
    """A few jobs at once, so that every worker has loaded the model before memory is read."""
    with ThreadPoolExecutor(workers * 2) as pool:
        for _ in range(workers * 2):
            pool.submit(httpx.post, f"{url}/runsync", json={"input": VALID}, timeout=300)


def soak(
    args: argparse.Namespace, server: subprocess.Popen[str], url: str, receiver: Receiver
) -> int:
    warm_up(url, args.workers)
    start_mem = memory(server)
    tally = Tally(half=max(1, args.jobs // 2))
    t0 = time.monotonic()
    send_until, until = t0 + args.duration, t0 + args.duration + args.drain
    killed: list[int] = []
    killer = threading.Thread(
        target=kill_a_worker,
        args=(server, url, tally.halfway, args.duration, killed, print, tally.kill_over),
        daemon=True,
    )
    if args.no_kill:
        tally.kill_over.set()
    else:
        killer.start()
    # each client takes the next job when its last one has ended: clients-many in flight
    with ThreadPoolExecutor(args.clients) as pool:
        for kind in itertools.islice(itertools.cycle(MIX), args.jobs):
            pool.submit(one_job, kind, url, receiver.url, tally, send_until, until)
    elapsed = time.monotonic() - t0
    if not args.no_kill:
        killer.join(KILL_WAIT_S)
    wait_webhooks(receiver, tally, timeout_s=60)
    wait_for_workers(url, args.workers, timeout_s=120)  # the killed one was replaced
    end_mem = memory(server)
    retried = httpx.get(f"{url}/health", timeout=30).json()["jobs"]["retried"]
    counts, line = summarize(tally, receiver, args.jobs, elapsed)
    line += (
        f"; retried after the kill {retried}"
        f"; RSS (after a warm-up) server {start_mem[0]:.0f}->{end_mem[0]:.0f} MB,"
        f" workers {_mbs(start_mem[1])}->{_mbs(end_mem[1])} MB"
        f" ({args.workers} workers, {args.clients} clients, {len(killed)} killed)"
    )
    print(line)
    for error in tally.server_errors[:10]:
        print("5xx:", error)
    append_result("soak (tiny, CPU)", line, args.results)
    return 0 if not any(counts.values()) else 1


def _mbs(values: list[float]) -> str:
    return "+".join(f"{v:.0f}" for v in values) or "none"


if __name__ == "__main__":
    sys.exit(main())
