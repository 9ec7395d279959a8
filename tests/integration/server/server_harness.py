"""Harness: a real ``sdworker serve`` process on 127.0.0.1 with real ``runpod`` worker processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.integration.waits import PATIENCE_S, wait_until

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

    @property
    def log_path(self) -> Path:
        """The server's stderr (its log, and its workers')."""
        return self.state_dir.parent / f"{self.state_dir.name}.log"

    def start(self, timeout_s: float = PATIENCE_S, *, ready: int | None = None) -> ServerProcess:
        """Start the server and wait for ``ready`` workers (default all; 0: do not wait)."""
        env = {**os.environ, **self.env, "SDWORKER_STATE_DIR": str(self.state_dir)}
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
        log = self.log_path.open("a")
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

    def wait_for_workers(self, count: int, timeout_s: float = PATIENCE_S) -> None:
        """Block until ``count`` workers are polling for jobs (they import runpod first)."""

        def up() -> dict[str, Any] | None:
            assert self.proc is not None and self.proc.poll() is None, "the server exited"
            try:
                workers: dict[str, Any] = httpx.get(f"{self.url}/health", timeout=30).json()[
                    "workers"
                ]
            except httpx.HTTPError:
                return None
            return workers if workers["idle"] + workers["running"] >= count else None

        wait_until(up, f"{count} workers polling", timeout_s, every_s=0.1)

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
    url: str, job_id: str, statuses: set[str], timeout_s: float = PATIENCE_S
) -> dict[str, Any]:
    """Poll ``/status`` until the job reaches one of ``statuses``."""
    seen: list[dict[str, Any]] = [{}]

    def reached() -> dict[str, Any] | None:
        seen[0] = httpx.get(f"{url}/status/{job_id}", timeout=30).json()
        return seen[0] if seen[0].get("status") in statuses else None

    return wait_until(
        reached, lambda: f"job {job_id} reaching {statuses} (last {seen[0]})", timeout_s
    )


FAST = {
    "SDWORKER_WORKER_POLL_S": "2",
    "SDWORKER_SWEEP_INTERVAL_S": "0.05",
    "SDWORKER_WEBHOOK_INTERVAL_S": "0.2",
    "RUNPOD_LOG_LEVEL": "WARN",
}
