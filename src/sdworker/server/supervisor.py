"""Worker processes: N copies of ``python -m sdworker.worker`` (or ``python HANDLER``, a custom
handler script) running the ``runpod`` SDK's worker loop.

Each worker is pointed at this server through the variables the SDK reads on RunPod
(``RUNPOD_WEBHOOK_GET_JOB`` and friends), so it takes jobs exactly as it would in production.
A worker that exits is replaced; the queue retries the job it held once, then fails it.
A worker whose handler returned ``refresh_worker`` is stopped after that job and replaced,
as hosted RunPod replaces it; one the queue finds lost (silent while holding a job) is killed
and replaced. A worker that exits before it ever polled the queue could not start: it is
started again after a wait that doubles with each such failure (:mod:`.restarts`), its own
last line of output logged once per wait, and :meth:`WorkerSupervisor.health` reports it
unhealthy with that reason. Worker output reaches the log through :func:`~.redact.forward`,
which blanks the worker token the SDK would print with its job-take URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sdworker.server.queue import JobQueue
from sdworker.server.redact import forward
from sdworker.server.restarts import TAIL_LINES, Backoff, exit_status, start_failure

log = logging.getLogger(__name__)

#: env vars that would make the SDK do something other than take jobs from us
_SDK_MODE_VARS = ("RUNPOD_AI_API_KEY", "RUNPOD_REALTIME_PORT", "RUNPOD_WEBHOOK_PING")


def worker_env(base_url: str, token: str, worker_id: str, endpoint_id: str) -> dict[str, str]:
    """The environment the SDK's worker loop needs to take jobs from this server."""
    env = {k: v for k, v in os.environ.items() if k not in _SDK_MODE_VARS}
    query = f"?token={token}"
    env.update(
        RUNPOD_POD_ID=worker_id,
        RUNPOD_ENDPOINT_ID=endpoint_id,
        RUNPOD_WEBHOOK_GET_JOB=f"{base_url}/job-take/$ID{query}",
        RUNPOD_WEBHOOK_POST_OUTPUT=f"{base_url}/job-done/$RUNPOD_POD_ID/$ID{query}",
        RUNPOD_WEBHOOK_POST_STREAM=f"{base_url}/job-stream/$RUNPOD_POD_ID/$ID{query}",
        # this endpoint's own channel (RunPod has none): jobs to end early, keeping images
        SDWORKER_INTERRUPT_URL=f"{base_url}/job-interrupt/{worker_id}{query}",
        RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true",
        PYTHONUNBUFFERED="1",
    )
    env.setdefault("RUNPOD_LOG_LEVEL", "INFO")
    return env


