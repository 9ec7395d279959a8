"""SD 3.x and FLUX.1 behind a real ``sdworker serve`` with the packaged worker: every mode,
a Kontext edit, the seed promise, a FLUX.1 LoRA, and a field that does not apply to a
family refused with the family named, through RunPod's own routes."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from server_harness import PACKAGED, ServerProcess

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2, "seed": 11}


def png_b64(size: tuple[int, int], color: tuple[int, int, int] | int, mode: str = "RGB") -> str:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


IMAGE = png_b64((96, 80), (200, 30, 30))
MASK = png_b64((96, 80), 255, "L")


def pixels(entry: dict[str, Any]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(entry["image"]))).convert("RGB"))


@pytest.fixture(scope="module")
def server(serve: Callable[..., ServerProcess], family_models_dir: Path) -> ServerProcess:
    return serve(
        PACKAGED,
        workers=1,
        SDWORKER_MODELS_DIR=str(family_models_dir),
        SDWORKER_DEFAULT_MODEL="tiny-flux",
        HF_HUB_OFFLINE="1",
    )


def runsync(server: ServerProcess, **fields: Any) -> dict[str, Any]:
    job = {"prompt": "a lighthouse", **SMALL, **fields}
    body: dict[str, Any] = httpx.post(
        f"{server.url}/runsync", json={"input": job}, timeout=180
    ).json()
    return body


def images(server: ServerProcess, **fields: Any) -> list[dict[str, Any]]:
    body = runsync(server, **fields)
    assert body["status"] == "COMPLETED", body
    output: list[dict[str, Any]] = body["output"]
    return output


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-flux"])
def test_every_mode(server: ServerProcess, model: str) -> None:
    assert pixels(images(server, model=model)[0]).shape == (64, 64, 3)
    sized = {"width": None, "height": None}
    img2img = images(server, model=model, image=IMAGE, strength=0.7, **sized)
    inpaint = images(server, model=model, image=IMAGE, mask_image=MASK, **sized)
    assert pixels(img2img[0]).shape == pixels(inpaint[0]).shape == (80, 96, 3)


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-flux"])
def test_the_seed_promise(server: ServerProcess, model: str) -> None:
    both = images(server, model=model, seed=20, num_images=2)
    second = images(server, model=model, seed=21)
    assert [e["seed"] for e in both] == [20, 21] and second[0]["seed"] == 21
    assert np.array_equal(pixels(both[1]), pixels(second[0]))


def test_a_kontext_edit(server: ServerProcess) -> None:
    out = images(
        server,
        model="tiny-flux-kontext",
        prompt="make it blue",
        image=IMAGE,
        width=None,
        height=None,
    )
    assert pixels(out[0]).shape == (80, 96, 3)


def test_a_flux_lora(server: ServerProcess) -> None:
    plain = images(server)
    styled = images(server, lora={"name": "flux-ink", "scale": 0.8})
    assert not np.array_equal(pixels(plain[0]), pixels(styled[0]))


def test_a_field_that_does_not_apply_names_the_family(server: ServerProcess) -> None:
    body = runsync(server, use_compel=True, hires={"scale": 2})
    assert body["status"] == "FAILED"
    assert body["error"] == (
        "invalid input: use_compel: does not apply to FLUX.1 models (model 'tiny-flux') "
        "(got True); hires: does not apply to FLUX.1 models (model 'tiny-flux')"
    )
    body = runsync(server, model="tiny-sd3", true_cfg_scale=3.0, negative_prompt="fog")
    assert body["error"] == (
        "invalid input: true_cfg_scale: does not apply to SD 3.x models (model 'tiny-sd3') "
        "(got 3.0)"
    )
