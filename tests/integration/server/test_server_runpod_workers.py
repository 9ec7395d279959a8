"""A worker-sdxl client against ``sdworker serve``: its README request, unchanged but for the
size, through the real worker loop, answered in worker-sdxl's shape."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from server_harness import ServerProcess

HANDLER = Path(__file__).resolve().parents[3] / "handler.py"


@pytest.fixture(scope="module")
def sdxl_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sdworker.builder.tiny import bake_tiny_sdxl

    root = tmp_path_factory.mktemp("sdxl-models")
    bake_tiny_sdxl(root, "tiny-sdxl")
    return root


def test_worker_sdxl_request_through_the_endpoint(
    serve: Callable[..., ServerProcess], sdxl_models: Path
) -> None:
    server = serve(
        str(HANDLER),
        workers=1,
        SDWORKER_MODELS_DIR=str(sdxl_models),
        SDWORKER_DEFAULT_MODEL="tiny-sdxl",
        SDWORKER_OUTPUT_SHAPE="worker-sdxl",
        HF_HUB_OFFLINE="1",
    )
    job = {
        "prompt": "A majestic steampunk dragon soaring through a cloudy sky",
        "negative_prompt": "blurry, low quality",
        "height": 128,
        "width": 128,
        "num_inference_steps": 25,
        "refiner_inference_steps": 50,
        "guidance_scale": 7.5,
        "strength": 0.3,
        "high_noise_frac": 0.8,
        "seed": 42,
        "scheduler": "K_EULER",
        "num_images": 1,
    }
    body = httpx.post(f"{server.url}/runsync", json={"input": job}, timeout=240).json()
    assert body["status"] == "COMPLETED", body
    output = body["output"]
    assert set(output) == {"images", "image_url", "seed"} and output["seed"] == 42
    head, _, data = output["image_url"].partition(",")
    assert head == "data:image/png;base64" and output["images"] == [output["image_url"]]
    assert base64.b64decode(data).startswith(b"\x89PNG")
    bad = {"prompt": "x", "num_outputs": 1, "num_images": 1}
    failed = httpx.post(f"{server.url}/runsync", json={"input": bad}, timeout=60).json()
    assert failed["status"] == "FAILED" and "num_outputs" in failed["error"]
