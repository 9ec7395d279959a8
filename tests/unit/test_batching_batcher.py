"""The batcher with a fake executor: who runs with whom, windows, limits, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable
from typing import Any

import pytest

from sdworker.core.batching import batch_key
from sdworker.core.input import InputContext, ModelFacts, parse_input
from sdworker.core.settings import Settings
from sdworker.families import get as family
from sdworker.runpod.batcher import Batcher, Entry


class Recorder:
    """Executes a batch by answering each job with its id; remembers every batch it saw."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.batches: list[list[str]] = []
        self.hold = hold
        self.started = threading.Event()
        self.cancelled_seen: list[bool] = []

    def __call__(self, batch: list[Entry]) -> list[Any]:
        self.batches.append([e.payload["id"] for e in batch])
        self.started.set()
        if self.hold is not None:
            self.hold.wait(5)
        self.cancelled_seen = [e.cancelled.is_set() for e in batch]
        return [f"done {e.payload['id']}" for e in batch]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_compatible_jobs_in_the_window_share_one_batch_and_get_their_own_results() -> None:
    recorder = Recorder()

    async def main() -> list[Any]:
        batcher = Batcher(recorder, max_images=8, window_s=0.2)
        return await asyncio.gather(
            *(batcher.submit({"id": f"j{i}"}, key="k", size=1) for i in range(3))
        )

    assert run(main()) == ["done j0", "done j1", "done j2"]
    assert recorder.batches == [["j0", "j1", "j2"]]


def test_incompatible_and_unbatchable_jobs_run_apart() -> None:
    recorder = Recorder()

    async def main() -> None:
        batcher = Batcher(recorder, max_images=8, window_s=0.05)
        await asyncio.gather(
            batcher.submit({"id": "a1"}, key="a", size=1),
            batcher.submit({"id": "b1"}, key="b", size=1),
            batcher.submit({"id": "a2"}, key="a", size=1),
            batcher.submit({"id": "x"}, key=None, size=1),
            batcher.submit({"id": "y"}, key=None, size=1),
        )

    run(main())
    assert recorder.batches == [["a1", "a2"], ["b1"], ["x"], ["y"]]


def test_batches_hold_at_most_max_images_and_keep_jobs_whole() -> None:
    recorder = Recorder()
    sizes = {"j0": 2, "j1": 2, "j2": 1, "j3": 3, "j4": 1}

    async def main() -> None:
        batcher = Batcher(recorder, max_images=4, window_s=0.05)
        await asyncio.gather(
            *(batcher.submit({"id": i}, key="k", size=n) for i, n in sizes.items())
        )

    run(main())
    assert recorder.batches == [["j0", "j1"], ["j2", "j3"], ["j4"]]
    assert all(sum(sizes[j] for j in batch) <= 4 for batch in recorder.batches)


def test_a_lone_job_waits_only_its_window_and_a_full_batch_not_at_all() -> None:
    recorder = Recorder()

    async def lone() -> float:
        batcher = Batcher(recorder, max_images=8, window_s=0.1)
        started = time.monotonic()
        await batcher.submit({"id": "lone"}, key="k", size=1)
        return time.monotonic() - started

    waited = run(lone())
    assert 0.09 <= waited < 2.0

    async def full() -> float:
        # a window far longer than the test: only a full batch can end the wait early
        batcher = Batcher(recorder, max_images=2, window_s=60)
        started = time.monotonic()
        await asyncio.gather(
            batcher.submit({"id": "f1"}, key="k", size=1),
            batcher.submit({"id": "f2"}, key="k", size=1),
        )
        return time.monotonic() - started

    assert run(full()) < 5
    assert recorder.batches[-1] == ["f1", "f2"]


def test_jobs_that_queue_during_a_batch_form_the_next_one() -> None:
    hold = threading.Event()
    recorder = Recorder(hold)

    async def main() -> None:
        batcher = Batcher(recorder, max_images=8, window_s=0.0)
        first = asyncio.create_task(batcher.submit({"id": "first"}, key="k", size=1))
        await asyncio.to_thread(recorder.started.wait, 5)
        later = [
            asyncio.create_task(batcher.submit({"id": f"l{i}"}, key="k", size=1)) for i in range(3)
        ]
        await asyncio.sleep(0.05)
        hold.set()
        await asyncio.gather(first, *later)

    run(main())
    assert recorder.batches == [["first"], ["l0", "l1", "l2"]]


