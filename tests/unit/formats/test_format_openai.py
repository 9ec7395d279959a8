"""The OpenAI Images API format over the fake queue: decoding, answers, OpenAI's errors."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sdworker.core.errors import InvalidInput, ModelNotFound
from sdworker.formats.base import Models
from sdworker.formats.openai import OPENAI
from sdworker.formats.openai.mask import native_mask
from sdworker.formats.openai.request import parse_size

ClientFactory = Callable[..., TestClient]
FakeGateway = Any


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _b64(image: Image.Image) -> str:
    return base64.b64encode(_png(image)).decode()


def _decoded_mask(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("L")


def test_generation_decodes_to_one_native_job() -> None:
    body = {"prompt": "a cat", "n": 3, "size": "512x768", "quality": "hd", "style": "vivid",
            "user": "u1", "seed": 9, "response_format": "b64_json"}  # fmt: skip
    decoded = OPENAI.decode(body, Models(), kind="generations")
    assert decoded.inputs == [
        {"prompt": "a cat", "num_images": 3, "width": 512, "height": 768, "seed": 9,
         "upload": False}
    ]  # fmt: skip
    assert decoded.request.response_format == "b64_json"


def test_url_answers_upload_when_a_bucket_is_configured() -> None:
    decoded = OPENAI.decode({"prompt": "a"}, Models(uploads=True), kind="generations")
    assert decoded.inputs[0]["upload"] is True
    assert decoded.request.response_format == "url"


@pytest.mark.parametrize("size", ["auto", "64x64", "2048X64", " 512 x 512 "])
def test_sizes_accepted(size: str) -> None:
    parse_size(size)


@pytest.mark.parametrize("size", ["500x500", "32x32", "4096x512", "512", "axb", "512x512x2"])
def test_sizes_refused_name_size(size: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        OPENAI.decode({"prompt": "a", "size": size}, Models(), kind="generations")
    assert caught.value.fields == ["size"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("response_format", "png"), ("n", 0), ("n", 9), ("background", "transparent"),
     ("stream", True), ("output_format", "gif"), ("promptt", "x")],
)  # fmt: skip
def test_bad_fields_are_named(field: str, value: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        OPENAI.decode({"prompt": "a", field: value}, Models(), kind="generations")
    assert caught.value.fields == [field]


def test_an_alias_names_its_model(manifests: list[Any]) -> None:
    from dataclasses import replace

    aliased = [replace(manifests[0], aliases=("dall-e-3",)), *manifests[1:]]
    decoded = OPENAI.decode(
        {"prompt": "a", "model": "dall-e-3"}, Models(aliased), kind="generations"
    )
    assert decoded.inputs[0]["model"] == "tiny"
    with pytest.raises(ModelNotFound) as caught:
        OPENAI.decode({"prompt": "a", "model": "dall-e-2"}, Models(aliased), kind="generations")
    assert "SDWORKER_MODEL_ALIASES='dall-e-2=tiny'" in str(caught.value)


def test_transparent_pixels_become_the_white_of_the_mask() -> None:
    image = Image.new("RGBA", (16, 16), (9, 9, 9, 255))
    image.putpixel((3, 4), (0, 0, 0, 0))
    image.putpixel((5, 5), (0, 0, 0, 128))  # half transparent: kept
    mask = _decoded_mask(native_mask(_b64(image), None, 1 << 20))
    assert mask.getpixel((3, 4)) == 255
    assert mask.getpixel((5, 5)) == 0 and mask.getpixel((0, 0)) == 0


def test_a_mask_with_alpha_is_converted_and_one_without_is_ours_already() -> None:
    image = _b64(Image.new("RGB", (8, 8)))
    openai_mask = Image.new("RGBA", (8, 8), (0, 0, 0, 255))
    openai_mask.putpixel((1, 1), (0, 0, 0, 0))
    assert _decoded_mask(native_mask(image, _b64(openai_mask), 1 << 20)).getpixel((1, 1)) == 255
    ours = _b64(Image.new("L", (8, 8), 255))
    assert native_mask(image, ours, 1 << 20) == ours


@pytest.mark.parametrize(
    ("image", "mask", "field"),
    [
        (Image.new("RGB", (8, 8)), None, "mask"),  # nothing transparent, no mask
        (Image.new("RGB", (8, 8)), Image.new("L", (4, 4)), "mask"),  # sizes differ
        (Image.new("RGB", (64, 64)), None, "image"),  # over the pixel limit
    ],
)
def test_edit_images_refused_on_their_field(
    image: Image.Image, mask: Image.Image | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        native_mask(_b64(image), _b64(mask) if mask else None, 1000)
    assert caught.value.fields == [field]


def test_not_an_image_is_refused_on_its_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        native_mask(base64.b64encode(b"GIF89a....").decode(), None, 1 << 20)
    assert caught.value.fields == ["image"]


def test_variation_is_img2img_with_its_own_prompt_and_strength() -> None:
    image = _b64(Image.new("RGB", (8, 8)))
    decoded = OPENAI.decode({"image": image}, Models(), kind="variations")
    native = decoded.inputs[0]
    assert native["image"] == image and native["strength"] == 0.6 and native["prompt"]


def _client(factory: ClientFactory, gateway: FakeGateway, key: str | None = None) -> TestClient:
    return factory(gateway, api_key=key)


@pytest.mark.parametrize("prefix", ["/v1", "/v1/openai"])
def test_generation_answer_has_images_and_seeds(
    client_factory: ClientFactory, gateway: FakeGateway, prefix: str
) -> None:
    answer = _client(client_factory, gateway).post(
        f"{prefix}/images/generations",
        json={"prompt": "a", "n": 2, "seed": 40, "response_format": "b64_json"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [d["seed"] for d in body["data"]] == [40, 41]
    assert all(d["b64_json"] for d in body["data"])
    assert answer.headers["x-sdworker-seeds"] == "40,41"


def test_url_answer_stores_each_image(client_factory: ClientFactory, gateway: FakeGateway) -> None:
    answer = _client(client_factory, gateway).post(
        "/v1/images/generations", json={"prompt": "a", "n": 2, "seed": 1}
    )
    urls = [d["url"] for d in answer.json()["data"]]
    assert len(set(urls)) == 2 and len(gateway.files) == 2
    assert all(u.startswith("http://testserver/files/") for u in urls)


def test_edit_form_sends_the_converted_mask(
    client_factory: ClientFactory, gateway: FakeGateway
) -> None:
    picture = Image.new("RGBA", (8, 8), (1, 2, 3, 255))
    picture.putpixel((2, 2), (0, 0, 0, 0))
    answer = _client(client_factory, gateway).post(
        "/v1/images/edits",
        data={"prompt": "a", "n": "1"},
        files={"image[]": ("i.png", _png(picture), "image/png")},
    )
    assert answer.status_code == 200, answer.text
    job = next(iter(gateway.jobs.values())).input
    assert job["strength"] == 1.0
    assert _decoded_mask(job["mask_image"]).getpixel((2, 2)) == 255


def test_errors_in_openais_shape(client_factory: ClientFactory, gateway: FakeGateway) -> None:
    client = _client(client_factory, gateway, key="k")
    denied = client.post("/v1/images/generations", json={"prompt": "a"})
    assert denied.status_code == 401
    assert denied.json()["error"]["type"] == "authentication_error"
    auth = {"Authorization": "Bearer k"}
    bad = client.post("/v1/images/generations", json={"prompt": "a", "size": "9x9"}, headers=auth)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "size"
    assert bad.json()["error"]["type"] == "invalid_request_error"
    missing = client.post(
        "/v1/images/generations", json={"prompt": "a", "model": "nope"}, headers=auth
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    unknown = client.get("/v1/models/nope", headers=auth)
    assert unknown.status_code == 404 and "baked models" in unknown.json()["error"]["message"]


@pytest.mark.parametrize(("native", "param"), [("width", "size"), ("num_images", "n")])
def test_a_job_failure_names_the_openai_field(
    client_factory: ClientFactory, fake_gateway: Any, native: str, param: str
) -> None:
    def refuse(job: dict[str, Any]) -> list[dict[str, Any]]:
        raise InvalidInput.one(native, "is over this worker's limit", 1)

    answer = _client(client_factory, fake_gateway(refuse)).post(
        "/v1/images/generations", json={"prompt": "a", "size": "2048x2048"}
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and f"{param}: is over" in error["message"]


def test_an_unknown_field_is_named(client_factory: ClientFactory, gateway: FakeGateway) -> None:
    failing = _client(client_factory, gateway).post(
        "/v1/images/generations", json={"prompt": "a", "size": "64x64", "extra": 1}
    )
    assert failing.status_code == 400 and failing.json()["error"]["param"] == "extra"


def test_models_list(client_factory: ClientFactory, gateway: FakeGateway) -> None:
    body = _client(client_factory, gateway).get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["tiny", "v1-5-pruned-emaonly"]
    assert all(m["object"] == "model" and m["owned_by"] == "sdworker" for m in body["data"])


def test_json_edits_take_data_urls_and_urls() -> None:
    picture = Image.new("RGBA", (8, 8), (1, 2, 3, 255))
    picture.putpixel((0, 7), (0, 0, 0, 0))
    data_url = "data:image/png;base64," + _b64(picture)
    native = OPENAI.decode({"prompt": "a", "image": data_url}, Models(), kind="edits").inputs[0]
    assert native["image"] == data_url
    assert _decoded_mask(native["mask_image"]).getpixel((0, 7)) == 255
    # a URL is fetched by the worker: its mask must be given, white where to paint
    url = "https://example.com/a.png"
    with pytest.raises(InvalidInput) as caught:
        OPENAI.decode({"prompt": "a", "image": url}, Models(), kind="edits")
    assert caught.value.fields == ["mask"]
    given = OPENAI.decode({"prompt": "a", "image": url, "mask": url}, Models(), kind="edits")
    assert given.inputs[0]["mask_image"] == url
