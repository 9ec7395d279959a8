"""The worker processes: the command line, and the back-off and reasons for a worker that
cannot start (with a real process that exits at once, and shrunken back-off settings)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sdworker.core.settings import Settings
from sdworker.server.queue import JobQueue
from sdworker.server.restarts import Backoff, exit_status, start_failure
from sdworker.server.supervisor import WorkerSupervisor

HANDLERS = Path(__file__).resolve().parents[2] / "fixtures" / "handlers"


def supervisor(handler_path: Path | None) -> WorkerSupervisor:
    queue: Any = SimpleNamespace()
    return WorkerSupervisor(
        queue, handler_path=handler_path, count=1, base_url="http://127.0.0.1:1", token="t"
    )


def test_default_worker_is_the_packaged_module() -> None:
    # runs from any folder: nothing but the installed package is needed
    assert supervisor(None).command()[1:] == ["-m", "sdworker.worker"]


def test_a_named_handler_script_runs_instead(tmp_path: Path) -> None:
    script = tmp_path / "mine.py"
    assert supervisor(script).command()[1:] == [str(script.resolve())]


def test_backoff_doubles_to_its_bound_and_resets() -> None:
    backoff = Backoff(0.5, 4.0)
    assert [backoff.failed() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.failed() == 0.5
    backoff.failures = 10_000  # days of failures: still the bound, no overflow
    assert backoff.failed() == 4.0


def test_the_reason_is_the_workers_last_line() -> None:
    lines = ["INFO starting", "", "sdworker: refusing to start: no baked models in /m", ""]
    assert start_failure(lines, 1) == (
        "sdworker: refusing to start: no baked models in /m [exit code 1]"
    )
    syntax = [
        "Traceback (most recent call last):",
        '  File "/h/handler.py", line 3',
        "    def handler(job)",
        "                    ^",
        "SyntaxError: expected ':'",
    ]
    assert start_failure(syntax, 1) == (
        "SyntaxError: expected ':' (File \"/h/handler.py\", line 3) [exit code 1]"
    )
    assert start_failure([], -9) == "it printed nothing (killed by SIGKILL)"
    assert exit_status(0) == "exit code 0"
    assert len(start_failure(["x" * 5000], 1)) < 500


@contextlib.asynccontextmanager
async def supervising(
    tmp_path: Path, handler: str, **options: Any
) -> AsyncIterator[tuple[JobQueue, WorkerSupervisor]]:
    """A real queue, and one worker process of ``handler`` (a fixture handler's name)."""
    queue = JobQueue(Settings(state_dir=tmp_path / "state", workers=0))
    await queue.start()
    sup = WorkerSupervisor(
        queue,
        handler_path=HANDLERS / f"{handler}.py",
        count=1,
        base_url="http://127.0.0.1:1",
        token="worker-token-0123",
        **options,
    )
    try:
        yield queue, sup
    finally:
        await sup.close()
        await queue.close()


def test_a_worker_that_cannot_start_backs_off_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        shrunk = {"poll_s": 0.01, "backoff_s": 0.05, "backoff_max_s": 0.2}
        async with supervising(tmp_path, "refuses", **shrunk) as (queue, sup):
            job = await queue.submit({"prompt": "x"})
            await sup.start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120  # generous: a busy machine starts processes slowly
            while sup.health()[0]["unhealthy"] == 0 or sup.health()[1][0]["failures"] < 5:
                assert loop.time() < deadline, sup.health()
                await asyncio.sleep(0.01)
            counts, failing = sup.health()
            assert counts == {"initializing": 0, "unhealthy": 1}
            assert failing[0]["worker"] == "worker-0"
            assert failing[0]["reason"] == (
                "fixture: refusing to start: this handler never starts [exit code 1]"
            )
            reason = sup.cannot_start()
            assert reason is not None and "this handler never starts" in reason
            # the job waits: nothing took it, nothing failed it
            view = await queue.get(job.id)
            assert view is not None and view.status.value == "IN_QUEUE"

    with caplog.at_level(logging.WARNING, logger="sdworker.server.supervisor"):
        asyncio.run(body())
    steps = [
        float(m.group(1))
        for r in caplog.records
        if (m := re.search(r"could not start: .*never starts.*again in ([\d.]+) s", r.message))
    ]
    # once per back-off step, each twice the last, up to the bound
    assert steps[:5] == [0.05, 0.1, 0.2, 0.2, 0.2], steps
    assert len(steps) == len([r for r in caplog.records if "could not start" in r.message])


def test_a_worker_heard_from_is_healthy_again(tmp_path: Path) -> None:
    """A slot that failed is unhealthy until a worker of it polls: then it counts as started
    and its back-off starts over."""

    async def body() -> None:
        async with supervising(tmp_path, "echo") as (queue, sup):
            slot = sup._slots[0]
            slot.cause, slot.backoff.failures = "it failed before", 3
            await sup.start()
            assert sup.health()[0] == {"initializing": 0, "unhealthy": 1}
            assert sup.cannot_start() == "waiting for a worker: none could start: it failed before"
            queue.worker_seen(slot.worker_id)  # its first poll
            assert sup.health() == ({"initializing": 0, "unhealthy": 0}, [])
            assert sup.cannot_start() is None and slot.backoff.failures == 0

    asyncio.run(body())
