"""RunPod's own SD workers' payloads, unchanged, on the tiny models; the SDXL refiner."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from sdworker.core.settings import Settings
from sdworker.gpu.weights import tensor_bytes
from sdworker.runpod.adapter import RunpodAdapter
from tests.integration.test_generation import pixels, png_b64

SMALL = {"width": 64, "height": 64, "num_inference_steps": 4}

#: worker-sdxl's README example request, as its clients send it
WORKER_SDXL_README: dict[str, Any] = {
    "prompt": "A majestic steampunk dragon soaring through a cloudy sky, intricate clockwork "
    "details, golden hour lighting, highly detailed",
    "negative_prompt": "blurry, low quality, deformed, ugly, text, watermark, signature",
    "height": 1024,
    "width": 1024,
    "num_inference_steps": 25,
    "refiner_inference_steps": 50,
    "guidance_scale": 7.5,
    "strength": 0.3,
    "high_noise_frac": 0.8,
    "seed": 42,
    "scheduler": "K_EULER",
    "num_images": 1,
}
#: the RunPod SD v1 endpoint's documented request (its quick-start), and the issue's payload
SD_V1_README: dict[str, Any] = {
    "prompt": "A cute fluffy white dog in the style of a Pixar animation 3D drawing."
}
SD_V1_ISSUE: dict[str, Any] = {
    "prompt": "a dog",
    "num_outputs": 2,
    "scheduler": "K-LMS",
    "nsfw": True,
}


def refined(**fields: Any) -> dict[str, Any]:
    return {
        "id": "r",
        "input": {"prompt": "a lighthouse", "model": "tiny-sdxl", "seed": 11, **SMALL, **fields},
    }


def data_uri_pixels(uri: str) -> np.ndarray:
    head, _, data = uri.partition(",")
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


@pytest.fixture(scope="module")
def sdxl_shaped(features_settings: Settings) -> RunpodAdapter:
    """A worker that replaces worker-sdxl: it answers in worker-sdxl's shape."""
    return RunpodAdapter(features_settings.with_(output_shape="worker-sdxl"))


def base_bytes(pipe: Any) -> int:
    """Bytes of a pipeline's own weights: its modules' tensors, LoRA adapters left out."""
    total = 0
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            tensors = [*module.named_parameters(), *module.named_buffers()]
            total += sum(t.numel() * t.element_size() for n, t in tensors if "lora_" not in n)
    return total


def test_the_refiner_is_built_around_the_base_modules(fworker: RunpodAdapter) -> None:
    out = fworker.handle_sync(refined(refiner_inference_steps=4))
    assert isinstance(out, list), out
    loaded = fworker.service.generator.cache.get("tiny-sdxl")
    refiner = loaded.extras["refiner"]
    assert type(refiner.pipe).__name__ == "StableDiffusionXLImg2ImgPipeline"
    assert refiner.pipe.vae is loaded.base.vae
    assert refiner.pipe.text_encoder_2 is loaded.base.text_encoder_2
    assert refiner.pipe.tokenizer_2 is loaded.base.tokenizer_2
    assert refiner.pipe.text_encoder is None and refiner.pipe.unet is not loaded.base.unet
    # the model's bytes are the base's modules plus the refiner's UNet, nothing twice (LoRA
    # adapters earlier tests left resident on the base are not part of the model's weights)
    assert loaded.nbytes == base_bytes(loaded.base) + refiner.nbytes
    assert refiner.nbytes == tensor_bytes(refiner.pipe.unet) > 0


@pytest.mark.parametrize(
    "fields",
    [{"high_noise_frac": 0.6, "refiner_inference_steps": 4}, {"refiner_inference_steps": 4}],
    ids=["ensemble", "refine-after"],
)
def test_the_seed_promise_holds_with_the_refiner(
    fworker: RunpodAdapter, fields: dict[str, Any]
) -> None:
    both = fworker.handle_sync(refined(seed=20, num_images=2, **fields))
    second = fworker.handle_sync(refined(seed=21, **fields))
    assert isinstance(both, list) and isinstance(second, list), (both, second)
    assert [o["seed"] for o in both] == [20, 21]
    assert np.array_equal(pixels(both[1]), pixels(second[0]))
    assert not np.array_equal(pixels(both[0]), pixels(both[1]))


