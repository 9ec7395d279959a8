"""``torch.compile`` on the tiny model: compiled at the warm-up, never again in a job.

The compile path runs here with a counting dynamo backend (tracing is real, code generation is
skipped: inductor on two CPU cores takes minutes), so what is checked is where compiles happen
and which calls run compiled graphs, and that compiled images equal the plain ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch._dynamo

from sdworker.errors import ConfigError
from sdworker.handler import Worker
from sdworker.settings import Settings, parse_sizes

COMPILES: list[int] = []  # graphs compiled, by node count
RUNS: list[int] = []  # calls of compiled graphs


@torch._dynamo.register_backend(name="sdworker_counting")  # type: ignore[misc]
def counting(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
    COMPILES.append(len(gm.graph.nodes))

    def run(*args: Any) -> Any:
        RUNS.append(1)
        return gm.forward(*args)

    return run


@pytest.fixture
def compiled(settings: Settings) -> Iterator[Worker]:
    limit = torch._dynamo.config.recompile_limit
    COMPILES.clear()
    RUNS.clear()
    yield Worker(
        settings.with_(compile=True, compile_backend="sdworker_counting", compile_sizes="64x64")
    )
    # the stance and dynamo's caches are process-wide: leave them as the other tests expect
    torch.compiler.set_stance("default")
    torch._dynamo.reset()
    torch._dynamo.config.recompile_limit = limit


def job(width: int, height: int) -> dict[str, Any]:
    fields = {"prompt": "a lighthouse", "seed": 3, "num_inference_steps": 3}
    return {"id": "c", "input": {**fields, "width": width, "height": height}}


def test_jobs_never_compile_and_warmed_up_shapes_run_compiled(
    compiled: Worker, worker: Worker
) -> None:
    compiled.preload()
    warmed = len(COMPILES)
    assert warmed >= 2  # the UNet and the VAE decoder, at 64x64
    assert torch._dynamo.config.recompile_limit >= 64

    RUNS.clear()
    covered = compiled.handle_sync(job(64, 64))
    assert len(RUNS) >= 4  # 3 UNet steps and the decode ran compiled graphs
    RUNS.clear()
    uncovered = compiled.handle_sync(job(96, 64))
    assert RUNS == []  # another size runs uncompiled rather than compiling in the job
    assert len(COMPILES) == warmed

    assert isinstance(covered, list) and isinstance(uncovered, list)
    for got, spec in ((covered, job(64, 64)), (uncovered, job(96, 64))):
        want = worker.handle_sync(spec)
        assert isinstance(want, list)
        assert got[0]["image"] == want[0]["image"]  # the same graph, the same pixels


def test_compile_sizes_are_checked_at_start() -> None:
    assert parse_sizes("512x512, 768X512") == [(512, 512), (768, 512)]
    assert Settings(compile_sizes="640x480").warmup_sizes((512, 512)) == [(640, 480)]
    assert Settings().warmup_sizes((1024, 1024)) == [(1024, 1024)]
    for bad, reason in (("512", "WIDTHxHEIGHT"), ("512x500", "multiples of 8"), ("32x64", "64")):
        with pytest.raises(ConfigError, match=rf"SDWORKER_COMPILE_SIZES: .*{reason}"):
            Settings.from_env({"SDWORKER_COMPILE_SIZES": bad})
