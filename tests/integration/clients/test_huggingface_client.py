"""``huggingface_hub.InferenceClient`` itself against ``sdworker serve``: ``text_to_image`` at a
named model, at an alias (a hub id) and at the endpoint's root, a PIL image each time; its
errors raised with the bad field named."""

from __future__ import annotations

import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import BadRequestError, HfHubHTTPError

from tests.integration.serving import Served

FAST = {"width": 64, "height": 64, "num_inference_steps": 2}


def test_text_to_image_returns_a_pil_image(served: Served) -> None:
    client = InferenceClient(model=f"{served.url}/hf/models/tiny", api_key=served.key)
    image = client.text_to_image("a lighthouse", seed=3, guidance_scale=6.0, **FAST)
    assert image.size == (64, 64)
    again = client.text_to_image("a lighthouse", seed=3, guidance_scale=6.0, **FAST)
    assert again.tobytes() == image.tobytes()  # the seed is honoured
    other = client.text_to_image("a lighthouse", seed=4, guidance_scale=6.0, **FAST)
    assert other.tobytes() != image.tobytes()


def test_an_alias_and_the_root_route(served: Served) -> None:
    hub_id = f"{served.url}/hf/models/stabilityai/stable-diffusion-xl-base-1.0"
    image = InferenceClient(model=hub_id, api_key=served.key).text_to_image(
        "x", negative_prompt="fog", scheduler="EulerDiscreteScheduler", seed=1, **FAST
    )
    assert image.size == (64, 64)
    root = InferenceClient(base_url=served.url + "/", api_key=served.key)
    assert root.text_to_image("x", seed=1, width=72, height=64, num_inference_steps=2).size == (
        72,
        64,
    )


def test_a_bad_field_is_raised_naming_it(served: Served) -> None:
    client = InferenceClient(model=f"{served.url}/hf/models/tiny", api_key=served.key)
    with pytest.raises(BadRequestError) as caught:
        client.text_to_image("x", width=500, height=64, num_inference_steps=2)
    assert "parameters.width" in str(caught.value)
    assert "multiple of 8" in caught.value.server_message
    with pytest.raises(BadRequestError, match=r"parameters\.scheduler"):
        client.text_to_image("x", scheduler="NoSuchScheduler", **FAST)


def test_the_key_is_required(served: Served) -> None:
    client = InferenceClient(model=f"{served.url}/hf/models/tiny", api_key="wrong")
    with pytest.raises(HfHubHTTPError, match="Invalid credentials"):
        client.text_to_image("x", **FAST)
