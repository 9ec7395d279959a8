"""LoRA per request on the tiny SD and SDXL models: on, off, two at once, cached, no leakage."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from sdworker.runpod.adapter import RunpodAdapter
from tests.integration.test_generation import pixels, png_b64

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}
LORA_OF = {"tiny": "ink", "tiny-sdxl": "neon"}


def job(**fields: Any) -> dict[str, Any]:
    return {"id": "l", "input": {"prompt": "a lighthouse", "seed": 21, **SMALL, **fields}}


def image(worker: RunpodAdapter, **fields: Any) -> np.ndarray:
    out = worker.handle_sync(job(**fields))
    assert isinstance(out, list), out
    return pixels(out[0])


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl"])
def test_lora_changes_the_image_and_leaves_nothing_behind(
    fworker: RunpodAdapter, model: str
) -> None:
    lora = LORA_OF[model]
    before = image(fworker, model=model)
    with_lora = image(fworker, model=model, lora=[{"name": lora, "scale": 1.0}])
    after = image(fworker, model=model)
    assert not np.array_equal(before, with_lora)
    assert np.array_equal(before, after)  # bit for bit: no adapter left active, nothing fused
    # img2img takes the same adapters
    init = {"image": png_b64((64, 64), (30, 30, 200)), "strength": 0.8}
    assert not np.array_equal(
        image(fworker, model=model, **init), image(fworker, model=model, lora=lora, **init)
    )


def test_base_weights_are_never_fused(fworker: RunpodAdapter, features_models: Any) -> None:
    import torch
    from safetensors.torch import load_file

    image(fworker, lora="ink")
    unet = fworker.service.generator.cache.get("tiny").base.unet
    baked = load_file(
        str(features_models / "tiny" / "unet" / "diffusion_pytorch_model.safetensors")
    )
    checked = 0
    for name, param in unet.named_parameters():
        if "lora_" in name:
            continue
        assert torch.equal(param.detach().cpu(), baked[name.replace(".base_layer", "")]), name
        checked += ".base_layer" in name
    assert checked > 0  # the wrapped layers were among those compared


def test_two_loras_at_once_and_scales(fworker: RunpodAdapter) -> None:
    plain = image(fworker)
    ink = image(fworker, lora="ink")
    rust = image(fworker, lora=[{"name": "rust", "scale": 1.0}])
    both = image(fworker, lora=[{"name": "ink", "scale": 1.0}, {"name": "rust", "scale": 1.0}])
    half = image(fworker, lora=[{"name": "ink", "scale": 0.5}])
    zero = image(fworker, lora=[{"name": "ink", "scale": 0.0}])
    distinct = [plain, ink, rust, both, half]
    for i, a in enumerate(distinct):
        for b in distinct[i + 1 :]:
            assert not np.array_equal(a, b)
    assert np.array_equal(zero, plain)
    assert np.array_equal(image(fworker), plain)


def test_a_lora_used_again_comes_from_memory(fworker: RunpodAdapter) -> None:
    first = image(fworker, lora="ink", seed=3)
    reads = fworker.service.assets.disk_reads
    again = image(fworker, lora="ink", seed=3)
    assert np.array_equal(first, again)
    assert fworker.service.assets.disk_reads == reads
    assert "ink" in fworker.service.generator.cache.get("tiny").adapters.resident


@pytest.mark.parametrize(
    ("model", "lora", "message"),
    [
        # the family is read from the file's header: refused at validation, before any load
        (
            "tiny",
            "neon",
            "invalid input: lora[0].name: is made for SDXL models; model 'tiny' is SD 1.x",
        ),
        ("tiny-sdxl", "ink", "LoRA 'ink' does not fit model 'tiny-sdxl' (SDXL)"),
    ],
)
def test_a_lora_of_another_family_fails_clearly(
    fworker: RunpodAdapter, model: str, lora: str, message: str
) -> None:
    before = image(fworker, model=model)
    out = fworker.handle_sync(job(model=model, lora=lora))
    assert isinstance(out, dict) and out["error"].startswith(message), out
    assert np.array_equal(image(fworker, model=model), before)


def test_a_lora_of_another_family_is_refused_before_the_model_loads(
    features_settings: Any,
) -> None:
    fresh = RunpodAdapter(features_settings)
    out = fresh.handle_sync(job(model="tiny", lora="neon"))
    assert isinstance(out, dict) and "lora[0].name: is made for SDXL models" in out["error"]
    assert not fresh.service.gpu_started


def test_unknown_lora_names_the_baked_ones(fworker: RunpodAdapter) -> None:
    out = fworker.handle_sync(job(lora="nope"))
    assert isinstance(out, dict)
    assert (
        "lora[0].name: unknown LoRA (give a baked or volume LoRA's name, or url or hub); LoRAs: ink, neon, rust"
        in out["error"]
    )


def test_concurrent_plain_and_lora_requests_do_not_mix(fworker: RunpodAdapter) -> None:
    expected = {None: image(fworker, seed=9), "ink": image(fworker, seed=9, lora="ink")}
    got: list[tuple[str | None, np.ndarray]] = []
    lock = threading.Lock()

    def run(lora: str | None) -> None:
        fields: dict[str, Any] = {"seed": 9}
        if lora:
            fields["lora"] = lora
        result = image(fworker, **fields)
        with lock:
            got.append((lora, result))

    threads = [
        threading.Thread(target=run, args=(name,)) for name in (None, "ink", None, "ink", None)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 5
    for lora, result in got:
        assert np.array_equal(result, expected[lora]), lora


def test_a_batched_call_after_a_lora_job_runs_without_its_adapters(
    features_settings: Any,
    fworker: RunpodAdapter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio
    import logging

    import runpod

    monkeypatch.setattr(runpod.serverless, "progress_update", lambda job, p: None)
    plain = [image(fworker, seed=s) for s in (31, 32)]
    batching = RunpodAdapter(features_settings.with_(batch_max=8, batch_window_ms=300))
    lora_out = batching.handle_sync(job(seed=31, lora="ink"))  # leaves "ink" resident
    assert isinstance(lora_out, list)

    async def together() -> list[Any]:
        return await asyncio.gather(*(batching.handle(job(seed=s)) for s in (31, 32)))

    with caplog.at_level(logging.INFO, logger="sdworker.gpu.generate"):
        outs = asyncio.run(together())
    assert "ran 2 jobs (2 images) in one call" in caplog.text
    for out, want in zip(outs, plain, strict=True):
        assert isinstance(out, list)
        delta = np.abs(pixels(out[0]).astype(int) - want.astype(int))
        assert delta.max() <= 1  # batched rounding only, no LoRA left on
