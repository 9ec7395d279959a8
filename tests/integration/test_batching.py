"""Cross-request batching on the tiny model: same images as single runs, each job its own."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sdworker.core.settings import Settings
from sdworker.runpod.adapter import RunpodAdapter

SMALL = {"width": 64, "height": 64, "num_inference_steps": 3}


@pytest.fixture(scope="module")
def batching(settings: Settings) -> Iterator[RunpodAdapter]:
    yield RunpodAdapter(settings.with_(batch_max=8, batch_window_ms=300))


@pytest.fixture(autouse=True)
def no_progress_http(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    import runpod

    seen: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        runpod.serverless, "progress_update", lambda job, p: seen.append((job["id"], p))
    )
    return seen


def job(job_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": job_id, "input": {"prompt": "a lighthouse", **SMALL, **fields}}


def pixels(entry: dict[str, Any]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(entry["image"]))).convert("RGB"))


def prompt_of(entry: dict[str, Any]) -> str:
    return str(Image.open(io.BytesIO(base64.b64decode(entry["image"]))).info["parameters"])


async def together(worker: RunpodAdapter, jobs: list[dict[str, Any]]) -> list[Any]:
    return await asyncio.gather(*(worker.handle(j) for j in jobs))


def test_batched_jobs_match_single_runs_each_with_its_own_seeds_and_prompt(
    worker: RunpodAdapter, batching: RunpodAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = [
        job("a", prompt="a red barn", seed=11),
        job("b", prompt="a blue car", seed=20, num_images=2),
        job("c", prompt="a green tree", seed=11, negative_prompt="fog"),
        job("d", prompt="a grey cat", seed=99, num_images=3),
    ]
    # c has a negative prompt: another batch key, so it runs apart from a, b and d
    with caplog.at_level(logging.INFO, logger="sdworker.gpu.generate"):
        batched = asyncio.run(together(batching, jobs))
    assert "ran 3 jobs (6 images) in one call" in caplog.text

    singles = [worker.handle_sync(j) for j in jobs]
    compared = differing = 0
    for spec, got, want in zip(jobs, batched, singles, strict=True):
        assert isinstance(got, list), got
        seed, count = spec["input"]["seed"], spec["input"].get("num_images", 1)
        assert [e["seed"] for e in got] == [seed + i for i in range(count)]
        for mine, ref in zip(got, want, strict=True):
            assert prompt_of(mine).startswith(spec["input"]["prompt"] + "\n")
            delta = np.abs(pixels(mine).astype(int) - pixels(ref).astype(int))
            # batched kernels round differently in the last float bits: at most one level
            assert delta.max() <= 1
            compared += delta.size
            differing += int((delta > 0).sum())
    assert differing / compared < 0.001
    # jobs with different prompts really got different images (no cross-over)
    assert not np.array_equal(pixels(batched[0][0]), pixels(batched[2][0]))


def test_a_lone_job_with_batching_on_is_bit_identical_to_the_plain_path(
    worker: RunpodAdapter, batching: RunpodAdapter
) -> None:
    spec = job("solo", seed=5, num_images=2)
    [got] = asyncio.run(together(batching, [spec]))
    want = worker.handle_sync(spec)
    assert [pixels(e).tobytes() for e in got] == [pixels(e).tobytes() for e in want]


def test_a_bad_job_fails_alone_and_its_company_succeeds(batching: RunpodAdapter) -> None:
    good, bad, other = asyncio.run(
        together(
            batching,
            [job("g", seed=1), job("x", seed=2, width=500), job("o", seed=3, lora="missing")],
        )
    )
    assert isinstance(good, list) and good[0]["seed"] == 1
    assert "width: must be a multiple of 8 (got 500)" in bad["error"]
    assert "unknown LoRA" in other["error"]


def test_a_job_cancelled_mid_batch_leaves_and_the_others_finish(
    batching: RunpodAdapter, no_progress_http: list[tuple[str, dict[str, Any]]]
) -> None:
    slow = {"num_inference_steps": 40}

    async def main() -> list[Any]:
        tasks = [
            asyncio.create_task(batching.handle(job(f"k{i}", seed=i, **slow))) for i in range(3)
        ]
        while not any(p["step"] >= 2 for _, p in no_progress_http):
            await asyncio.sleep(0.01)
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    first, cancelled, last = asyncio.run(main())
    assert isinstance(cancelled, asyncio.CancelledError)
    assert isinstance(first, list) and first[0]["seed"] == 0
    assert isinstance(last, list) and last[0]["seed"] == 2
    # the batch's progress reached every job, the survivors to the end
    finals = {jid: p for jid, p in no_progress_http if p["step"] == p["steps"]}
    assert set(finals) >= {"k0", "k2"}
