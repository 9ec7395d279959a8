"""The real runpod worker loop (``sdworker worker``) against a small loopback job server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest


class JobServer(ThreadingHTTPServer):
    """Hands out queued jobs on job-take and records what job-done receives; ``all_done`` is
    set when every job has its result."""

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.jobs = list(jobs)
        self.expected = len(jobs)
        self.results: dict[str, dict[str, Any]] = {}
        self.progress: dict[str, list[Any]] = {}
        self.lock = threading.Lock()
        self.all_done = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: JobServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if path.startswith(("/job-take/", "/job-take-batch/")):
            # with prefetch the worker asks for several jobs at once (job-take-batch: a list)
            batch = path.startswith("/job-take-batch/")
            with self.server.lock:
                job = self.server.jobs.pop(0) if self.server.jobs else None
            if job is None:
                # held a moment, as the endpoint's long poll is: an idle worker does not spin
                # beside the one generating
                self.server.all_done.wait(1.0)
                self._reply(204)
            else:
                self._reply(200, [job] if batch else job)
        else:  # the stop channel: nothing to stop
            self.server.all_done.wait(1.0)
            self._reply(204)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        job_id = urlparse(self.path).path.rstrip("/").split("/")[-1]
        with self.server.lock:
            if body.get("status") == "IN_PROGRESS":
                self.server.progress.setdefault(job_id, []).append(body["output"])
            else:
                self.server.results[job_id] = body
                if len(self.server.results) >= self.server.expected:
                    self.server.all_done.set()
        self._reply(200, {})

    def _reply(self, code: int, payload: Any = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(code)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def job_server() -> Iterator[JobServer]:
    small = {"width": 64, "height": 64, "num_inference_steps": 3, "seed": 3}
    server = JobServer(
        [
            {"id": "good-1", "input": {"prompt": "a red barn", **small}},
            {"id": "bad", "input": {"prompt": "a red barn", "width": 500, "num_images": 12}},
            {"id": "good-2", "input": {"prompt": "a red barn", **small, "num_images": 2}},
        ]
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_worker_loop_runs_jobs_and_survives_a_failing_one(
    job_server: JobServer, worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(worker_env)
    env.update(
        RUNPOD_WEBHOOK_GET_JOB=f"{job_server.url}/job-take/$ID?token=t",
        RUNPOD_WEBHOOK_POST_OUTPUT=f"{job_server.url}/job-done/$RUNPOD_POD_ID/$ID?token=t",
        RUNPOD_WEBHOOK_POST_STREAM=f"{job_server.url}/job-stream/$RUNPOD_POD_ID/$ID?token=t",
        RUNPOD_POD_ID="worker-test",
        SDWORKER_PROGRESS_INTERVAL_S="0",
    )
    # to a file, never an unread pipe: a full pipe would stall the worker's every log line
    log = tmp_path / "worker.log"
    # cwd without test_input.json, so the SDK takes jobs rather than running the local test
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sdworker", "worker"],  # the Docker image's `sdworker worker`
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # ends when the last result arrives; generous, for a busy machine (two suites on two
        # cores took 204 s here, 18 s alone), and under pytest's own 600 s
        deadline = time.monotonic() + 540
        while not job_server.all_done.wait(1.0) and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    results = job_server.results
    assert set(results) == {"good-1", "bad", "good-2"}, (results, log.read_text()[-3000:])
    assert [o["seed"] for o in results["good-1"]["output"]] == [3]
    assert [o["seed"] for o in results["good-2"]["output"]] == [3, 4]
    assert results["good-2"]["output"][0]["image"] == results["good-1"]["output"][0]["image"]
    error = results["bad"]["error"]
    assert "width: must be a multiple of 8 (got 500)" in error
    assert "num_images: must be at most 8 (got 12)" in error
    progress = job_server.progress.get("good-1", [])
    steps = [p["step"] for p in progress]
    # PNDM (the tiny model's scheduler) takes one warm-up step more than asked
    assert steps == sorted(steps) and progress[-1]["step"] == progress[-1]["steps"] >= 3
