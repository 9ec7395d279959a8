"""Hugging Face's text-to-image task over the format routes (the fake queue): the body read
into one native job, the image's bytes in the type asked for, HF's error shape naming the
field, the key, and the root route beside the playground's page."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sdworker.formats.huggingface import media_type

ClientFactory = Any


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_a_task_is_one_native_job_answered_with_png_bytes(client: TestClient, gateway: Any) -> None:
    body = {
        "inputs": "a lighthouse",
        "parameters": {
            "negative_prompt": "fog",
            "height": 64,
            "width": 72,
            "num_inference_steps": 3,
            "guidance_scale": 6.5,
            "scheduler": "EulerDiscreteScheduler",
            "seed": 42,
        },
    }
    r = client.post("/hf/models/runwayml/stable-diffusion-v1-5", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert _image(r.content).format == "PNG"
    assert r.headers["x-sdworker-seeds"] == "42"
    [job] = [v.input for v in gateway.jobs.values()]
    assert job == {
        "prompt": "a lighthouse",
        "negative_prompt": "fog",
        "height": 64,
        "width": 72,
        "num_inference_steps": 3,
        "guidance_scale": 6.5,
        "scheduler": "EulerDiscreteScheduler",
        "seed": 42,
        "model": "v1-5-pruned-emaonly",  # the hub id it was baked from
        "output_format": "png",
        "upload": False,
    }


@pytest.mark.parametrize(
    ("accept", "kind", "pil"),
    [
        ("image/jpeg", "image/jpeg", "JPEG"),
        ("image/webp", "image/webp", "WEBP"),
        ("text/html, image/webp;q=0.5, image/jpeg;q=0.9", "image/jpeg", "JPEG"),
        ("*/*", "image/png", "PNG"),
        ("", "image/png", "PNG"),
    ],
)
def test_accept_picks_the_image_type(
    client: TestClient, gateway: Any, accept: str, kind: str, pil: str
) -> None:
    gateway.run = _encoding_run
    r = client.post("/", json={"inputs": "x"}, headers={"Accept": accept} if accept else {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == kind
    assert _image(r.content).format == pil
    [job] = [v.input for v in gateway.jobs.values()]
    assert "model" not in job  # the root is the default model's


def _encoding_run(job: dict[str, Any]) -> list[dict[str, Any]]:
    """A worker that encodes in the format asked, as the real one does."""
    import base64

    fmt = job["output_format"]
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, {"jpeg": "JPEG"}.get(fmt, fmt.upper()))
    return [{"image": base64.b64encode(buf.getvalue()).decode(), "seed": 1, "format": fmt}]


def test_bad_fields_are_named_in_hf_error_shape(client: TestClient, gateway: Any) -> None:
    body = {"inputs": " ", "parameters": {"width": "wide", "steps": 3, "scheduler": "Euler z"}}
    r = client.post("/hf/models/tiny", json=body, headers={"Accept": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    for field in ("inputs", "parameters.width", "parameters.steps", "parameters.scheduler"):
        assert field in error, error
    assert "Accept" in error
    assert not gateway.jobs


def test_a_native_rule_is_named_in_hf_terms(client: TestClient) -> None:
    r = client.post("/hf/models/tiny", json={"inputs": "x", "parameters": {"width": 500}})
    assert r.status_code == 400
    assert "parameters.width" in r.json()["error"]


def test_unknown_model_is_404_listing_the_baked_ones(client: TestClient) -> None:
    r = client.post("/hf/models/org/nope", json={"inputs": "x"})
    assert r.status_code == 404
    assert "org/nope" in r.json()["error"] and "tiny" in r.json()["error"]


def test_the_key_is_a_bearer_token(client_factory: ClientFactory, gateway: Any) -> None:
    client = client_factory(gateway, api_key="k")
    r = client.post("/hf/models/tiny", json={"inputs": "x"})
    assert r.status_code == 401 and "Invalid credentials" in r.json()["error"]
    ok = client.post("/", json={"inputs": "x"}, headers={"Authorization": "Bearer k"})
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"


def test_media_type_reads_q_values() -> None:
    assert media_type("image/webp;q=0, image/png;q=0.1") == "image/png"
    assert media_type("image/*") == "image/png"
