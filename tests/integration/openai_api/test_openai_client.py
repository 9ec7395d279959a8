"""The ``openai`` package itself against ``sdworker serve``: images.generate (both response
formats, n > 1), images.edit, images.create_variation, models.list, and its error types."""

from __future__ import annotations

import base64
import io
from typing import Any

import openai
import pytest
import requests
from PIL import Image

from tests.integration.serving import Served

FAST: dict[str, Any] = {"num_inference_steps": 2}


def png_size(data: bytes) -> tuple[int, int]:
    """The size of an image file, checked to decode."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def client(served: Served, key: str | None = None, base: str = "/v1") -> Any:
    return openai.OpenAI(base_url=served.url + base, api_key=key or served.key, max_retries=0)


def _seeds(response: Any) -> list[int]:
    return [item.model_extra["seed"] for item in response.data]


def test_generate_b64_json_two_images_with_their_seeds(served: Served) -> None:
    raw = client(served).images.with_raw_response.generate(
        prompt="a lighthouse",
        n=2,
        size="64x64",
        response_format="b64_json",
        extra_body={**FAST, "seed": 7},
    )
    response = raw.parse()
    assert len(response.data) == 2
    images = [base64.b64decode(item.b64_json) for item in response.data]
    assert [png_size(i) for i in images] == [(64, 64), (64, 64)]
    assert images[0] != images[1]
    assert _seeds(response) == [7, 8]
    assert raw.headers["x-sdworker-seeds"] == "7,8"
    assert response.size == "64x64"


def test_generate_url_is_fetchable_without_the_key(served: Served) -> None:
    response = client(served).images.generate(
        prompt="a lighthouse", n=2, size="64x64", response_format="url", extra_body=FAST
    )
    assert len(response.data) == 2
    for item in response.data:
        assert item.url and item.url.startswith(served.url) and item.b64_json is None
        fetched = requests.get(item.url, timeout=30)
        assert fetched.status_code == 200, fetched.text
        assert fetched.headers["content-type"] == "image/png"
        assert png_size(fetched.content) == (64, 64)
    # the signature is what opens it: the same path without it is refused
    bare = response.data[0].url.split("?", 1)[0]
    assert requests.get(bare, timeout=30).status_code == 401


def test_same_seed_same_image_through_the_alias_and_deepinfras_path(served: Served) -> None:
    kwargs: dict[str, Any] = {
        "prompt": "a red door",
        "size": "64x64",
        "response_format": "b64_json",
        "extra_body": {**FAST, "seed": 3},
    }
    plain = client(served).images.generate(**kwargs)
    aliased = client(served, base="/v1/openai").images.generate(model="dall-e-2", **kwargs)
    assert plain.data[0].b64_json == aliased.data[0].b64_json


def _native(served: Served, job_input: dict[str, Any]) -> list[str]:
    """The same job in the native form, through ``/runsync``: each image's base64."""
    answer = requests.post(
        f"{served.url}/v2/local/runsync",
        json={"input": job_input},
        headers={"Authorization": f"Bearer {served.key}"},
        timeout=120,
    ).json()
    assert answer["status"] == "COMPLETED", answer
    return [o["image"] for o in answer["output"]]


def _pixels(b64: str) -> bytes:
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB").tobytes()


def test_edit_repaints_the_transparent_area(served: Served, tmp_path: Any) -> None:
    picture = Image.new("RGBA", (64, 64), (20, 120, 200, 255))
    white_square = Image.new("L", (64, 64), 0)
    for x in range(16, 48):
        for y in range(16, 48):
            picture.putpixel((x, y), (0, 0, 0, 0))
            white_square.putpixel((x, y), 255)
    path = tmp_path / "edit.png"
    path.write_bytes(png_bytes(picture))
    with path.open("rb") as image:
        response = client(served).images.edit(
            image=image,
            prompt="a window",
            response_format="b64_json",
            extra_body={**FAST, "seed": 11},
        )
    assert png_size(base64.b64decode(response.data[0].b64_json)) == (64, 64)
    # the same as a native inpaint whose mask is white where the picture was transparent
    native = _native(
        served,
        {
            "prompt": "a window",
            "image": base64.b64encode(png_bytes(picture)).decode(),
            "mask_image": base64.b64encode(png_bytes(white_square)).decode(),
            "strength": 1.0,
            "seed": 11,
            **FAST,
        },
    )
    assert _pixels(response.data[0].b64_json) == _pixels(native[0])


def test_edit_with_a_separate_mask(served: Served, tmp_path: Any) -> None:
    image = tmp_path / "image.png"
    image.write_bytes(png_bytes(Image.new("RGB", (64, 64), (200, 30, 30))))
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    for x in range(32):
        for y in range(64):
            mask.putpixel((x, y), (0, 0, 0, 0))
    mask_path = tmp_path / "mask.png"
    mask_path.write_bytes(png_bytes(mask))
    with image.open("rb") as img, mask_path.open("rb") as msk:
        response = client(served).images.edit(
            image=img, mask=msk, prompt="grass", n=2, response_format="b64_json", extra_body=FAST
        )
    assert len(response.data) == 2


def test_edit_without_transparency_or_mask_names_mask(served: Served, tmp_path: Any) -> None:
    image = tmp_path / "opaque.png"
    image.write_bytes(png_bytes(Image.new("RGB", (64, 64), (200, 30, 30))))
    with image.open("rb") as img, pytest.raises(openai.BadRequestError) as caught:
        client(served).images.edit(image=img, prompt="grass")
    assert caught.value.param == "mask"


def test_variation_is_an_img2img_of_the_image(served: Served, tmp_path: Any) -> None:
    image = tmp_path / "source.png"
    image.write_bytes(png_bytes(Image.new("RGB", (64, 64), (10, 200, 10))))
    with image.open("rb") as img:
        response = client(served).images.create_variation(
            image=img, n=2, response_format="url", extra_body=FAST
        )
    assert len(response.data) == 2
    assert all(png_size(requests.get(i.url, timeout=30).content) == (64, 64) for i in response.data)


def test_models_list_shows_the_baked_model_and_its_aliases(served: Served) -> None:
    models = {m.id: m for m in client(served).models.list()}
    assert set(models) == {
        "tiny",
        "stable-diffusion-2",
        "stabilityai/stable-diffusion-2-1",
        "dall-e-2",
    }
    assert models["tiny"].owned_by == "sdworker"
    assert models["dall-e-2"].model_extra["root"] == "tiny"
    assert client(served).models.retrieve("stable-diffusion-2").id == "stable-diffusion-2"


@pytest.mark.parametrize("size", ["500x500", "big", "4096x4096", "2048x2048"])
def test_a_size_the_model_cannot_make_is_a_bad_request_on_size(served: Served, size: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(served).images.generate(prompt="x", size=size, extra_body=FAST)
    assert caught.value.status_code == 400
    assert caught.value.param == "size"
    assert caught.value.type == "invalid_request_error"


def test_n_over_the_limit_names_n(served: Served) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(served).images.generate(prompt="x", n=9, size="64x64")
    assert caught.value.param == "n"


def test_a_wrong_key_is_an_authentication_error(served: Served) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(served, key="wrong").images.generate(prompt="x", size="64x64")
    assert caught.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        client(served, key="wrong").models.list()


def test_an_unknown_model_is_not_found_and_says_how_to_alias_it(served: Served) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(served).images.generate(model="dall-e-3", prompt="x", size="64x64")
    assert caught.value.code == "model_not_found"
    assert "tiny" in caught.value.message
    assert "SDWORKER_MODEL_ALIASES='dall-e-3=tiny'" in caught.value.message
