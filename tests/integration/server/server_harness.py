"""Harness: a real ``sdworker serve`` process on 127.0.0.1 with real ``runpod`` worker processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HANDLERS = Path(__file__).resolve().parents[2] / "fixtures" / "handlers"
SRC = Path(__file__).resolve().parents[3] / "src"
#: the handler name that starts the packaged worker (``python -m sdworker.worker``)
PACKAGED = "packaged"


class ServerProcess:
    """``python -m sdworker.server.cli`` in a subprocess; ``url`` is its ``/v2/local`` base."""

    def __init__(self, handler: str, workers: int, state_dir: Path, env: dict[str, str]) -> None:
        # a fixture handler by name, a path to any handler script, or "packaged": no --handler
        self.handler: Path | None = None
        if handler != PACKAGED:
            self.handler = Path(handler) if handler.endswith(".py") else HANDLERS / f"{handler}.py"
        self.workers = workers
        self.state_dir = state_dir
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.root = ""

    @property
    def url(self) -> str:
        return f"{self.root}/v2/local"

    def start(self, timeout_s: float = 30.0, *, ready: int | None = None) -> ServerProcess:
        """Start the server and wait for ``ready`` workers (default all; 0: do not wait)."""
        env = {**os.environ, **self.env, "SDWORKER_STATE_DIR": str(self.state_dir)}
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
        log = (self.state_dir.parent / f"{self.state_dir.name}.log").open("a")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "sdworker.server.cli", "--port", "0"),
                *("--log-level", "warning", "--workers", str(self.workers)),
                *(("--handler", str(self.handler)) if self.handler else ()),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"on (http://[\d.:]+)/v2/", line)
        assert match, f"server did not start: {line!r}"
        self.root = match.group(1)
        self.wait_for_workers(self.workers if ready is None else ready, timeout_s)
        return self

    def wait_for_workers(self, count: int, timeout_s: float = 30.0) -> None:
        """Block until ``count`` workers are polling for jobs (they import runpod first)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                workers = httpx.get(f"{self.url}/health", timeout=5).json()["workers"]
                if workers["idle"] + workers["running"] >= count:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{count} workers did not come up in {timeout_s} s")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_status(
    url: str, job_id: str, statuses: set[str], timeout_s: float = 20.0
) -> dict[str, Any]:
    """Poll ``/status`` until the job reaches one of ``statuses``."""
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/status/{job_id}", timeout=10).json()
        if body.get("status") in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {statuses}; last {body}")


FAST = {
    "SDWORKER_WORKER_POLL_S": "2",
    "SDWORKER_SWEEP_INTERVAL_S": "0.05",
    "SDWORKER_WEBHOOK_INTERVAL_S": "0.2",
    "RUNPOD_LOG_LEVEL": "WARN",
}