def _die_with_parent() -> None:
    """Runs in the child before exec: a server killed with -9 must not leave workers behind."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


#: a worker that polled, then exited sooner than this after its start, failed to start too
#: (it must not be restarted in a tight loop either)
_STABLE_S = 2.0


@dataclass
class _Slot:
    """One of the ``count`` places a worker process runs in, and its history of starts."""

    index: int
    backoff: Backoff
    generation: int = 0
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    retiring: bool = False
    #: the current process has polled the queue (it started)
    heard: bool = False
    #: why the last start failed; None once a worker of this slot has been heard from
    cause: str | None = None
    #: loop time of the next start, while waiting out a back-off
    restart_at: float | None = None
    #: the current process's last lines of output, and the threads that read them
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    pumps: list[threading.Thread] = field(default_factory=list)

    @property
    def worker_id(self) -> str:
        return f"worker-{self.index}-{self.generation}"

    @property
    def name(self) -> str:
        """The slot as /health names it (``worker-0``): the same across restarts."""
        return f"worker-{self.index}"


class WorkerSupervisor:
    """Keeps ``count`` worker processes alive."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        handler_path: Path | None,
        count: int,
        base_url: str,
        token: str,
        python: str = sys.executable,
        log_file: Path | None = None,
        poll_s: float = 0.2,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.queue = queue
        self.handler_path = handler_path.resolve() if handler_path is not None else None
        self.base_url = base_url
        self.token = token
        self.python = python
        self.poll_s = poll_s
        self._slots = [_Slot(i, Backoff(backoff_s, backoff_max_s)) for i in range(count)]
        self._log_file = log_file
        self._log: IO[bytes] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._closed = False
        queue.on_retire = self.retire
        queue.on_lost = self.kill

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """Live worker processes by worker id (tests use this to kill one)."""
        return {s.worker_id: s.process for s in self._slots if s.process is not None}

    async def start(self) -> None:
        if self._log_file is not None:
            self._log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = self._log_file.open("ab")
        for slot in self._slots:
            self._spawn(slot)
        self._monitor = asyncio.create_task(self._watch())

    def retire(self, worker_id: str) -> None:
        """SIGTERM one worker (its handler asked for a fresh process); the watch loop replaces it.

        The SDK finishes whatever it still holds before exiting; the queue gives it no more.
        """
        for slot in self._slots:
            proc = slot.process
            if slot.worker_id == worker_id and proc is not None and proc.poll() is None:
                slot.retiring = True
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                log.info("stopping %s (pid %d) to replace it", worker_id, proc.pid)

    def kill(self, worker_id: str) -> None:
        """SIGKILL one worker the queue found lost (it stopped answering); the watch loop
        replaces it."""
        for slot in self._slots:
            proc = slot.process
            if slot.worker_id == worker_id and proc is not None and proc.poll() is None:
                log.warning("killing %s (pid %d): it stopped answering", worker_id, proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

    def terminate(self) -> None:
        """SIGTERM every worker: the SDK stops taking jobs and finishes the ones it holds."""
        self._closed = True
        for slot in self._slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.terminate()

    async def close(self, grace_s: float = 3.0) -> None:
        """SIGTERM every worker (the SDK finishes cleanly), SIGKILL what is left after ``grace_s``."""
        self._closed = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        procs = [s.process for s in self._slots if s.process is not None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        for proc in procs:
            while proc.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()

    def health(self) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """What ``/health`` adds about the workers: how many are starting
        (``initializing``) and how many cannot start (``unhealthy``), and for each of those
        its reason, its failures in a row and when it is started again. Workers that have
        polled the queue are the queue's to count (idle, running)."""
        now = asyncio.get_running_loop().time()
        counts = {"initializing": 0, "unhealthy": 0}
        failing: list[dict[str, Any]] = []
        for slot in self._slots:
            if self._started(slot):
                continue
            if slot.cause is None:
                counts["initializing"] += 1
                continue
            counts["unhealthy"] += 1
            entry: dict[str, Any] = {
                "worker": slot.name,
                "reason": slot.cause,
                "failures": slot.backoff.failures,
            }
            if slot.process is None and slot.restart_at is not None:
                entry["nextStartInS"] = round(max(0.0, slot.restart_at - now), 1)
            else:
                entry["nextStartInS"] = 0.0  # starting again now
            failing.append(entry)
        return counts, failing

    def cannot_start(self) -> str | None:
        """Why no job can run now, when no worker has started and some could not (None
        otherwise): the reason a queued job's ``/status`` shows while it waits."""
        if any(self._started(slot) for slot in self._slots):
            return None
        causes = list(dict.fromkeys(s.cause for s in self._slots if s.cause is not None))
        if not causes:
            return None
        return "waiting for a worker: none could start: " + "; ".join(causes)

    def _started(self, slot: _Slot) -> bool:
        """Whether the slot's current process has polled the queue (noted once seen)."""
        if slot.process is not None and not slot.heard and self.queue.board.heard(slot.worker_id):
            slot.heard = True
            slot.cause = None
            slot.backoff.reset()
        return slot.process is not None and slot.heard

    def command(self) -> list[str]:
        """A worker's command line: the handler script, else the packaged worker."""
        if self.handler_path is None:
            return [self.python, "-m", "sdworker.worker"]
        return [self.python, str(self.handler_path)]

    def _spawn(self, slot: _Slot) -> None:
        if self._closed:
            return
        slot.generation += 1
        slot.heard, slot.restart_at = False, None
        slot.tail.clear()
        env = worker_env(self.base_url, self.token, slot.worker_id, self.queue.settings.endpoint_id)
        # piped, never inherited: every line passes the token's redaction on its way out
        slot.process = subprocess.Popen(
            self.command(),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if self._log is not None else subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        slot.pumps = self._forward(slot.process, slot.tail)
        slot.started = asyncio.get_running_loop().time()
        log.info("started %s (pid %d)", slot.worker_id, slot.process.pid)

    def _forward(self, proc: subprocess.Popen[bytes], tail: deque[str]) -> list[threading.Thread]:
        out: IO[bytes] = self._log if self._log is not None else _stream(sys.stdout)
        assert proc.stdout is not None
        if proc.stderr is None:  # one stream (the log file): its tail is the reason
            return [forward(proc.stdout, out, self.token, tail)]
        # the SDK logs to stdout; a refusal to start and a traceback go to stderr
        return [
            forward(proc.stdout, out, self.token),
            forward(proc.stderr, _stream(sys.stderr), self.token, tail),
        ]

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            for slot in self._slots:
                proc = slot.process
                if proc is None:
                    continue
                started = self._started(slot)
                if proc.poll() is None:
                    continue
                await self._replace(slot, proc.returncode, started)

    async def _replace(self, slot: _Slot, code: int, started: bool) -> None:
        """The slot's process exited with ``code``: requeue its jobs, start another (after a
        back-off when it never started)."""
        loop = asyncio.get_running_loop()
        self.queue.worker_gone(
            slot.worker_id, f"worker process {slot.worker_id} exited with code {code}"
        )
        slot.process = None
        if self._closed:
            return  # the server is stopping: its workers were told to exit
        if slot.retiring:
            # a requested replacement, not a crash: no back-off
            slot.retiring = False
            self._spawn(slot)
            return
        if started and loop.time() - slot.started >= _STABLE_S:
            log.warning("%s exited (%s); starting a replacement", slot.worker_id, exit_status(code))
            self._spawn(slot)
            return
        # its last words: the readers end with the pipe (a moment after the exit)
        for pump in slot.pumps:
            await asyncio.to_thread(pump.join, 1.0)
        slot.cause = start_failure(slot.tail, code)
        delay = slot.backoff.failed()
        slot.restart_at = loop.time() + delay
        log.warning(
            "%s could not start: %s; starting it again in %g s (failure %d in a row)",
            slot.worker_id,
            slot.cause,
            delay,
            slot.backoff.failures,
        )
        loop.call_later(delay, self._spawn, slot)


def _stream(text: Any) -> IO[bytes]:
    """The binary stream under a text one (``sys.stdout``), or the stream itself."""
    return getattr(text, "buffer", text)  # type: ignore[no-any-return]
