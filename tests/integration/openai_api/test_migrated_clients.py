"""Migrated clients, unchanged, against a server whose aliases map their model names to the
tiny model: the Stochastic sample client (``stable-diffusion-2``, an alias baked with
``--alias``), DeepInfra's ``curl -F`` call and the ``deepinfra`` package's ``TextToImage``
(``stabilityai/stable-diffusion-2-1``, an alias from ``SDWORKER_MODEL_ALIASES``)."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import time
from dataclasses import asdict

import deepinfra
import pytest
import requests
from deepinfra import AuthenticationError
from PIL import Image

from tests.integration.serving import Served


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def test_stochastic_sample_client(served: Served) -> None:
    # the documented client, with only its host and key changed (and a shorter poll pause)
    response_step1 = requests.post(
        url=f"{served.url}/v1/modelApi/submit/stable-diffusion-2",
        headers={"apiKey": served.key},
        json={
            "prompt": "A turtle – swimming underwater, – expressionist painting.",  # noqa: RUF001
            "params": {
                "img_height": 64,
                "img_width": 64,
                "num_inference_steps": 2,
                "guidance_scale": 7.5,
                "seed": None,
            },
        },
        timeout=60,
    )
    response_step1.raise_for_status()
    data_step1 = response_step1.json()["data"]

    img_generated = False
    while not img_generated:
        response_step2 = requests.get(
            data_step1["responseUrl"], headers={"apiKey": served.key}, timeout=60
        )
        response_step2.raise_for_status()
        data_step2 = response_step2.json()["data"]
        generated_images = data_step2.get("generatedImages")
        img_generated = generated_images is not None
        time.sleep(0.2)

    fetched = requests.get(generated_images[0].get("presigned_url"), timeout=60)
    assert fetched.status_code == 200
    assert _size(fetched.content) == (64, 64)


def test_deepinfra_curl_form(served: Served) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    out = subprocess.run(
        [
            curl, "-sS", "-X", "POST",
            "-H", f"Authorization: bearer {served.key}",
            "-F", "prompt=A photo of an astronaut riding a horse on Mars.",
            "-F", "width=64", "-F", "height=64", "-F", "num_inference_steps=2",
            f"{served.url}/v1/inference/stabilityai/stable-diffusion-2-1",
        ],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    answer = json.loads(out.stdout)
    assert answer["inference_status"]["status"] == "succeeded", answer
    header, _, data = answer["images"][0].partition(",")
    assert header == "data:image/png;base64"
    assert _size(base64.b64decode(data)) == (64, 64)
    assert answer["nsfw_content_detected"] == [False]
    assert isinstance(answer["seed"], int)


def test_deepinfra_text_to_image(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepinfra.types.text_to_image import TextToImageRequest

    # the package reads its key from the environment; the endpoint is the model's full URL
    monkeypatch.setenv("DEEPINFRA_API_KEY", served.key)
    model = deepinfra.TextToImage(f"{served.url}/v1/inference/stabilityai/stable-diffusion-2-1")
    request = TextToImageRequest(
        prompt="a lighthouse", width=64, height=64, num_outputs=2, num_inference_steps=2, seed=5
    )
    response = model.generate(asdict(request))
    assert len(response.images) == 2
    sizes = [_size(base64.b64decode(i.partition(",")[2])) for i in response.images]
    assert sizes == [(64, 64), (64, 64)]
    assert response.seed == 5
    assert response.inference_status["status"] == "succeeded"  # the package keeps it a dict


def test_deepinfra_text_to_image_wrong_key_is_refused(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPINFRA_API_KEY", "wrong")
    model = deepinfra.TextToImage(f"{served.url}/v1/inference/stabilityai/stable-diffusion-2-1")
    with pytest.raises(AuthenticationError) as caught:
        model.generate({"prompt": "x"})
    assert caught.value.status_code == 401


def test_an_unknown_model_in_the_url_lists_models_and_the_alias_fix(served: Served) -> None:
    answer = requests.post(
        f"{served.url}/v1/modelApi/submit/stable-diffusion-xl",
        headers={"apiKey": served.key},
        json={"prompt": "x", "params": {}},
        timeout=60,
    )
    assert answer.status_code == 404
    message = answer.json()["message"]
    assert "baked models: tiny" in message
    assert "SDWORKER_MODEL_ALIASES='stable-diffusion-xl=tiny'" in message


def test_native_model_field_takes_an_alias(served: Served) -> None:
    def images(model: str) -> list[str]:
        job = {"prompt": "x", "model": model, "seed": 2, "width": 64, "height": 64}
        answer = requests.post(
            f"{served.url}/v2/local/runsync",
            json={"input": {**job, "num_inference_steps": 2}},
            headers={"Authorization": f"Bearer {served.key}"},
            timeout=120,
        ).json()
        assert answer["status"] == "COMPLETED", answer
        return [o["image"] for o in answer["output"]]

    assert images("stabilityai/stable-diffusion-2-1") == images("tiny")
