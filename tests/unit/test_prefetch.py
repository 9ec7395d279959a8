"""Prefetch through the real :class:`RunpodAdapter`: the worker holds jobs beyond the one the
device runs, yet the device runs one job (or batch) at a time, in arrival order, and a job
cancelled while it waits never starts. The service is a fake that records what ran when."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, cast

import pytest

from sdworker.core.settings import Settings
from sdworker.runpod.adapter import RunpodAdapter
from sdworker.runpod.timing import DeviceRun, idle_gaps, parse
from sdworker.service import Service


@dataclass(frozen=True)
class FakePrepared:
    job_id: str
    batch_key: Hashable | None
    size: int = 1


@dataclass
class FakeRegistry:
    default_name: str | None = None

    def all(self) -> list[Any]:
        return []


class DeviceRecorder:
    """A service whose "device" records every group it runs and any overlap between groups.

    The first group holds the device until :attr:`release` is set; :attr:`prepared` counts
    the jobs prepared so far, so a test knows when every job is waiting."""

    def __init__(self, slow_prepare: str | None = None) -> None:
        self.registry = FakeRegistry()
        self.groups: list[list[str]] = []
        self.running = 0
        self.most_at_once = 0
        self.release = threading.Event()
        self.holding = threading.Event()
        self.prepared: list[str] = []
        self._lock = threading.Lock()
        self._slow_prepare = slow_prepare
        self.others_prepared = threading.Event()

    def prepare(self, native: Any, *, job_id: str, s3_config: Any = None) -> FakePrepared:
        if job_id == self._slow_prepare:
            # prepared last of all, though it arrived before the others
            self.others_prepared.wait(10)
        with self._lock:
            self.prepared.append(job_id)
        return FakePrepared(job_id, native.get("key"))

    #: the adapter checks a job under its preparing lock, then fetches its assets beside it
    check = prepare

    def fetch(self, prepared: FakePrepared) -> FakePrepared:
        return prepared

    def execute(
        self,
        group: list[FakePrepared],
        *,
        progress: list[Any] | None = None,
        cancelled: list[Callable[[], bool]] | None = None,
        interrupted: list[Callable[[], bool]] | None = None,
    ) -> list[Any]:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.groups.append([p.job_id for p in group])
            first = len(self.groups) == 1
        if first:
            self.holding.set()
            self.release.wait(10)
        with self._lock:
            self.running -= 1
        return [[{"image": p.job_id, "seed": 1}] for p in group]


def adapter(service: DeviceRecorder, **settings: Any) -> RunpodAdapter:
    return RunpodAdapter(Settings(**settings), service=cast(Service, service))


async def wait_for(condition: Callable[[], bool]) -> None:
    """Yield to the loop (and the threads) until ``condition`` holds."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def hold_then_queue(
    worker: RunpodAdapter, service: DeviceRecorder, ids: list[str], key: str | None = None
) -> dict[str, asyncio.Task[Any]]:
    """Start ``ids`` as the SDK does with prefetch (all at once); the first holds the device
    until every other one is prepared and waiting."""
    tasks = {}
    for job_id in ids:
        job = {"id": job_id, "input": {"key": key}}
        tasks[job_id] = asyncio.create_task(worker.handle(job))
        if job_id == ids[0]:
            await asyncio.to_thread(service.holding.wait, 10)
    await wait_for(lambda: len(service.prepared) == len(ids))
    await asyncio.sleep(0.05)  # the prepared jobs reach the batcher
    return tasks


def test_concurrency_is_the_running_job_plus_the_prefetch() -> None:
    service = DeviceRecorder()
    assert adapter(service).concurrency(1) == 3  # default prefetch 2
    assert adapter(service, prefetch=0).concurrency(1) == 1
    assert adapter(service, prefetch=5).concurrency(7) == 6
    # with batching, a batch's worth runs and prefetch batches' worth wait
    assert adapter(service, batch_max=4, prefetch=1).concurrency(1) == 8
    assert Settings.from_env({"SDWORKER_PREFETCH": "0"}).prefetch == 0


def test_prefetched_jobs_never_share_the_device_and_run_in_arrival_order() -> None:
    service = DeviceRecorder()
    worker = adapter(service, prefetch=4)
    ids = [f"j{i}" for i in range(5)]

    async def main() -> list[Any]:
        tasks = await hold_then_queue(worker, service, ids)
        service.release.set()
        return list(await asyncio.gather(*tasks.values()))

    outputs = asyncio.run(main())
    assert [out[0]["image"] for out in outputs] == ids
    assert service.groups == [[i] for i in ids]
    assert service.most_at_once == 1


