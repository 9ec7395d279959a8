"""``torch.compile`` on the tiny model: compiled at the warm-up, never again in a job.

The compile path runs here with a counting dynamo backend (tracing is real, code generation is
skipped: inductor on two CPU cores takes minutes), so what is checked is where compiles happen
and which calls run compiled graphs, and that compiled images equal the plain ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch._dynamo

from sdworker.core.errors import ConfigError
from sdworker.core.settings import Settings, parse_sizes
from sdworker.runpod.adapter import RunpodAdapter

COMPILES: list[int] = []  # graphs compiled, by node count
RUNS: list[int] = []  # calls of compiled graphs


@torch._dynamo.register_backend(name="sdworker_counting")  # type: ignore[misc]
def counting(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
    COMPILES.append(len(gm.graph.nodes))

    def run(*args: Any) -> Any:
        RUNS.append(1)
        return gm.forward(*args)

    return run


@pytest.fixture(scope="module")
def compiled(features_settings: Settings) -> Iterator[RunpodAdapter]:
    limit = torch._dynamo.config.recompile_limit
    COMPILES.clear()
    yield RunpodAdapter(
        features_settings.with_(
            compile=True, compile_backend="sdworker_counting", compile_sizes="64x64"
        )
    )
    # the stance and dynamo's caches are process-wide: leave them as the other tests expect
    torch.compiler.set_stance("default")
    torch._dynamo.reset()
    torch._dynamo.config.recompile_limit = limit


def job(width: int, height: int, **extra: Any) -> dict[str, Any]:
    fields = {"prompt": "a lighthouse", "seed": 3, "num_inference_steps": 3, **extra}
    return {"id": "c", "input": {**fields, "width": width, "height": height}}


def test_jobs_never_compile_and_warmed_up_shapes_run_compiled(
    compiled: RunpodAdapter, fworker: RunpodAdapter
) -> None:
    compiled.service.preload()
    warmed = len(COMPILES)
    assert warmed >= 2  # the UNet and the VAE decoder, at 64x64
    assert torch._dynamo.config.recompile_limit >= 64

    specs = {
        # PNDM, the model's own: integer timesteps
        "own sampler": (job(64, 64), True),
        # float timesteps: another UNet graph, which the warm-up compiled too
        "Euler a": (job(64, 64, scheduler="Euler a"), True),
        # a size the warm-up did not cover runs uncompiled rather than compiling in the job
        "other size": (job(96, 64), False),
    }
    for label, (spec, compiled_graphs) in specs.items():
        RUNS.clear()
        got = compiled.handle_sync(spec)
        if compiled_graphs:
            assert len(RUNS) >= 4, label  # 3 UNet steps and the decode ran compiled graphs
        else:
            assert RUNS == [], label
        assert len(COMPILES) == warmed, label  # no job compiled anything
        want = fworker.handle_sync(spec)
        assert isinstance(got, list) and isinstance(want, list)
        assert got[0]["image"] == want[0]["image"], label  # the same graph, the same pixels


def test_a_lora_on_a_compiled_model_is_announced_once(
    compiled: RunpodAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sdworker.gpu.adapters"):
        for name in ("ink", "rust"):
            out = compiled.handle_sync(job(64, 64, lora=name))
            assert isinstance(out, list), out
    notes = [r for r in caplog.records if "run uncompiled" in r.getMessage()]
    assert len(notes) == 1 and "tiny" in notes[0].getMessage()


def test_compile_sizes_are_checked_at_start() -> None:
    assert parse_sizes("512x512, 768X512") == [(512, 512), (768, 512)]
    assert Settings(compile_sizes="640x480").warmup_sizes((512, 512)) == [(640, 480)]
    assert Settings().warmup_sizes((1024, 1024)) == [(1024, 1024)]
    for bad, reason in (("512", "WIDTHxHEIGHT"), ("512x500", "multiples of 8"), ("32x64", "64")):
        with pytest.raises(ConfigError, match=rf"SDWORKER_COMPILE_SIZES: .*{reason}"):
            Settings.from_env({"SDWORKER_COMPILE_SIZES": bad})
