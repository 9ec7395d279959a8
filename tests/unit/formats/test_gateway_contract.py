"""The gateway contract: what the request formats rely on of the queue, asserted against the
real queue (``sdworker.server.queue``, on a manual clock) and the formats' fake alike, so the
fake cannot drift from what it stands for. mypy holds both to the interface
(:class:`~sdworker.core.jobs.JobGateway`); these tests hold them to its behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin

import pytest

from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.jobs import Failure, JobGateway, Status
from sdworker.core.settings import Settings
from sdworker.server.clock import ManualClock
from sdworker.server.queue import JobQueue
from sdworker.server.webhooks import WebhookSender
from tests.unit.formats.conftest import FakeGateway

OUTPUT = [{"image": "aGk=", "seed": 3, "format": "png"}]
#: how long a test lets a wait that should wake up take before it counts as stuck
STUCK_S = 30.0


class Driver(Protocol):
    """A gateway, and the worker's side of it: what makes its jobs run and end."""

    gateway: JobGateway

    async def start(self, job_id: str) -> None:
        """A worker takes ``job_id`` (the oldest job queued)."""

    async def complete(self, job_id: str, output: list[dict[str, Any]]) -> None:
        """The worker running ``job_id`` answers ``output``."""

    async def fail(self, job_id: str, error: InvalidInput) -> None:
        """The worker running ``job_id`` fails it with ``error``."""


class FakeDriver:
    def __init__(self) -> None:
        self.fake = FakeGateway(auto=False)
        self.gateway: JobGateway = self.fake

    async def start(self, job_id: str) -> None:
        self.fake.start(job_id)

    async def complete(self, job_id: str, output: list[dict[str, Any]]) -> None:
        self.fake.run = lambda job: output
        self.fake.finish(job_id)

    async def fail(self, job_id: str, error: InvalidInput) -> None:
        def run(job: dict[str, Any]) -> list[dict[str, Any]]:
            raise error

        self.fake.run = run
        self.fake.finish(job_id)


