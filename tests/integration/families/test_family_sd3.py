"""SD 3.x on the tiny model, in-process: its modes, the seed promise, its schedulers, the T5
sequence length, clip_skip, and running without the T5 encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sdworker.core.settings import Settings
from sdworker.gpu.pipelines import PipelineCache
from sdworker.runpod.adapter import RunpodAdapter
from tests.integration.test_generation import pixels, png_b64

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}


def job(**fields: Any) -> dict[str, Any]:
    input_ = {"prompt": "a lighthouse", "seed": 3, "model": "tiny-sd3", **SMALL, **fields}
    return {"id": "s", "input": input_}


def run(worker: RunpodAdapter, **fields: Any) -> list[dict[str, Any]]:
    out = worker.handle_sync(job(**fields))
    assert isinstance(out, list), out
    return out


def test_txt2img_img2img_and_inpaint(family_worker: RunpodAdapter) -> None:
    image, mask = png_b64((96, 80), (200, 30, 30)), png_b64((96, 80), 255, "L")
    assert pixels(run(family_worker)[0]).shape == (64, 64, 3)
    for fields in ({"image": image, "strength": 0.6}, {"image": image, "mask_image": mask}):
        out = run(family_worker, **{**fields, "width": None, "height": None})
        assert pixels(out[0]).shape == (80, 96, 3)


def test_the_seed_promise(family_worker: RunpodAdapter) -> None:
    several = run(family_worker, seed=10, num_images=2, negative_prompt="fog")
    alone = run(family_worker, seed=11, negative_prompt="fog")
    assert np.array_equal(pixels(several[1]), pixels(alone[0]))


def test_schedulers_sequence_length_and_clip_skip(family_worker: RunpodAdapter) -> None:
    plain = pixels(run(family_worker)[0])
    for fields in (
        {"scheduler": "FlowMatchHeunDiscreteScheduler"},
        {"max_sequence_length": 77},
        {"clip_skip": 2},
    ):
        assert not np.array_equal(plain, pixels(run(family_worker, **fields)[0])), fields
    refused = family_worker.handle_sync(job(scheduler="DPM++ 2M Karras"))
    assert "does not run SD 3.x models (model 'tiny-sd3')" in refused["error"]


def test_an_sd3_lora(family_worker: RunpodAdapter) -> None:
    plain = pixels(run(family_worker)[0])
    styled = pixels(run(family_worker, lora="sd3-ink")[0])
    assert not np.array_equal(plain, styled)
    assert np.array_equal(plain, pixels(run(family_worker)[0]))
    refused = family_worker.handle_sync(job(lora="flux-ink"))
    assert "is made for FLUX.1 models; model 'tiny-sd3' is SD 3.x" in refused["error"]


def test_without_t5(family_settings: Settings, family_models_dir: Path) -> None:
    worker = RunpodAdapter(family_settings.with_(drop_t5=True))
    out = worker.handle_sync(job())
    assert isinstance(out, list), out
    cache = worker.service.generator.cache
    loaded = cache.get("tiny-sd3")
    assert loaded.base.text_encoder_3 is None and loaded.base.tokenizer_3 is None
    # the memory estimate (the family's) leaves the T5 out too
    registry = worker.service.registry
    info = registry.get("tiny-sd3")
    with_t5 = PipelineCache(family_settings, registry)._estimate(info)
    assert cache._estimate(info) < with_t5
