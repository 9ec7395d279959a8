"""What a client sends can be wrong in any way; a format route answers 4xx in its own shape,
never 5xx: malformed or oversized bodies, bad numbers and text, failures of the client's
making, unknown schedulers. Auth is declared in the OpenAPI document."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sdworker.core.errors import (
    ImageFetchError,
    InvalidInput,
    ModelNotFound,
    OutOfMemory,
    PayloadTooLarge,
    SdworkerError,
)
from sdworker.core.jobs import Failure, Status
from sdworker.formats.a1111 import default_catalog

ClientFactory = Callable[..., TestClient]

SALAD = "/api/beta/organizations/acme/inference-endpoints/tiny"
#: route → (a valid body, how to recognise the format's error shape)
ROUTES: dict[str, tuple[dict[str, Any], Any]] = {
    "/sdapi/v1/txt2img": ({"prompt": "x", "seed": 1}, lambda b: "detail" in b and "error" in b),
    "/sdapi/v1/img2img": (
        {"prompt": "x", "init_images": ["AAAA"]},
        lambda b: "detail" in b and "error" in b,
    ),
    "/sdapi/v1/options": ({"samples_format": "png"}, lambda b: "detail" in b and "error" in b),
    "/sdapi/v1/png-info": ({"image": "AAAA"}, lambda b: "detail" in b and "error" in b),
    "/sdapi/v1/extra-single-image": (
        {"image": "AAAA", "upscaler_1": "Lanczos"},
        lambda b: "detail" in b and "error" in b,
    ),
    SALAD: ({"modelInputs": {"prompt": "x"}}, lambda b: b["status"] >= 400 and "title" in b),
    "/v1/modelApi/submit/tiny": ({"prompt": "x", "params": {}}, lambda b: b["success"] is False),
    "/v1/inference/tiny": ({"prompt": "x"}, lambda b: "detail" in b),
}

BAD_BODIES: dict[str, bytes] = {
    "malformed": b'{"prompt": "x",',
    "array": b'["prompt"]',
    "number": b"42",
    "string": b'"prompt"',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "deep-object": b'{"prompt": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}",
    "raw-bytes": bytes(range(256)),
    "nan": b'{"prompt": "x", "steps": NaN, "cfg_scale": NaN, "modelInputs": NaN, "seed": NaN}',
    "infinity": b'{"prompt": "x", "cfg_scale": Infinity, "guidance_scale": -Infinity}',
    "overflow": b'{"prompt": "x", "cfg_scale": 1e999, "guidance_scale": 1' + b"0" * 400 + b"}",
    "surrogate": b'{"prompt": "\\ud800", "\\udfff": 1}',
}


@pytest.fixture
def client(client_factory: ClientFactory, gateway: Any) -> TestClient:
    return client_factory(gateway, body_limit=2_000_000)


@pytest.mark.parametrize("bad", list(BAD_BODIES))
@pytest.mark.parametrize("route", list(ROUTES))
def test_no_5xx_for_any_body(client: TestClient, route: str, bad: str) -> None:
    r = client.post(route, content=BAD_BODIES[bad], headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text[:300]
    assert ROUTES[route][1](r.json()), r.text[:300]


def test_nan_and_surrogates_are_named_by_field(client: TestClient) -> None:
    r = client.post(
        "/sdapi/v1/txt2img",
        content=b'{"prompt": "\\ud800", "cfg_scale": NaN, "steps": 1e999}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "prompt: must be valid Unicode text" in detail
    assert "cfg_scale: must be a finite number" in detail
    assert "steps: must be an integer" in detail


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (b'"eta": NaN', "eta"),
        (b'"s_churn": Infinity', "s_churn"),
        (b'"script_args": [1, -Infinity]', "script_args"),
        (b'"comments": "\\ud800"', "comments"),
        (b'"override_settings": {"eta_ddim": NaN}', "override_settings.eta_ddim"),
    ],
)
def test_an_inert_a1111_field_json_cannot_carry_is_refused_by_name(
    client: TestClient, extra: bytes, field: str
) -> None:
    """Regression: inert fields were dropped unread and echoed back as ``parameters``, so
    ``eta: NaN`` made a job and then an answer JSON cannot write: HTTP 500."""
    body = b'{"prompt": "x", "width": 64, "height": 64, "steps": 1, ' + extra + b"}"
    r = client.post("/sdapi/v1/txt2img", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text[:300]
    assert f"{field}: must be plain JSON" in r.json()["detail"]


def test_an_inert_a1111_field_with_a_plain_value_is_still_accepted(client: TestClient) -> None:
    body = {"prompt": "x", "width": 64, "height": 64, "steps": 1, "eta": 0.5, "s_churn": 10**400}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["parameters"]["eta"] == 0.5


@pytest.mark.parametrize("route", list(ROUTES))
def test_body_over_the_limit_is_413(
    client_factory: ClientFactory, gateway: Any, route: str
) -> None:
    client = client_factory(gateway, body_limit=1_000)
    body = {**ROUTES[route][0], "negative_prompt": "x" * 2_000}
    r = client.post(route, json=body)
    assert r.status_code == 413, r.text
    assert ROUTES[route][1](r.json())
    # streamed without a Content-Length, the cap holds too
    chunks = iter([b'{"prompt": "' + b"x" * 600, b"x" * 600 + b'"}'])
    r = client.post(route, content=chunks, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert not gateway.jobs


def test_deepinfra_form_over_the_limit_and_unknown_fields(
    client_factory: ClientFactory, gateway: Any
) -> None:
    client = client_factory(gateway, body_limit=1_000)
    r = client.post("/v1/inference/tiny", files={"image": ("a.png", b"\0" * 5_000, "image/png")})
    assert r.status_code == 413
    r = client.post("/v1/inference/tiny", data={"prompt": "x", "num_imgs": "2"})
    assert r.status_code == 422
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "num_imgs"]]
    assert "did you mean 'num_images'" in r.json()["detail"][0]["msg"]
    r = client.post(
        "/v1/inference/tiny",
        content=b"--b\r\nContent-Disposition: form-data; name=prompt\r\n\r\nx",
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert 400 <= r.status_code < 500
    assert not gateway.jobs


def _failing(exc: SdworkerError, fake_gateway: Any) -> Any:
    """A queue whose jobs fail as a worker reports ``exc``: error text plus failure data."""

    class Failing(fake_gateway):  # type: ignore[misc,valid-type]
        def finish(self, job_id: str) -> None:
            view = self.jobs[job_id]
            if not view.status.is_terminal():
                output = Failure.of(exc).to_output()
                view.error, view.output, view.status = output.pop("error"), output, Status.FAILED

    return Failing()


@pytest.mark.parametrize(
    ("exc", "a1111", "stochastic", "deepinfra"),
    [
        (
            ImageFetchError.one("image", "could not be fetched (HTTP 404)", "http://x"),
            422,
            400,
            422,
        ),
        (ModelNotFound("unknown model 'gone'"), 422, 404, 404),
        (PayloadTooLarge("the result is 30 MB"), 413, 413, 413),
        (InvalidInput.one("width", "must be a multiple of 8", 60), 422, 400, 422),
        (OutOfMemory("out of memory"), 500, 500, 500),
    ],
)
def test_job_failures_answer_by_their_code(
    client_factory: ClientFactory,
    fake_gateway: Any,
    exc: SdworkerError,
    a1111: int,
    stochastic: int,
    deepinfra: int,
) -> None:
    client = client_factory(_failing(exc, fake_gateway))
    r = client.post("/sdapi/v1/img2img", json={"prompt": "x", "init_images": ["AAAA"]})
    assert r.status_code == a1111, r.text
    if isinstance(exc, ImageFetchError):
        # the problem comes back on the client's own field
        assert r.json()["detail"].startswith("invalid input: init_images: could not be fetched")
    data = client.post("/v1/modelApi/submit/tiny", json={"prompt": "x", "params": {}}).json()
    assert client.get(data["data"]["responseUrl"]).status_code == stochastic
    r = client.post("/v1/inference/tiny", json={"prompt": "x"})
    assert r.status_code == deepinfra, r.text
    task = client.post(SALAD, json={"modelInputs": {"prompt": "x"}}).json()
    failed = client.get(task["resultUrl"]).json()
    assert failed["status"] == "failed" and failed["modelOutputs"]["$error"]["code"] == exc.code


def test_unknown_scheduler_is_reported_on_each_formats_field(
    client_factory: ClientFactory, gateway: Any
) -> None:
    client = client_factory(gateway, catalog=default_catalog())
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": "Eulr a"})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "invalid input: sampler_name: unknown sampler; closest: 'Euler a', 'Euler' "
        "(GET /sdapi/v1/samplers lists them all) (got 'Eulr a')"
    )
    r = client.post(
        "/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": "Euler", "scheduler": "karas"}
    )
    assert r.status_code == 422
    assert r.json()["detail"].startswith("invalid input: scheduler: unknown schedule type; closest")
    assert ";" not in r.json()["detail"].split("closest")[1]  # one problem only
    task = {"modelInputs": {"prompt": "x"}, "callInputs": {"SCHEDULER": "LMSDiscreteSchedulr"}}
    r = client.post(SALAD, json=task)
    assert r.status_code == 400 and list(r.json()["errors"]) == ["callInputs.SCHEDULER"]
    assert "closest: 'LMSDiscreteScheduler'" in r.json()["detail"]
    r = client.post(
        "/v1/modelApi/submit/tiny", json={"prompt": "x", "params": {"scheduler": "DDIMM"}}
    )
    assert r.status_code == 400 and [e["field"] for e in r.json()["errors"]] == ["params.scheduler"]
    assert "closest: 'DDIM'" in r.json()["message"]
    r = client.post("/v1/inference/tiny", json={"prompt": "x", "scheduler": "euler_a"})
    assert r.status_code == 422 and [d["loc"] for d in r.json()["detail"]] == [
        ["body", "scheduler"]
    ]
    assert not gateway.jobs


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{password}".encode()).decode()}


def test_auth_is_declared_and_each_format_takes_its_own_header(
    client_factory: ClientFactory, gateway: Any
) -> None:
    client = client_factory(gateway, api_key="k")
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "basic"}.items() <= schemes["basic"].items()
    assert schemes["bearer"]["scheme"] == "bearer"
    headers = {s["name"] for s in schemes.values() if s["type"] == "apiKey"}
    assert headers == {"Salad-Api-Key", "apiKey"}
    for path, good, shape in [
        (
            "/sdapi/v1/samplers",
            basic("k"),
            lambda b: b == {"detail": "Incorrect username or password"},
        ),
        ("/sdapi/v1/samplers", {"Authorization": "Bearer k"}, None),
        (SALAD + "/nope", {"Salad-Api-Key": "k"}, lambda b: b["status"] == 401),
        ("/v1/modelApi/inference/nope", {"apiKey": "k"}, lambda b: b["success"] is False),
    ]:
        denied = client.get(path, headers={"Authorization": "Bearer wrong"})
        assert denied.status_code == 401, path
        assert shape is None or shape(denied.json()), denied.text
        assert client.get(path, headers=good).status_code != 401, path
    r = client.post("/v1/inference/tiny", json={"prompt": "x"})
    assert r.status_code == 401 and "error" in r.json()["detail"]
    assert (
        client.post(
            "/v1/inference/tiny", json={"prompt": "x"}, headers={"Authorization": "bearer k"}
        ).status_code
        == 200
    )
