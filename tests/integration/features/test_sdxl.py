"""SD 1.x, SD 2.x (v-prediction) and SDXL through the one code path, on tiny models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sdworker.gpu.derive import build_scheduler
from sdworker.runpod.adapter import RunpodAdapter
from tests.integration.test_generation import pixels, png_b64

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}


def job(**fields: Any) -> dict[str, Any]:
    return {"id": "f", "input": {"prompt": "a lighthouse", "seed": 11, **SMALL, **fields}}


def mode_fields(mode: str) -> dict[str, Any]:
    if mode == "txt2img":
        return {}
    fields: dict[str, Any] = {"image": png_b64((64, 64), (200, 30, 30)), "strength": 0.75}
    if mode == "inpaint":
        fields["mask_image"] = png_b64((64, 64), 255, "L")
    return fields


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl", "tiny-v"])
@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_every_family_runs_every_mode(fworker: RunpodAdapter, model: str, mode: str) -> None:
    out = fworker.handle_sync(job(model=model, **mode_fields(mode)))
    assert isinstance(out, list), out
    image = pixels(out[0])
    assert image.shape == (64, 64, 3)
    assert image.std() > 0  # a picture, not a flat colour


@pytest.mark.parametrize(("model", "size"), [("tiny", 512), ("tiny-v", 768), ("tiny-sdxl", 1024)])
def test_each_family_defaults_to_its_native_size(
    fworker: RunpodAdapter, model: str, size: int
) -> None:
    request = fworker.service.prepare({"prompt": "x", "model": model}).request
    assert (request.width, request.height) == (size, size)


def test_sdxl_pipelines_are_the_xl_ones_and_share_modules(fworker: RunpodAdapter) -> None:
    fworker.handle_sync(job(model="tiny-sdxl"))
    loaded = fworker.service.generator.cache.get("tiny-sdxl")
    pipes = [loaded.pipeline(m) for m in ("txt2img", "img2img", "inpaint")]
    assert [type(p).__name__ for p in pipes] == [
        "StableDiffusionXLPipeline",
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline",
    ]
    for name in ("unet", "text_encoder", "text_encoder_2", "tokenizer_2", "vae"):
        assert getattr(pipes[0], name) is getattr(pipes[1], name) is getattr(pipes[2], name)


def test_sdxl_seed_promise_is_bit_for_bit(fworker: RunpodAdapter) -> None:
    batch = fworker.handle_sync(job(model="tiny-sdxl", seed=40, num_images=2))
    single = fworker.handle_sync(job(model="tiny-sdxl", seed=41))
    assert isinstance(batch, list) and isinstance(single, list)
    assert np.array_equal(pixels(batch[1]), pixels(single[0]))
    assert not np.array_equal(pixels(batch[0]), pixels(batch[1]))


def test_v_prediction_survives_a_per_request_scheduler(fworker: RunpodAdapter) -> None:
    request = fworker.service.prepare(job(model="tiny-v", scheduler="Euler a")["input"]).request
    loaded = fworker.service.generator.cache.get("tiny-v")
    assert request.scheduler is not None
    scheduler = build_scheduler(request.scheduler, loaded.scheduler_config)
    assert type(scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert scheduler.config.prediction_type == "v_prediction"
    out = fworker.handle_sync(job(model="tiny-v", scheduler="Euler a"))
    assert isinstance(out, list), out