def test_a_job_cancelled_while_waiting_never_starts_and_the_rest_keep_order() -> None:
    service = DeviceRecorder()
    worker = adapter(service)

    async def main() -> list[Any]:
        tasks = await hold_then_queue(worker, service, ["a", "b", "c"])
        tasks["b"].cancel()  # what the SDK does on a stop signal
        await asyncio.sleep(0)
        service.release.set()
        return list(await asyncio.gather(*tasks.values(), return_exceptions=True))

    a, b, c = asyncio.run(main())
    assert isinstance(b, asyncio.CancelledError)
    assert a[0]["image"] == "a" and c[0]["image"] == "c"
    assert service.groups == [["a"], ["c"]]


def test_with_batching_the_waiting_jobs_are_the_next_batch() -> None:
    service = DeviceRecorder()
    worker = adapter(service, batch_max=4, prefetch=1, batch_window_ms=0)

    async def main() -> None:
        tasks = await hold_then_queue(worker, service, ["first", "w1", "w2", "w3"], key="k")
        service.release.set()
        await asyncio.gather(*tasks.values())

    asyncio.run(main())
    assert service.groups == [["first"], ["w1", "w2", "w3"]]
    assert service.most_at_once == 1


def test_a_synchronous_job_waits_for_the_device_like_any_other() -> None:
    service = DeviceRecorder()
    worker = adapter(service)
    done: list[Any] = []

    async def main() -> None:
        held = asyncio.create_task(worker.handle({"id": "async", "input": {}}))
        await asyncio.to_thread(service.holding.wait, 10)
        sync = threading.Thread(
            target=lambda: done.append(worker.handle_sync({"id": "sync", "input": {}}))
        )
        sync.start()
        await wait_for(lambda: len(service.prepared) == 2)
        await asyncio.sleep(0.05)  # the synchronous job reaches the device lock
        service.release.set()
        await held
        await asyncio.to_thread(sync.join, 10)

    asyncio.run(main())
    assert service.groups == [["async"], ["sync"]] and done[0][0]["image"] == "sync"
    assert service.most_at_once == 1


def test_each_device_run_is_logged_with_its_times(caplog: pytest.LogCaptureFixture) -> None:
    service = DeviceRecorder()
    service.release.set()
    worker = adapter(service)

    async def main() -> None:
        for job_id in ("x", "y"):
            await worker.handle({"id": job_id, "input": {}})

    with caplog.at_level(logging.INFO, logger="sdworker.runpod.adapter"):
        asyncio.run(main())
    runs = parse(caplog.text)
    assert [r.jobs for r in runs] == [("x",), ("y",)]
    assert all(r.end >= r.start and r.waited_ms >= 0 for r in runs)
    assert runs[1].start >= runs[0].end
    assert len(idle_gaps(runs)) == 1


def test_device_runs_parse_back_and_gaps_are_between_consecutive_runs() -> None:
    from sdworker.runpod.timing import FORMAT

    runs = [DeviceRun(("a", "b"), 10.0, 10.5, 3.0), DeviceRun(("c",), 10.52, 11.0)]
    text = "\n".join("INFO x: " + FORMAT % r.args() for r in runs)
    assert parse(text) == runs
    assert idle_gaps(runs) == pytest.approx([0.02])


class SlowDownload(DeviceRecorder):
    """Job ``a``'s assets download until job ``b`` has been checked."""

    def __init__(self) -> None:
        super().__init__()
        self.release.set()
        self.b_checked = threading.Event()

    def check(self, native: Any, *, job_id: str, s3_config: Any = None) -> FakePrepared:
        prepared = self.prepare(native, job_id=job_id, s3_config=s3_config)
        if job_id == "b":
            self.b_checked.set()
        return prepared

    def fetch(self, prepared: FakePrepared) -> FakePrepared:
        if prepared.job_id == "a":
            assert self.b_checked.wait(10), "a's download held up b's check"
        return prepared


def test_one_jobs_download_does_not_hold_up_the_next_jobs_preparation() -> None:
    service = SlowDownload()
    worker = adapter(service)

    async def main() -> list[Any]:
        return list(
            await asyncio.gather(*(worker.handle({"id": i, "input": {}}) for i in ("a", "b")))
        )

    outputs = asyncio.run(main())
    assert sorted(out[0]["image"] for out in outputs) == ["a", "b"]