def test_the_refiner_changes_the_image(fworker: RunpodAdapter) -> None:
    plain = fworker.handle_sync(refined())
    ensemble = fworker.handle_sync(refined(high_noise_frac=0.5))
    after = fworker.handle_sync(refined(refiner_inference_steps=4))
    assert all(isinstance(o, list) for o in (plain, ensemble, after))
    images = [pixels(o[0]) for o in (plain, ensemble, after)]  # type: ignore[index]
    assert not np.array_equal(images[0], images[1])
    assert not np.array_equal(images[0], images[2])


def test_a_model_without_a_refiner_fails_before_any_gpu_work(features_settings: Settings) -> None:
    worker = RunpodAdapter(features_settings)
    out = worker.handle_sync({"id": "n", "input": {"prompt": "x", "refiner_inference_steps": 50}})
    assert out["error"] == (
        "invalid input: refiner_inference_steps: does not apply to SD 1.x models "
        "(model 'tiny') (got 50)"
    )
    assert out["failure"]["problems"][0]["field"] == "refiner_inference_steps"
    assert not worker.service.gpu_started


def test_worker_sdxl_readme_example_in_worker_sdxl_shape(sdxl_shaped: RunpodAdapter) -> None:
    # every field as the README has it; only the size shrunk, for a CPU (1024² takes minutes)
    payload = {**WORKER_SDXL_README, "model": "tiny-sdxl", "width": 128, "height": 128}
    out = sdxl_shaped.handle_sync({"id": "w", "input": payload})
    assert set(out) == {"images", "image_url", "seed"}, out
    assert out["seed"] == 42 and len(out["images"]) == 1
    assert out["image_url"] == out["images"][0]
    assert data_uri_pixels(out["image_url"]).shape == (128, 128, 3)


def test_worker_sdxl_issue_payload_with_image_url(sdxl_shaped: RunpodAdapter) -> None:
    image = "data:image/png;base64," + png_b64((64, 64), (200, 30, 30))
    payload = {
        "prompt": "a dog",
        "model": "tiny-sdxl",
        "refiner_inference_steps": 50,
        "high_noise_frac": 0.8,
        "scheduler": "K_EULER",
        "image_url": image,
        "num_inference_steps": 10,
        "seed": 5,
        "num_images": 2,
    }
    out = sdxl_shaped.handle_sync({"id": "w", "input": payload})
    assert set(out) == {"images", "image_url", "seed"}, out
    assert out["seed"] == 5 and len(out["images"]) == 2
    assert data_uri_pixels(out["images"][1]).shape == (64, 64, 3)


def test_worker_sdxl_shape_keeps_failures_and_envelopes(sdxl_shaped: RunpodAdapter) -> None:
    bad = sdxl_shaped.handle_sync({"id": "w", "input": {"prompt": "x", "image_url": 3}})
    assert set(bad) == {"error", "failure"}
    assert bad["failure"]["problems"][0]["field"] == "image_url"
    envelope = {"modelInputs": {"prompt": "x", **SMALL}, "callInputs": {"MODEL_ID": "tiny"}}
    out = sdxl_shaped.handle_sync({"id": "e", "input": envelope})
    assert "images" not in out and "image_url" not in out, out


@pytest.mark.parametrize("payload", [SD_V1_README, SD_V1_ISSUE], ids=["readme", "issue"])
def test_sd_v1_payloads_answer_in_our_shape(
    fworker: RunpodAdapter, payload: dict[str, Any]
) -> None:
    # the payload as sent, with a size and step count a CPU runs in a second
    fast = {"num_inference_steps": 2, "width": 64, "height": 64}
    out = fworker.handle_sync({"id": "v", "input": {**payload, **fast}})
    assert isinstance(out, list), out
    assert len(out) == payload.get("num_outputs", 1)
    assert all(set(o) >= {"image", "seed"} for o in out)
    assert pixels(out[0]).shape == (64, 64, 3)


def test_sd_v1_inpaint_with_lora_by_name(fworker: RunpodAdapter) -> None:
    payload = {
        "prompt": "a cat",
        "init_image": png_b64((64, 64), (10, 200, 30)),
        "mask": png_b64((64, 64), 255, "L"),
        "prompt_strength": 0.7,
        "num_outputs": 1,
        "num_inference_steps": 4,
        "scheduler": "EULER-A",
        "lora": "ink",
        "lora_scale": 0.5,
        "nsfw": False,
        "seed": 3,
    }
    out = fworker.handle_sync({"id": "v", "input": payload})
    assert isinstance(out, list), out
    assert pixels(out[0]).shape == (64, 64, 3)