class QueueDriver:
    """The real queue, its worker side driven as the runpod SDK drives it."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.gateway: JobGateway = queue

    async def start(self, job_id: str) -> None:
        [task] = await self.queue.take("w1", 1, 0)
        assert task["id"] == job_id

    async def complete(self, job_id: str, output: list[dict[str, Any]]) -> None:
        await self.queue.report(job_id, "w1", {"output": output}, is_stream=False)

    async def fail(self, job_id: str, error: InvalidInput) -> None:
        output = Failure.of(error).to_output()
        payload = {"error": output.pop("error"), "output": output}
        await self.queue.report(job_id, "w1", payload, is_stream=False)


Scenario = Callable[[Driver], Awaitable[None]]


async def _no_post(url: str, body: dict[str, Any]) -> int:
    return 200


@pytest.fixture(params=["fake", "queue"])
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[Scenario], None]]:
    """Runs a scenario against the fake gateway, then (second parameter) the real queue."""

    def go(scenario: Scenario) -> None:
        async def main() -> None:
            if request.param == "fake":
                await scenario(FakeDriver())
                return
            settings = Settings(state_dir=tmp_path / "state", sweep_interval_s=3600.0, workers=0)
            hooks = WebhookSender(retries=0, interval_s=0.0, poster=_no_post)
            queue = JobQueue(settings, clock=ManualClock(), webhooks=hooks)
            await queue.start()
            try:
                await scenario(QueueDriver(queue))
            finally:
                await queue.close()

        asyncio.run(main())

    yield go


def test_a_submitted_job_is_queued_with_its_input(run: Callable[[Scenario], None]) -> None:
    async def scenario(d: Driver) -> None:
        job = await d.gateway.submit({"prompt": "x", "seed": 3})
        assert job.status is Status.IN_QUEUE and job.input == {"prompt": "x", "seed": 3}
        again = await d.gateway.get(job.id)
        assert again is not None and again.id == job.id and again.status is Status.IN_QUEUE

    run(scenario)


def test_an_unknown_job_is_none_everywhere(run: Callable[[Scenario], None]) -> None:
    async def scenario(d: Driver) -> None:
        g = d.gateway
        assert await g.get("nope") is None
        assert await g.wait("nope", 0.01) is None
        assert await g.cancel("nope") is None
        assert await g.interrupt("nope") is None
        assert await g.queue_position("nope") is None

    run(scenario)


def test_queue_positions_follow_the_order_of_submission(run: Callable[[Scenario], None]) -> None:
    async def scenario(d: Driver) -> None:
        first = await d.gateway.submit({"prompt": "a"})
        second = await d.gateway.submit({"prompt": "b"})
        assert await d.gateway.queue_position(first.id) == 0
        assert await d.gateway.queue_position(second.id) == 1
        await d.start(first.id)
        assert await d.gateway.queue_position(first.id) is None  # running, not queued
        assert await d.gateway.queue_position(second.id) == 0

    run(scenario)


def test_a_wait_that_runs_out_returns_the_job_unfinished(run: Callable[[Scenario], None]) -> None:
    async def scenario(d: Driver) -> None:
        job = await d.gateway.submit({"prompt": "x"})
        view = await d.gateway.wait(job.id, 0.05)
        assert view is not None and view.status is Status.IN_QUEUE

    run(scenario)


def test_a_wait_ends_when_its_job_completes(run: Callable[[Scenario], None]) -> None:
    async def scenario(d: Driver) -> None:
        job = await d.gateway.submit({"prompt": "x"})
        await d.start(job.id)
        waiting = asyncio.ensure_future(d.gateway.wait(job.id, 600.0))
        await asyncio.sleep(0)  # the wait is under way before the job ends
        await d.complete(job.id, OUTPUT)
        view = await asyncio.wait_for(waiting, STUCK_S)  # ends on the completion, not at 600 s
        assert view is not None and view.status is Status.COMPLETED and view.output == OUTPUT
        # a finished job is answered at once
        assert (await d.gateway.wait(job.id, 600.0)) == await d.gateway.get(job.id)

    run(scenario)


def test_a_failed_job_carries_its_failure_as_data(run: Callable[[Scenario], None]) -> None:
    async def scenario(d: Driver) -> None:
        job = await d.gateway.submit({"prompt": "x", "width": 65})
        await d.start(job.id)
        await d.fail(job.id, InvalidInput([Problem("width", "must be a multiple of 8", 65)]))
        view = await d.gateway.get(job.id)
        assert view is not None and view.status is Status.FAILED
        failure = view.failure
        assert failure.code == "invalid_input"
        assert [(p.field, p.message) for p in failure.problems] == [
            ("width", "must be a multiple of 8")
        ]
        assert "width: must be a multiple of 8" in (view.error or "")

    run(scenario)


def test_cancel_ends_a_queued_or_running_job_and_leaves_a_finished_one(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(d: Driver) -> None:
        g = d.gateway
        done, running, queued = [await g.submit({"prompt": p}) for p in "abc"]
        await d.start(done.id)  # the oldest is taken first
        await d.complete(done.id, OUTPUT)
        await d.start(running.id)
        cancelled = await g.cancel(queued.id)
        assert cancelled is not None and cancelled.status is Status.CANCELLED
        stopped = await g.cancel(running.id)
        assert stopped is not None and stopped.status is Status.CANCELLED
        kept = await g.cancel(done.id)  # already completed: cancel changes nothing
        assert kept is not None and kept.status is Status.COMPLETED and kept.output == OUTPUT

    run(scenario)


def test_interrupt_cancels_a_queued_job_and_lets_a_running_one_finish(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(d: Driver) -> None:
        g = d.gateway
        running = await g.submit({"prompt": "a"})
        queued = await g.submit({"prompt": "b"})
        await d.start(running.id)
        asked = await g.interrupt(running.id)
        assert asked is not None and asked.status is Status.IN_PROGRESS  # it stops itself
        dropped = await g.interrupt(queued.id)
        assert dropped is not None and dropped.status is Status.CANCELLED
        await d.complete(running.id, OUTPUT)  # the worker ends it with what it made
        ended = await g.get(running.id)
        assert ended is not None and ended.status is Status.COMPLETED

    run(scenario)


def test_an_input_json_cannot_carry_is_refused_at_submit(run: Callable[[Scenario], None]) -> None:
    async def scenario(d: Driver) -> None:
        with pytest.raises(InvalidInput) as refused:
            await d.gateway.submit({"prompt": "x", "guidance_scale": float("nan")})
        assert refused.value.fields == ["input.guidance_scale"]

    run(scenario)


def test_a_stored_file_has_a_url_by_its_name(run: Callable[[Scenario], None]) -> None:
    async def scenario(d: Driver) -> None:
        job = await d.gateway.submit({"prompt": "x"})
        url = await d.gateway.store_file(job.id, "0-3.png", b"\x89PNG", "image/png")
        # absolute, or relative to the server's base URL: the routes resolve it so
        resolved = urljoin("http://testserver/", url)
        assert resolved.startswith("http://testserver/") and f"/{job.id}/0-3.png" in resolved

    run(scenario)