def test_a_job_cancelled_while_waiting_never_runs() -> None:
    recorder = Recorder()

    async def main() -> list[Any]:
        batcher = Batcher(recorder, max_images=8, window_s=0.2)
        gone = asyncio.create_task(batcher.submit({"id": "gone"}, key="k", size=1))
        stays = asyncio.create_task(batcher.submit({"id": "stays"}, key="k", size=1))
        await asyncio.sleep(0.02)
        gone.cancel()
        return await asyncio.gather(gone, stays, return_exceptions=True)

    gone, stays = run(main())
    assert isinstance(gone, asyncio.CancelledError)
    assert stays == "done stays"
    assert recorder.batches == [["stays"]]


def test_a_job_cancelled_while_running_leaves_and_the_others_finish() -> None:
    hold = threading.Event()
    recorder = Recorder(hold)

    async def main() -> list[Any]:
        batcher = Batcher(recorder, max_images=8, window_s=0.05)
        tasks = [
            asyncio.create_task(batcher.submit({"id": f"r{i}"}, key="k", size=1)) for i in range(3)
        ]
        await asyncio.to_thread(recorder.started.wait, 5)
        tasks[1].cancel()
        await asyncio.sleep(0.01)
        hold.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main())
    assert results[0] == "done r0" and results[2] == "done r2"
    assert isinstance(results[1], asyncio.CancelledError)
    # the executor saw the flag, so a running generation can stop the cancelled job's work
    assert recorder.cancelled_seen == [False, True, False]


def test_an_executor_bug_fails_the_batch_not_the_batcher() -> None:
    calls: list[int] = []

    def broken(batch: list[Entry]) -> list[Any]:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return ["ok"] * len(batch)

    async def main() -> tuple[Any, Any]:
        batcher = Batcher(broken, max_images=8, window_s=0.0)
        first = await asyncio.gather(
            batcher.submit({"id": "a"}, key="k", size=1), return_exceptions=True
        )
        second = await batcher.submit({"id": "b"}, key="k", size=1)
        return first[0], second

    first, second = run(main())
    assert isinstance(first, RuntimeError) and second == "ok"


def test_batch_max_auto_is_eight_on_cuda_and_off_elsewhere() -> None:
    assert Settings().batch_images() == 1  # off: the seed promise is bit-for-bit
    assert Settings(batch_max=3).batch_images() == 3
    assert Settings.from_env({"SDWORKER_BATCH_MAX": "4"}).batch_max == 4
    assert Settings.from_env({"SDWORKER_BATCH_WINDOW_MS": "12.5"}).batch_window_ms == 12.5


FACTS = {
    "m": ModelFacts("m", 512, 512, family("sd1")),
    "n": ModelFacts("n", 512, 512, family("sd1")),
}


def key_of(**fields: Any) -> Hashable | None:
    raw = {"prompt": "p", "seed": 1, **fields}
    return batch_key(
        parse_input(raw, InputContext.of(FACTS, default_model="m", max_pixels=2048**2, loras=["l"]))
    )


def test_batch_key_ignores_prompt_seed_and_output_but_not_the_settings() -> None:
    base = key_of()
    assert base is not None
    assert key_of(prompt="other", seed=9, num_images=3, output_format="jpeg") == base
    assert key_of(negative_prompt="blurry") == key_of(negative_prompt="ugly")
    for different in (
        {"model": "n"},
        {"width": 256},
        {"height": 256},
        {"num_inference_steps": 10},
        {"guidance_scale": 3.0},
        {"scheduler": "Euler a"},
        {"clip_skip": 2},
        {"negative_prompt": "blurry"},
    ):
        assert key_of(**different) != base, different
    # the same sampler under two names batches together
    assert key_of(scheduler="Euler a") == key_of(scheduler="EulerAncestralDiscreteScheduler")


@pytest.mark.parametrize(
    "fields",
    [
        {"image": "aGVsbG8="},
        {"lora": "l"},
        {"use_compel": True},
        {"scheduler": "DPM++ SDE"},
    ],
)
def test_images_loras_compel_and_seeded_noise_samplers_run_alone(fields: dict[str, Any]) -> None:
    assert key_of(**fields) is None
